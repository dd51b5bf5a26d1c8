"""How each source's last poll went, for ``docsieve status``: written by the fetcher that ran the poll
into the coordination Redis (``coordination_url``), one key per source.

A poll runs on whichever fetcher takes it, so its failure is otherwise only in that fetcher's log. The
key of a source no longer polled (removed from the sources file, or no fetcher running) expires a week
after it was last written; until then ``status`` shows the source as overdue.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass

import redis

from docsieve.settings import Settings
from docsieve.sources import Source

KEEP = 7 * 24 * 3600  # seconds a source's last poll is kept after it was written (plus two intervals)
# A poll may wait in the queue behind others, and a fetcher may be slow: overdue only past two intervals
# and this margin.
GRACE = 60.0


@dataclass(frozen=True, slots=True)
class PollState:
    source: str
    interval: float  # seconds between two polls of the source
    at: float  # epoch seconds: when the last poll ended
    error: str | None = None  # why the last poll failed; None if it worked
    failing_since: float | None = None  # when the run of failed polls began
    failures: int = 0  # failed polls in a row
    found: int = 0  # entries the source listed at the last poll that worked
    new: int = 0  # of which new

    def overdue(self, now: float) -> bool:
        return now - self.at > 2 * self.interval + GRACE


class PollLog:
    def __init__(self, url: str, queue_prefix: str) -> None:
        self.redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.prefix = f"{queue_prefix}:polled:"

    @classmethod
    def of(cls, settings: Settings) -> PollLog | None:
        """The deployment's log, or None without a coordination Redis (polls then run in one process)."""
        return cls(settings.coordination_url, settings.queue_prefix) if settings.coordination_url else None

    def record(self, source: Source, result: dict | None = None, error: str | None = None) -> None:
        """After a poll: what ``scheduler.tasks.poll_once`` returned, or the error it raised. A poll that
        did not run (another one of the source still running) changes nothing; a source that cannot be
        read (``rejected``) is a failure."""
        if result is not None and "skipped" in result:
            return
        error = error or (result or {}).get("rejected")
        now = time.time()
        if error is None:
            assert result is not None
            state = PollState(source.name, source.interval, now, found=result["found"], new=result["new"])
        else:
            previous = self.get(source.name)
            failing = previous if previous is not None and previous.error is not None else None
            state = PollState(
                source.name,
                source.interval,
                now,
                error=error,
                failing_since=failing.failing_since if failing else now,
                failures=failing.failures + 1 if failing else 1,
            )
        ttl = KEEP + 2 * source.interval
        self.redis.set(self.prefix + source.name, json.dumps(asdict(state), ensure_ascii=False), ex=round(ttl))

    def get(self, name: str) -> PollState | None:
        raw = self.redis.get(self.prefix + name)
        return PollState(**json.loads(raw)) if raw else None

    def all(self) -> list[PollState]:
        """Every source polled in the last week, by name."""
        keys = sorted(self.redis.scan_iter(match=_glob_escape(self.prefix) + "*", count=1000))
        values = self.redis.mget(keys) if keys else []
        return sorted((PollState(**json.loads(v)) for v in values if v), key=lambda s: s.source)

    def close(self) -> None:
        self.redis.close()


def _glob_escape(text: str) -> str:
    """``text`` matched literally by a Redis SCAN pattern."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)
