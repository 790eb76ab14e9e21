"""The plumbing every pattern module shares, kept apart from the patterns themselves.

Here: the clock (``clock``), the error tree (``errors``), construction-time checks
(``validation``), events, listeners and the logging listener (``events``, ``listeners``,
``logging``), the per-call context (``context``), the Strategy base and how strategies compose
(``compose``), callable and decorator helpers (``predicates``), rate strings (``rates``),
backoff schedules (``schedules``) and the finished awaitable (``awaitable``).

It sits below the pattern modules: nothing here imports a pattern, a store, an integration or
``testing`` (``tests/test_architecture.py`` keeps it so). Public names are re-exported from
``aioresilience`` itself, not from here.
"""
