"""The per-key rate limit: the generic cell rate algorithm (GCRA), as in token buckets but one number per key
(when its next request is due). In this process, or in the coordination Redis shared by every API process.
Written here rather than taken from a library for the same reason as the fetcher's host limit
(docsieve/politeness.py), whose Redis script it follows: one atomic script on Redis's clock."""

from __future__ import annotations

import threading
import time
from typing import Protocol

from docsieve.settings import Settings, SettingsError

_MAX_KEYS = 10_000  # past this many keys in memory, those with nothing owed are forgotten


class RateLimit(Protocol):
    def take(self, key: str) -> float:
        """0 if a request of ``key`` may go now (and it is counted), else the seconds until one may."""


class NoLimit:
    def take(self, key: str) -> float:
        return 0.0


class MemoryRateLimit:
    def __init__(self, rate: float, burst: int) -> None:
        self._interval = 1.0 / rate
        self._tolerance = burst * self._interval
        self._due: dict[str, float] = {}  # key -> its theoretical arrival time (monotonic seconds)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        with self._lock:
            now = time.monotonic()
            due = max(self._due.get(key, now), now)
            if due - now > self._tolerance:
                return due - now - self._tolerance
            self._due[key] = due + self._interval
            if len(self._due) > _MAX_KEYS:
                self._due = {k: t for k, t in self._due.items() if t > now}
            return 0.0


# Microseconds on Redis's clock; the key lives as long as something is owed.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local due = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
if due - now > tolerance then
  return tostring(due - now - tolerance)
end
redis.call('SET', KEYS[1], string.format('%.0f', due + interval), 'PX', math.ceil((due + interval - now) / 1000) + 1)
return '0'
"""


class RedisRateLimit:
    def __init__(self, redis_url: str, prefix: str, rate: float, burst: int) -> None:
        try:
            import redis
        except ImportError:
            raise SettingsError(
                "DOCSIEVE_COORDINATION_URL: a shared rate limit needs the Redis client (pip install 'docsieve[deploy]')"
            ) from None
        self._interval = round(1_000_000 / rate)
        self._tolerance = burst * self._interval
        self._prefix = f"{prefix}:apirate:"
        self._client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
        self._take = self._client.register_script(_TAKE)

    def take(self, key: str) -> float:
        owed = int(self._take(keys=[self._prefix + key], args=[self._interval, self._tolerance]))
        return owed / 1_000_000


def rate_limit(settings: Settings) -> RateLimit:
    if settings.api_rate <= 0:
        return NoLimit()
    if settings.coordination_url:
        return RedisRateLimit(settings.coordination_url, settings.queue_prefix, settings.api_rate, settings.api_burst)
    return MemoryRateLimit(settings.api_rate, settings.api_burst)
