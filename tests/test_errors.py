"""The one error tree: every exception aioresilience exports is a ResilienceError, defined in
_support/errors.py and drawn in the README."""

from __future__ import annotations

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
