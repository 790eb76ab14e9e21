"""Turning "which exceptions/results count" options into predicates, validated up front."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

__all__ = [
    "ExceptionFilter",
    "ExceptionTypes",
    "decorate",
    "exception_predicate",
    "exception_types",
    "is_async_callable",
    "not_callable",
    "optional_callable",
    "optional_sync_callable",
    "require_async",
    "sync_callable",
    "wraps",
]

ExceptionTypes = (
    type[BaseException]
    | tuple[type[BaseException], ...]
    | list[type[BaseException]]
    | set[type[BaseException]]
    | frozenset[type[BaseException]]
)
ExceptionFilter = ExceptionTypes | Callable[[BaseException], bool]

# What may hold exception classes: a tuple, as isinstance takes, and the list or set that
# pybreaker's and purgatory's ``exclude=[...]`` users write (copied: changing the list later
# changes nothing).
_COLLECTIONS = (tuple, list, set, frozenset)


def exception_types(name: str, value: Any) -> tuple[type[BaseException], ...] | None:
    """The exception classes ``value`` names (a class, or a tuple, list or set of them), as
    a tuple; None when ``value`` is something else (a predicate, say: the caller checks it)."""
    if isinstance(value, type):
        if not issubclass(value, BaseException):
            raise TypeError(f"{name} must be an exception class or a predicate, got {value!r}")
        return (value,)
    if isinstance(value, _COLLECTIONS):
        for item in value:
            if not (isinstance(item, type) and issubclass(item, BaseException)):
                raise TypeError(f"{name} must hold exception classes, got {item!r} in {value!r}")
        return tuple(value)
    return None


def exception_predicate(name: str, value: Any) -> Callable[[BaseException], bool]:
    """Exception types (a class, or a tuple, list or set of classes) or a predicate
    ``exc -> bool``."""
    types = exception_types(name, value)
    if types is None:
        if callable(value):
            return sync_callable(name, value)  # type: ignore[no-any-return]
        raise TypeError(
            f"{name} must be an exception class, a tuple, list or set of them, or a predicate,"
            f" got {value!r}"
        )
    return lambda exc: isinstance(exc, types)


def optional_callable(name: str, value: Any) -> Any:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable or None, got {value!r}")
    return value


def is_async_callable(fn: Any) -> bool:
    """A coroutine function: a plain one, a method, a partial of one, or an object with an
    ``async def __call__``."""
    target = fn.func if isinstance(fn, functools.partial) else fn
    # The __call__ that calling ``target`` runs is its type's: a class whose instances have
    # an async __call__ is itself a sync callable (calling it makes an instance).
    return inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
        getattr(type(target), "__call__", None)  # noqa: B004 - an async __call__ method
    )


def sync_callable(name: str, value: Any) -> Any:
    """A plain (synchronous) callable. An ``async def`` where a predicate or a sync hook
    belongs would return a coroutine, always true and never awaited: refused up front."""
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {value!r}")
    if is_async_callable(value):
        raise TypeError(
            f"{name} must be a plain (sync) function, got a coroutine function {value!r}"
        )
    return value


def optional_sync_callable(name: str, value: Any) -> Any:
    """``None`` or a plain (synchronous) callable, see ``sync_callable``."""
    if value is None:
        return None
    if not callable(value):
        raise TypeError(f"{name} must be callable or None, got {value!r}")
    return sync_callable(name, value)


def not_callable(owner: str, fn: Any) -> TypeError:
    """The error for ``call(fn)``/``execute(fn)`` given something that cannot be called (a
    coroutine object, say): raised before the call is admitted, retried or replaced."""
    awaitable = inspect.isawaitable(fn)
    hint = " (pass the function, not its coroutine: call(fn, *args))" if awaitable else ""
    return TypeError(f"{owner} runs a callable, got {fn!r}{hint}")


def require_async(owner: str, fn: Any) -> None:
    """Decorators take coroutine functions: plain ones, methods, partials of them, or
    objects with an ``async def __call__``. Anything else is refused when decorating."""
    if not is_async_callable(fn):
        raise TypeError(f"{owner} decorates coroutine functions, got {fn!r}")


def wraps(fn: Callable[..., Any]) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """``functools.wraps``, plus what it leaves out: ``__defaults__`` and ``__kwdefaults__``
    (code that reads a function's defaults, such as dependency injection or CLI builders,
    sees the wrapped function's; harmless on a ``*args, **kwargs`` wrapper, which has no
    parameter they could fill)."""

    def apply(wrapper: Callable[P, T]) -> Callable[P, T]:
        functools.update_wrapper(wrapper, fn)
        for attribute in ("__defaults__", "__kwdefaults__"):
            value = getattr(fn, attribute, None)
            if value is not None:
                setattr(wrapper, attribute, value)
        return wrapper

    return apply


def decorate(
    owner: str,
    call: Callable[..., Coroutine[Any, Any, Any]],
    fn: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[P, Coroutine[Any, Any, T]]:
    """The decorator form of a guard whose ``call(fn, *args, **kwargs)`` runs ``fn`` under
    it: the same function, signature kept, every call going through ``call``."""
    require_async(owner, fn)

    @wraps(fn)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
        return await call(fn, *args, **kwargs)  # type: ignore[no-any-return]

    return guarded
