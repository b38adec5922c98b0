"""Per-route rate-limit buckets with Discord's headers and 429 body, plus injected faults and delays."""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from typing import Any

Json = dict[str, Any]

# Discord's published shapes: 5 channel message writes per 5 s, webhooks 5 per 2 s, one reaction per 250 ms.
DEFAULT_BUCKETS: dict[str, tuple[int, float]] = {
    "channel_messages": (5, 5.0),
    "webhook": (5, 2.0),
    "reactions": (1, 0.25),
    "typing": (5, 5.0),
    "dm_open": (5, 5.0),
    "default": (50, 1.0),
}


@dataclass
class Window:
    """One fixed window of a bucket for one major parameter (a channel, guild or webhook token)."""

    limit: int
    per: float
    remaining: int
    resets_at: float


class RateLimiter:
    """Counts requests per (bucket, major parameter) and produces Discord's rate-limit headers."""

    def __init__(self, buckets: dict[str, tuple[int, float]] | None = None) -> None:
        self.buckets: dict[str, tuple[int, float]] = {**DEFAULT_BUCKETS, **(buckets or {})}
        self._windows: dict[tuple[str, str], Window] = {}

    def configure(self, bucket: str, limit: int, per: float) -> None:
        """Change a bucket's size; windows already running keep their old size until they reset."""
        self.buckets[bucket] = (limit, per)
        for (name, _), window in list(self._windows.items()):
            if name == bucket:
                window.limit, window.per = limit, per
                window.remaining = min(window.remaining, limit)

    @staticmethod
    def bucket_hash(bucket: str) -> str:
        return hashlib.sha1(bucket.encode()).hexdigest()[:16]

    def hit(self, bucket: str, major: str) -> tuple[bool, dict[str, str], float]:
        """Count one request; return (allowed, headers, retry_after)."""
        limit, per = self.buckets.get(bucket, self.buckets["default"])
        now = time.monotonic()
        key = (bucket, major)
        window = self._windows.get(key)
        if window is None or now >= window.resets_at:
            window = Window(limit, per, limit, now + per)
            self._windows[key] = window
        reset_after = max(window.resets_at - now, 0.0)
        if window.remaining <= 0:
            return False, self._headers(bucket, window, reset_after), reset_after
        window.remaining -= 1
        return True, self._headers(bucket, window, reset_after), 0.0

    def _headers(self, bucket: str, window: Window, reset_after: float) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(window.limit),
            "X-RateLimit-Remaining": str(window.remaining),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": self.bucket_hash(bucket),
        }


def rate_limited_body(retry_after: float, *, is_global: bool = False) -> Json:
    return {
        "message": "You are being rate limited.",
        "retry_after": round(retry_after, 3),
        "global": is_global,
    }


@dataclass
class Fault:
    """An injected response for the next `times` requests matching method and path."""

    method: str
    pattern: re.Pattern[str]
    status: int
    body: Any
    times: int
    retry_after: float
    headers: dict[str, str] = field(default_factory=dict)

    def matches(self, method: str, path: str) -> bool:
        return self.method in ("*", method) and self.pattern.search(path) is not None


@dataclass
class Delay:
    """Hold matching requests for `seconds` before answering (a slow Discord)."""

    method: str
    pattern: re.Pattern[str]
    seconds: float
    times: int | None

    def matches(self, method: str, path: str) -> bool:
        return self.method in ("*", method) and self.pattern.search(path) is not None


class FaultPlan:
    """The faults and delays a test has asked for, consumed in the order they were added."""

    def __init__(self) -> None:
        self.faults: list[Fault] = []
        self.delays: list[Delay] = []

    def fail_next(
        self,
        method: str,
        path: str,
        *,
        status: int = 500,
        body: Any = None,
        times: int = 1,
        retry_after: float = 0.1,
        headers: dict[str, str] | None = None,
    ) -> Fault:
        if body is None:
            if status == 429:
                body = rate_limited_body(retry_after)
            elif status >= 500:
                body = {"message": "500: Internal Server Error", "code": 0}
            else:
                body = {"message": f"{status}: injected failure", "code": 0}
        fault = Fault(method.upper(), re.compile(path), status, body, times, retry_after, dict(headers or {}))
        self.faults.append(fault)
        return fault

    def delay(self, path: str, seconds: float, *, method: str = "*", times: int | None = None) -> Delay:
        entry = Delay(method.upper(), re.compile(path), seconds, times)
        self.delays.append(entry)
        return entry

    def take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.matches(method, path):
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def take_delay(self, method: str, path: str) -> float:
        total = 0.0
        for entry in list(self.delays):
            if entry.matches(method, path):
                total += entry.seconds
                if entry.times is not None:
                    entry.times -= 1
                    if entry.times <= 0:
                        self.delays.remove(entry)
        return total
