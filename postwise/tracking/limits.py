"""Ingestion limits: Segment's sizes, a bounded gunzip and a per-write-key token bucket.

The token bucket lives in the process: with several API processes each one grants the
configured rate, so the whole deployment allows (processes x rate). See docs/tracking.md.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from postwise.core.errors import PayloadTooLarge, ValidationFailed

MAX_EVENT_BYTES = 32 * 1024  # one call, as Segment
MAX_BATCH_BYTES = 500 * 1024  # one request body after decompression, as Segment


def gunzip_bounded(body: bytes, limit: int = MAX_BATCH_BYTES) -> bytes:
    """Decompress a gzip body, refusing it as soon as it inflates past ``limit`` bytes."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise ValidationFailed(
            f"the body is not valid gzip ({exc}); send it plain or gzip-compressed",
            code="invalid_gzip",
        ) from None
    if len(out) > limit:
        raise PayloadTooLarge(
            f"the decompressed body is over {limit} bytes; send fewer events per batch",
            code="batch_too_large",
        )
    if not inflater.eof:
        raise ValidationFailed("the gzip body is truncated", code="invalid_gzip")
    return out


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets by key: ``rate`` events per second, bursts up to ``burst``.

    ``take`` returns 0 when the events may pass (and spends their tokens), else the
    seconds until enough tokens will have accrued; a refused request spends nothing.
    """

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("rate and burst must be positive")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, key: str, cost: float = 1.0) -> float:
        cost = min(cost, self.burst)  # a batch larger than the burst still passes when full
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(self.burst, now)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            if bucket.tokens >= cost:
                bucket.tokens -= cost
                return 0.0
            return (cost - bucket.tokens) / self.rate
