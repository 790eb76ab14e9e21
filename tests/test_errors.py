"""The one error tree: every exception aioresilience exports is a ResilienceError, defined in
_support/errors.py and drawn in the README."""

from __future__ import annotations

import copy
import pickle
import re
from pathlib import Path

import aioresilience as ar
from aioresilience._support import errors as _errors

README = Path(__file__).parent.parent / "README.md"


def exported_exceptions() -> dict[str, type[BaseException]]:
    found = {}
    for name in ar.__all__:
        value = getattr(ar, name)
        # Warnings are issued (warnings.warn), not raised: PipelineOrderWarning is a UserWarning.
        is_error = isinstance(value, type) and issubclass(value, Exception)
        if is_error and not issubclass(value, Warning):
            found[name] = value
    return found


def test_every_exported_exception_is_in_the_tree_and_defined_in_one_place() -> None:
    exceptions = exported_exceptions()
    assert {"QueueClosed", "ChaosFault", "BulkheadFull", "TimeoutExceeded"} <= set(exceptions)
    for name, cls in exceptions.items():
        assert issubclass(cls, ar.ResilienceError), name
        assert cls.__module__ == _errors.__name__, name
    assert set(exceptions) == set(_errors.__all__)


def test_the_readme_and_the_module_draw_every_one() -> None:
    match = re.search(r"### Errors\n\n```\n(.*?)```", README.read_text(), re.S)
    assert match is not None
    module = re.search(r"::\n\n(.*?)\n\n", _errors.__doc__ or "", re.S)
    assert module is not None
    drawings = {"README": match.group(1), "_errors": module.group(1)}
    for where, drawing in drawings.items():
        drawn = set(re.findall(r"(?:[├└]── |^ *)([A-Z]\w+)", drawing, re.M))
        assert drawn - {"Exception"} == set(exported_exceptions()), where


def test_errors_with_keyword_fields_pickle_and_copy() -> None:
    # pickle and copy rebuild an exception as cls(*args): the keyword-only fields were missing
    errors = [
        ar.TimeoutExceeded("timed out after 1s", seconds=1.0),
        ar.RateLimited("limited", retry_after=2.0, limiter="TokenBucket", key="k", cost=3),
        ar.CircuitBreakerOpenError("open", retry_after=5.0, breaker="b", state="open"),
        ar.BulkheadFull("full", retry_after=0.5),
    ]
    for error in errors:
        for clone in (pickle.loads(pickle.dumps(error)), copy.copy(error)):
            assert type(clone) is type(error)
            assert clone.args == error.args and str(clone) == str(error)
            assert vars(clone) == vars(error)
