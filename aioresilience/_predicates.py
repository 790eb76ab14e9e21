"""Turning "which exceptions/results count" options into predicates, validated up front."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["ExceptionFilter", "exception_predicate", "optional_callable"]

ExceptionFilter = (
    type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
)


def exception_predicate(name: str, value: Any) -> Callable[[BaseException], bool]:
    """Exception types (a class or a tuple of classes) or a predicate ``exc -> bool``."""
    if isinstance(value, type) and issubclass(value, BaseException):
        types: tuple[type[BaseException], ...] = (value,)
    elif isinstance(value, tuple):
        for item in value:
            if not (isinstance(item, type) and issubclass(item, BaseException)):
                raise TypeError(f"{name} must hold exception classes, got {item!r} in {value!r}")
        types = value
    elif callable(value):
        return value  # type: ignore[no-any-return]
    else:
        raise TypeError(
            f"{name} must be an exception class, a tuple of them or a predicate, got {value!r}"
        )
    return lambda exc: isinstance(exc, types)


def optional_callable(name: str, value: Any) -> Any:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable or None, got {value!r}")
    return value
