"""Retry budgets and client-side adaptive throttling (pure: no clock, no randomness inside).

- :class:`ConcurrencyBudget` (Envoy's retry budget): a retry may start while the retries in
  flight, with it, are at most ``max(min_retries, percent * requests in flight)``.
- :class:`TokenBudget` (gRPC's retry throttling): tokens start at ``max_tokens``; each failed
  attempt takes 1, each success gives back ``token_ratio`` (capped at the maximum); retries are
  allowed only while ``tokens > max_tokens / 2``. First attempts are never throttled.
- :func:`throttle_probability` (Google SRE book, "Handling Overload"): over a trailing window
  of ``requests`` of which the backend ``accepted`` some, reject locally with probability
  ``max(0, (requests - k * accepted) / (requests + 1))``.
"""

from __future__ import annotations

__all__ = ["ConcurrencyBudget", "TokenBudget", "throttle_probability"]


class ConcurrencyBudget:
    __slots__ = ("min_retries", "percent", "requests", "retries")

    def __init__(self, percent: float, min_retries: int) -> None:
        self.percent = percent
        self.min_retries = min_retries
        self.requests = 0  # calls in flight (first attempts and retries alike)
        self.retries = 0  # retries in flight

    def start_request(self) -> None:
        self.requests += 1

    def end_request(self) -> None:
        self.requests -= 1

    def try_retry(self) -> bool:
        """Take a retry slot if the budget allows; give it back with :meth:`end_retry`.

        Allowed while one more retry keeps the retries in flight within ``max(min_retries,
        percent * requests)``, as Envoy's ``count < max(min, (uint64) (percent * active))``:
        20 % of 16 requests is 3 retries, not 4 (``retries < 3.2`` would let a fourth in);
        the tolerance keeps a share like 0.29 * 100 (28.999...) at 29."""
        retries = self.retries
        if retries < self.min_retries or retries + 1 <= self.percent * self.requests + 1e-9:
            self.retries = retries + 1
            return True
        return False

    def end_retry(self) -> None:
        self.retries -= 1

    def record(self, success: bool) -> None:
        pass


class TokenBudget:
    __slots__ = ("max_tokens", "token_ratio", "tokens")

    def __init__(self, max_tokens: float, token_ratio: float) -> None:
        self.max_tokens = max_tokens
        self.token_ratio = token_ratio
        self.tokens = max_tokens

    def start_request(self) -> None:
        pass

    def end_request(self) -> None:
        pass

    def try_retry(self) -> bool:
        return self.tokens > self.max_tokens / 2

    def end_retry(self) -> None:
        pass

    def record(self, success: bool) -> None:
        if success:  # every successful call: a comparison, not min()'s builtin call
            tokens = self.tokens
            if tokens < self.max_tokens:
                tokens += self.token_ratio
                self.tokens = tokens if tokens < self.max_tokens else self.max_tokens
        else:
            self.tokens = max(0.0, self.tokens - 1)


def throttle_probability(requests: int, accepted: int, k: float) -> float:
    return max(0.0, (requests - k * accepted) / (requests + 1))
