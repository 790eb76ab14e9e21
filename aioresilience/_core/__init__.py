"""Pure algorithms: synchronous, deterministic, no I/O and no asyncio.

Time (``now``) and randomness are arguments. Front-ends and stores build on these; a test keeps
this package free of asyncio imports.
"""
