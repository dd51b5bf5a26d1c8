"""Politeness towards the sites we fetch from: a per-host rate limit (in-process, or shared by all workers through
Redis) and a robots.txt cache."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from protego import Protego

from docsieve.settings import Settings, SettingsError

# Above this many hosts, entries whose time has passed are dropped (and the oldest robots.txt if still too many).
_MAX_ENTRIES = 10_000
# How long a robots.txt that could not be fetched counts as such before it is tried again.
ROBOTS_FAILURE_TTL = 60.0


class RateLimiter(Protocol):
    def wait(self, host: str) -> None:
        """Return when a request to host may be sent, having reserved that moment for the caller."""


class MemoryRateLimiter:
    """Requests to one host at least `interval` seconds apart, across the threads of this process."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._next: dict[str, float] = {}  # host -> monotonic time of its next free slot
        self._lock = threading.Lock()

    def wait(self, host: str) -> None:
        if self._interval <= 0:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next.get(host, now))
            self._next[host] = slot + self._interval
            if len(self._next) > _MAX_ENTRIES:
                self._next = {h: t for h, t in self._next.items() if t > now}
        # Sleep outside the lock: the slot is ours, other hosts need not wait for it.
        time.sleep(slot - now)


# Reserve the host's next slot atomically: slot = max(now, stored), store slot + interval until it has passed,
# return how long the caller must wait. Redis's clock is the one clock all workers share.
_RESERVE_SLOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local slot = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
redis.call('SET', KEYS[1], string.format('%.0f', slot + interval), 'PX', slot + interval - now)
return slot - now
"""


class RedisRateLimiter:
    """Requests to one host at least `interval` seconds apart, across every worker sharing the Redis server."""

    def __init__(self, redis_url: str, prefix: str, interval: float) -> None:
        try:
            import redis
        except ImportError:
            raise SettingsError(
                "DOCSIEVE_COORDINATION_URL: sharing the rate limit needs the Redis client "
                "(pip install 'docsieve[deploy]')"
            ) from None
        self._interval_ms = round(interval * 1000)
        self._prefix = f"{prefix}:ratelimit:"
        self._client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
        self._reserve = self._client.register_script(_RESERVE_SLOT)

    def wait(self, host: str) -> None:
        if self._interval_ms <= 0:
            return
        delay_ms = int(self._reserve(keys=[self._prefix + host], args=[self._interval_ms]))
        if delay_ms > 0:
            time.sleep(delay_ms / 1000)

    def close(self) -> None:
        self._client.close()


def make_limiter(settings: Settings) -> RateLimiter:
    """Shared through Redis when workers coordinate (``coordination_url``), else this process's own."""
    if settings.coordination_url:
        return RedisRateLimiter(settings.coordination_url, settings.queue_prefix, settings.host_interval)
    return MemoryRateLimiter(settings.host_interval)


class NotTheSites(Exception):
    """A robots.txt fetch that failed for a reason of its caller's, not of the site (the page it was fetched for
    ran out of time): raised to that caller, and not kept for the site."""


@dataclass(frozen=True, slots=True)
class _Robots:
    answer: Protego | Exception  # an exception: what fetching the file raised
    expires: float


class RobotsCache:
    """robots.txt per site (scheme, host and port), kept `ttl` seconds, read by Protego (Google's rules, with the
    `*` and `$` wildcards that the standard library's parser takes literally).

    `fetch(robots_url)` returns the file's text, or None when the site has none (a 4xx answer: everything is
    allowed). Whatever it raises (a server error, an unreachable host) is raised again for every URL of the site
    for ROBOTS_FAILURE_TTL seconds: until then the site counts as disallowed, and is not asked again.
    """

    def __init__(
        self,
        fetch: Callable[[str], str | None],
        user_agent: str,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        # Groups are matched against the product token ("docsieve" of "docsieve/0.1 (+https://...)"), as the
        # standard library's parser did: given the whole header, Protego would let a group naming another word
        # of it (the longest match wins) apply to us.
        self._user_agent = user_agent.split("/", 1)[0].strip()
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[str, _Robots] = {}
        self._lock = threading.Lock()
        # One fetch per site at a time (the other threads wait for its answer); striped to bound the locks.
        self._fetch_locks = [threading.Lock() for _ in range(64)]

    def allowed(self, url: str) -> bool:
        parts = urlsplit(url)
        site = f"{parts.scheme}://{parts.netloc}"
        answer = self._entry(site).answer
        if isinstance(answer, Exception):
            raise copy.copy(answer)  # a copy each time: raising the cached one would grow its traceback
        return answer.can_fetch(url, self._user_agent)

    def _entry(self, site: str) -> _Robots:
        entry = self._cached(site)
        if entry is not None:
            return entry
        with self._fetch_locks[hash(site) % len(self._fetch_locks)]:
            entry = self._cached(site) or self._load(site)
        with self._lock:
            self._entries[site] = entry
            if len(self._entries) > _MAX_ENTRIES:
                self._prune()
        return entry

    def _cached(self, site: str) -> _Robots | None:
        with self._lock:
            entry = self._entries.get(site)
        return entry if entry is not None and entry.expires > self._clock() else None

    def _load(self, site: str) -> _Robots:
        try:
            text = self._fetch(f"{site}/robots.txt")
        except NotTheSites:
            raise
        except Exception as exc:  # whatever else it is, it stands for the site until tried again
            return _Robots(exc, self._clock() + min(self._ttl, ROBOTS_FAILURE_TTL))
        # No file (None) is an empty one: no rules, everything allowed.
        return _Robots(Protego.parse(text or ""), self._clock() + self._ttl)

    def _prune(self) -> None:
        now = self._clock()
        self._entries = {site: e for site, e in self._entries.items() if e.expires > now}
        while len(self._entries) > _MAX_ENTRIES:
            del self._entries[next(iter(self._entries))]
