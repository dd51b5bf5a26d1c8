"""The per-host rate limiters (in-process and shared through Redis) and the robots.txt cache."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable

import pytest
import redis

from docsieve.politeness import (
    ROBOTS_FAILURE_TTL,
    MemoryRateLimiter,
    RateLimiter,
    RedisRateLimiter,
    RobotsCache,
    make_limiter,
)
from docsieve.settings import Settings

INTERVAL = 0.2
SLACK = 0.05  # a thread wakes up a little after its slot (and hears from Redis a little after it answered)


def wait_times(limiters: list[RateLimiter], host: str, per_limiter: int) -> list[float]:
    """When each wait returned, with every limiter used from its own threads at once."""
    times: list[float] = []
    lock = threading.Lock()

    def run(limiter: RateLimiter) -> None:
        limiter.wait(host)
        with lock:
            times.append(time.monotonic())

    threads = [threading.Thread(target=run, args=(lim,)) for lim in limiters for _ in range(per_limiter)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(times)


def spaced(times: list[float], interval: float) -> bool:
    return all(later - earlier >= interval - SLACK for earlier, later in itertools.pairwise(times))


@pytest.mark.slow
def test_memory_limiter_spaces_requests_to_one_host() -> None:
    times = wait_times([MemoryRateLimiter(INTERVAL)], "news.example", per_limiter=4)
    assert len(times) == 4 and spaced(times, INTERVAL)


@pytest.mark.slow
def test_redis_limiter_is_shared_by_every_limiter_object(redis_url: str, prefix: str) -> None:
    first, second = RedisRateLimiter(redis_url, prefix, INTERVAL), RedisRateLimiter(redis_url, prefix, INTERVAL)
    try:
        times = wait_times([first, second], "news.example", per_limiter=2)
    finally:
        first.close()
        second.close()
    assert len(times) == 4 and spaced(times, INTERVAL)
    client = redis.Redis.from_url(redis_url)
    ttl_ms = client.pttl(f"{prefix}:ratelimit:news.example")
    client.close()
    assert 0 < ttl_ms <= 4 * INTERVAL * 1000  # the key goes away once its slot has passed


def test_zero_interval_never_waits_nor_asks_redis() -> None:
    memory = MemoryRateLimiter(0)
    started = time.monotonic()
    for _ in range(3):
        memory.wait("news.example")
    assert time.monotonic() - started < SLACK
    # Nothing listens on port 1: a limiter that asks Redis fails there, one with no interval returns.
    with pytest.raises(redis.ConnectionError):
        RedisRateLimiter("redis://127.0.0.1:1/0", "unused", INTERVAL).wait("news.example")
    RedisRateLimiter("redis://127.0.0.1:1/0", "unused", 0).wait("news.example")


def test_make_limiter_follows_the_coordination_setting(redis_url: str) -> None:
    assert isinstance(make_limiter(Settings()), MemoryRateLimiter)
    limiter = make_limiter(Settings(coordination_url=redis_url))
    assert isinstance(limiter, RedisRateLimiter)
    limiter.close()


class FakeRobots:
    """A robots.txt fetch that counts its calls, and a clock the test moves."""

    def __init__(self, answer: Callable[[], str | None]) -> None:
        self.answer = answer
        self.calls: list[str] = []
        self.now = 1000.0

    def fetch(self, url: str) -> str | None:
        self.calls.append(url)
        return self.answer()

    def clock(self) -> float:
        return self.now


def test_robots_cache_keeps_a_site_for_its_ttl() -> None:
    fake = FakeRobots(lambda: "User-agent: *\nDisallow: /private\n")
    cache = RobotsCache(fake.fetch, "docsieve/0.1", ttl=60, clock=fake.clock)
    assert cache.allowed("https://news.example/a") and not cache.allowed("https://news.example/private/b")
    assert fake.calls == ["https://news.example/robots.txt"]
    cache.allowed("http://news.example/a")  # another scheme is another site
    cache.allowed("https://news.example:8443/a")  # and so is another port
    assert len(fake.calls) == 3
    fake.now += 61
    cache.allowed("https://news.example/a")
    assert len(fake.calls) == 4


def test_robots_cache_honours_wildcards_and_end_anchors() -> None:
    # Google's rules: "*" is any run of characters and "$" ends the path; urllib.robotparser took both literally.
    fake = FakeRobots(lambda: "User-agent: *\nDisallow: /*.pdf$\nDisallow: /*?session=\n")
    cache = RobotsCache(fake.fetch, "docsieve/0.1", ttl=60, clock=fake.clock)
    assert not cache.allowed("https://news.example/files/report.pdf")
    assert not cache.allowed("https://news.example/story?session=abc")
    assert cache.allowed("https://news.example/files/report.pdf?page=2")  # "$": .pdf must end the path
    assert cache.allowed("https://news.example/story?id=1")


def test_robots_cache_matches_groups_by_product_token() -> None:
    # The product token picks the group, not a longer word elsewhere in the header (Protego would take the longest).
    robots = "User-agent: docsieve\nDisallow: /private\n\nUser-agent: deduplication\nDisallow: /\n"
    fake = FakeRobots(lambda: robots)
    agent = "docsieve/0.1 (+https://github.com/docsieve/docsieve; news deduplication)"
    cache = RobotsCache(fake.fetch, agent, ttl=60, clock=fake.clock)
    assert cache.allowed("https://news.example/a") and not cache.allowed("https://news.example/private/b")


def test_robots_cache_none_allows_everything() -> None:
    fake = FakeRobots(lambda: None)
    assert RobotsCache(fake.fetch, "docsieve/0.1", ttl=60, clock=fake.clock).allowed("https://news.example/any")


def test_robots_cache_remembers_a_failure_for_a_while() -> None:
    def unavailable() -> str | None:
        raise ConnectionError("robots.txt unavailable")

    fake = FakeRobots(unavailable)
    cache = RobotsCache(fake.fetch, "docsieve/0.1", ttl=3600, clock=fake.clock)
    raised = []
    for _ in range(2):
        with pytest.raises(ConnectionError, match="unavailable") as caught:
            cache.allowed("https://news.example/a")
        raised.append(caught.value)
    assert len(fake.calls) == 1 and raised[0] is not raised[1]  # a fresh exception each time
    fake.now += ROBOTS_FAILURE_TTL + 1
    with pytest.raises(ConnectionError):
        cache.allowed("https://news.example/a")
    assert len(fake.calls) == 2


def test_robots_cache_fetches_a_site_once_for_many_threads() -> None:
    def slow() -> str:
        time.sleep(0.1)
        return "User-agent: *\nAllow: /\n"

    fake = FakeRobots(slow)
    cache = RobotsCache(fake.fetch, "docsieve/0.1", ttl=60)
    threads = [threading.Thread(target=cache.allowed, args=(f"https://news.example/{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert fake.calls == ["https://news.example/robots.txt"]
