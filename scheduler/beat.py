"""Celery beat with one entry per source of the sources file, and a leader lock.

Why a plain ``celery.beat.Scheduler`` subclass rather than RedBeat: the schedule is derived from the
sources file every time it changes, so it needs no storage of its own (RedBeat would keep a second copy
in Redis to reconcile with the file), and the one thing that must be shared, the leader lock, is a
single key. No extra dependency, no schedule file on disk.

- Each tick reads the sources file again when it changed (mtime, size or inode): a source added,
  removed or re-timed takes effect without a restart. A file that does not load keeps the last good
  schedule and logs the error once.
- A source is polled as soon as it appears (at start or when added), then every ``interval`` seconds;
  a changed interval keeps the time of the last poll.
- Each poll message carries the whole source, so the fetchers need no sources file.
- Every tick rewrites a heartbeat file (``heartbeat_path``: the time and whether this scheduler leads),
  which the container's healthcheck reads (``python -m scheduler.health``).
- With ``coordination_url`` set, only the holder of ``<prefix>:scheduler:leader`` sends anything. The
  holder refreshes the lock every tick (a tick is at most ``TICK`` seconds apart) and releases it on
  shutdown; a standby takes over within ``LEADER_TTL`` of a leader's crash, and then sends what is due
  at once. A duplicate poll in the rare overlap is harmless: polls of one source never overlap and an
  entry is enqueued once (see scheduler/tasks.py).
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import redis
from celery import Celery
from celery.beat import ScheduleEntry, Scheduler

from docsieve.settings import Settings
from docsieve.sources import Source, SourcesError, load_sources
from scheduler.locks import Locks, make_locks
from worker.celery_app import create_app, queue_names

logger = logging.getLogger(__name__)

POLL_TASK = "docsieve.poll_source"
ENTRY_PREFIX = "poll-source:"
TICK = 5.0  # seconds: the longest a tick waits, so the lock is refreshed and the file checked this often
LEADER_TTL = 30.0  # seconds; several ticks, so one slow tick does not cost the lead
LEADING, STANDING_BY, UNREACHABLE = "leading", "standing by", "lock unreachable"


class Leadership:
    """Who sends: the holder of the leader lock. Without a shared Redis every scheduler leads."""

    def __init__(self, locks: Locks, key: str, ttl: float = LEADER_TTL) -> None:
        self.locks = locks
        self.key = key
        self.ttl = ttl
        self.token: str | None = None
        self.leading: bool | None = None
        self.state = "starting"  # what the heartbeat says: leading, standing by, or lock unreachable

    def hold(self) -> bool:
        """Refresh the lock if held, else try to take it; whether this scheduler leads for this tick."""
        try:
            leading = self._refresh_or_acquire()
        except redis.RedisError as exc:
            # Keep the token: the lock may still be ours when Redis answers again. Send nothing meanwhile.
            logger.warning("scheduler: cannot reach the lock %s (%s); sending nothing until it answers", self.key, exc)
            self.state = UNREACHABLE
            return False
        self.state = LEADING if leading else STANDING_BY
        if leading != self.leading:  # said once per change, not every tick
            if leading:
                logger.info("scheduler: leading (lock %s)", self.key)
            else:
                logger.warning("scheduler: another scheduler holds the lock %s; standing by", self.key)
            self.leading = leading
        return leading

    def _refresh_or_acquire(self) -> bool:
        if self.token is not None and self.locks.refresh(self.key, self.token, self.ttl):
            return True
        self.token = self.locks.acquire(self.key, self.ttl)
        return self.token is not None

    def release(self) -> None:
        if self.token is None:
            return
        try:
            self.locks.release(self.key, self.token)
        except redis.RedisError as exc:
            logger.warning("scheduler: could not release the lock %s (%s); it expires by itself", self.key, exc)
        self.token = None
        self.leading = None


class SourcesScheduler(Scheduler):
    """``celery beat`` scheduler for the sources file of ``app.docsieve_settings``."""

    max_interval = TICK

    def __init__(self, app: Celery, *args, **kwargs) -> None:
        settings: Settings = app.docsieve_settings
        self.sources_file = settings.sources_file
        self.io_queue = queue_names(settings)[1]
        self.leadership = Leadership(make_locks(settings), f"{settings.queue_prefix}:scheduler:leader")
        self.heartbeat = heartbeat_path(settings)
        self._heartbeat_failed = False
        self._file_state: tuple[int, int, int] | None = None
        self._loaded = False
        super().__init__(app, *args, **kwargs)

    def setup_schedule(self) -> None:
        super().setup_schedule()  # beat_schedule from the configuration, if any
        self.refresh_sources()

    def tick(self, *args, **kwargs) -> float:
        self.refresh_sources()
        # A standby sends nothing, and asks again next tick.
        wait = super().tick(*args, **kwargs) if self.leadership.hold() else self.max_interval
        self._beat()
        return wait

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.leadership.release()
            self.heartbeat.unlink(missing_ok=True)

    def _beat(self) -> None:
        """This tick is done: the heartbeat file says when, and in what state (written whole, then renamed,
        so the healthcheck never reads half of it)."""
        try:
            written = self.heartbeat.with_name(self.heartbeat.name + f".{os.getpid()}")
            written.write_text(self.leadership.state, encoding="utf-8")
            written.replace(self.heartbeat)
        except OSError as exc:
            if not self._heartbeat_failed:  # said once: the healthcheck reports the stale heartbeat
                logger.error("scheduler: cannot write the heartbeat %s: %s", self.heartbeat, exc)
                self._heartbeat_failed = True

    def refresh_sources(self) -> None:
        """Load the sources file again if it changed since the last look."""
        state = _file_state(self.sources_file)
        if self._loaded and state == self._file_state:
            return
        self._file_state, self._loaded = state, True
        try:
            sources = load_sources(self.sources_file)
        except SourcesError as exc:
            kept = sum(name.startswith(ENTRY_PREFIX) for name in self.schedule)
            logger.error("scheduler: %s; keeping the schedule of %d sources", exc, kept)
            return
        self._apply(sources)

    def _apply(self, sources: list[Source]) -> None:
        wanted = {ENTRY_PREFIX + s.name: s for s in sources}
        removed = [name for name in self.schedule if name.startswith(ENTRY_PREFIX) and name not in wanted]
        for name in removed:
            del self.schedule[name]
        added = []
        for name, source in wanted.items():
            entry = self._entry(name, source)
            current = self.schedule.get(name)
            if current is None:
                self.schedule[name] = entry
                added.append(source.name)
            elif current != entry:
                current.update(entry)  # keeps the time of its last run
        self._heap = None  # entries may have changed in place: let the next tick rebuild its heap
        logger.info(
            "scheduler: %d sources from %s (added %s; removed %s)",
            len(wanted),
            self.sources_file,
            ", ".join(added) or "none",
            ", ".join(n.removeprefix(ENTRY_PREFIX) for n in removed) or "none",
        )

    def _entry(self, name: str, source: Source) -> ScheduleEntry:
        every = timedelta(seconds=source.interval)
        return self.Entry(
            name=name,
            task=POLL_TASK,
            args=[asdict(source)],
            schedule=every,
            # A poll still queued when the next one is due is dropped: the next one does its work.
            options={"queue": self.io_queue, "expires": source.interval},
            last_run_at=self.app.now() - every,  # due at once
            app=self.app,
        )


def heartbeat_path(settings: Settings) -> Path:
    """The heartbeat file of this host's scheduler of the deployment (``queue_prefix``)."""
    return Path(tempfile.gettempdir()) / f"docsieve-scheduler-{quote(settings.queue_prefix, safe='')}.alive"


def _file_state(path: str) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


def run_scheduler(settings: Settings, loglevel: str = "INFO") -> None:
    """``docsieve scheduler``: Celery beat in this process, until SIGTERM or SIGINT."""
    app = create_app(settings)
    app.Beat(scheduler=SourcesScheduler, loglevel=loglevel).run()
