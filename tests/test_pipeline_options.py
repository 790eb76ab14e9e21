"""The builder's options are typed (issue 12 item 6): each method's ``**options`` is an
``Unpack`` of a TypedDict listing exactly its primitive's constructor parameters, a misspelt
option fails mypy, and at run time it fails at once, naming the method and the closest option.
"""

from __future__ import annotations

import inspect
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

import aioresilience as ar
from aioresilience import _pipeline

ROOT = Path(__file__).parent.parent

# builder method -> (its options TypedDict, the constructor those options go to)
OPTIONS: dict[str, tuple[Any, Any]] = {
    "rate_limit": (_pipeline.TokenBucketOptions, ar.TokenBucket),
    "retry": (_pipeline.RetryOptions, ar.Retry),
    "circuit_breaker": (_pipeline.CircuitBreakerOptions, ar.CircuitBreaker),
    "bulkhead": (_pipeline.BulkheadOptions, ar.Bulkhead),
    "fallback": (_pipeline.FallbackOptions, ar.Fallback),
    "adaptive_limit": (_pipeline.AdaptiveLimiterOptions, ar.AdaptiveLimiter),
    "hedge": (_pipeline.HedgeOptions, ar.Hedge),
}


@pytest.mark.parametrize("method", sorted(OPTIONS))
def test_each_options_type_lists_exactly_the_constructor_parameters(method: str) -> None:
    options, constructor = OPTIONS[method]
    parameters = {
        name
        for name, parameter in inspect.signature(constructor).parameters.items()
        if parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
    }
    assert set(options.__optional_keys__) == parameters
    assert not options.__required_keys__


def test_every_builder_method_with_options_is_typed() -> None:
    """No ``**options: Any`` left: every ``**`` parameter of the builder is an Unpack."""
    for name, method in vars(ar.PipelineBuilder).items():
        if name.startswith("_") or not callable(method):
            continue
        for parameter in inspect.signature(method).parameters.values():
            if parameter.kind is parameter.VAR_KEYWORD:
                assert str(parameter.annotation).startswith("Unpack["), (name, parameter)
                assert name in OPTIONS, name


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda b: b.retry(atempts=3),
            "retry() got an unexpected keyword argument 'atempts' (did you mean 'attempts'?)",
        ),
        (
            lambda b: b.circuit_breaker(failure_treshold=5),
            "circuit_breaker() got an unexpected keyword argument 'failure_treshold' "
            "(did you mean 'failure_threshold'?)",
        ),
        (lambda b: b.rate_limit(rat="1/s"), "rate_limit() got an unexpected keyword argument"),
        (lambda b: b.bulkhead(2, colour=1), "bulkhead() got an unexpected keyword argument"),
        (lambda b: b.fallback(0, onn=ValueError), "(did you mean 'on'?)"),
        (lambda b: b.adaptive_limit(initial_limt=3), "(did you mean 'initial_limit'?)"),
        (lambda b: b.hedge(idempotent=True, max_hegded=2), "(did you mean 'max_hedged'?)"),
        # Checked before anything else: a shared primitive with a misspelt option too.
        (lambda b: b.retry(ar.Retry(), atempts=3), "(did you mean 'attempts'?)"),
    ],
)
def test_a_misspelt_option_fails_at_run_time_naming_method_and_option(
    build: Any, message: str
) -> None:
    with pytest.raises(TypeError, match=re.escape(message)):
        build(ar.Pipeline.builder())


def test_mypy_rejects_misspelt_options_and_passes_the_correct_forms(tmp_path: Path) -> None:
    """mypy itself on a snippet: every misspelling is reported, on its line, and nothing else
    (tests/typing/builder.py is the same check inside ``make typecheck``)."""
    api = pytest.importorskip("mypy.api")
    snippet = tmp_path / "snippet.py"
    snippet.write_text(
        textwrap.dedent(
            """\
            import aioresilience as ar
            b = ar.Pipeline.builder()
            b.retry(attempts=3).circuit_breaker(failure_threshold=5).bulkhead(2, max_queue=1)
            b.retry(atempts=3)
            b.circuit_breaker(failure_treshold=5)
            b.rate_limit(rate="1/s", max_wiat=1.0)
            b.retry(attempts="3")
            """
        )
    )
    stdout, stderr, status = api.run(
        [
            "--strict",
            "--no-error-summary",
            "--cache-dir",
            str(ROOT / ".pytest_cache" / "mypy"),
            "--config-file",
            "",
            str(snippet),
        ]
    )
    errors = [line for line in stdout.splitlines() if ": error:" in line]
    assert status == 1, stdout + stderr
    lines = {int(line.split(":")[1]) for line in errors}
    assert lines == {4, 5, 6, 7}, stdout
    text = "\n".join(errors)
    assert 'Unexpected keyword argument "atempts" for "retry"' in text
    assert 'Unexpected keyword argument "failure_treshold" for "circuit_breaker"' in text
    assert 'Unexpected keyword argument "max_wiat" for "rate_limit"' in text
    assert 'Argument "attempts" to "retry" of "PipelineBuilder" has incompatible type' in text
