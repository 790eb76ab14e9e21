"""The plumbing every pattern module shares, kept apart from the patterns themselves.

Here: the clock (``clock``), the error tree (``errors``), construction-time checks
(``validation``), events, listeners and the logging listener (``events``, ``listeners``,
``logging``), the per-call context (``context``), the Strategy base and how strategies compose
(``compose``), callable and decorator helpers (``predicates``), rate strings (``rates``),
backoff schedules (``schedules``), the guards' and the re-running strategies' one core and
its forms (``guard``, ``rerun``) and the one event loop a primitive's waiters wait on
(``loops``).

It sits below the pattern modules: nothing here imports a pattern, a store, an integration or
``testing`` (``tests/test_architecture.py`` keeps it so). Public names are re-exported from
``aioresilience`` itself, not from here.
"""
