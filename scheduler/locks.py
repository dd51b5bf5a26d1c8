"""Expiring locks with an owner token: in Redis when workers and schedulers share one (the deployment's
``coordination_url``), otherwise in this process.

Only the holder of the token may refresh or release a lock, so a holder that was paused past the expiry
never releases a lock that someone else took meanwhile. In Redis this is redis-py's ``Lock`` (SET NX PX with
the token, then compare-and-extend and compare-and-delete scripts), not scripts of our own.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

import redis
from redis.exceptions import LockNotOwnedError
from redis.lock import Lock

from docsieve.settings import Settings


class Locks(Protocol):
    def acquire(self, key: str, ttl: float) -> str | None:
        """The token of the new hold, or None while someone else holds the lock."""

    def refresh(self, key: str, token: str, ttl: float) -> bool:
        """Extend a hold; False when the token no longer holds the lock."""

    def release(self, key: str, token: str) -> bool:
        """Release a hold; False when the token no longer held the lock."""


def new_token() -> str:
    # Host and pid first: `GET <key>` then tells a person which process holds the lock.
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(8)}"


class RedisLocks:
    def __init__(self, url: str) -> None:
        self.redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        # The Lock of each hold of this process, by token: the Lock carries the token it compares. Dropped once
        # released or found lost; a token not here (another process's, or one released) holds nothing of ours.
        self._holds: dict[str, Lock] = {}

    def acquire(self, key: str, ttl: float) -> str | None:
        # thread_local=False: the token belongs to the hold, not to the thread that took it.
        lock = self.redis.lock(key, timeout=ttl, blocking=False, thread_local=False)
        token = new_token()
        if not lock.acquire(token=token):
            return None
        self._holds[token] = lock
        return token

    def refresh(self, key: str, token: str, ttl: float) -> bool:
        lock = self._holds.get(token)
        if lock is None or lock.name != key:
            return False
        try:
            return lock.extend(ttl, replace_ttl=True)
        except LockNotOwnedError:  # expired, or taken by someone else meanwhile
            self._holds.pop(token, None)
            return False

    def release(self, key: str, token: str) -> bool:
        lock = self._holds.get(token)
        if lock is None or lock.name != key:
            return False
        # Forgotten even if Redis cannot be reached: the hold then expires by itself.
        self._holds.pop(token, None)
        try:
            lock.release()
        except LockNotOwnedError:
            return False
        return True


class LocalLocks:
    """The same locks for one process and its threads (an I/O worker runs a thread pool)."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held: dict[str, tuple[str, float]] = {}  # key -> (token, monotonic deadline)

    def acquire(self, key: str, ttl: float) -> str | None:
        with self._mutex:
            held = self._held.get(key)
            if held and held[1] > time.monotonic():
                return None
            token = new_token()
            self._held[key] = (token, time.monotonic() + ttl)
            return token

    def refresh(self, key: str, token: str, ttl: float) -> bool:
        with self._mutex:
            if not self._holds(key, token):
                return False
            self._held[key] = (token, time.monotonic() + ttl)
            return True

    def release(self, key: str, token: str) -> bool:
        with self._mutex:
            if not self._holds(key, token):
                return False
            del self._held[key]
            return True

    def _holds(self, key: str, token: str) -> bool:
        held = self._held.get(key)
        return held is not None and held[0] == token and held[1] > time.monotonic()


def make_locks(settings: Settings) -> Locks:
    return RedisLocks(settings.coordination_url) if settings.coordination_url else LocalLocks()


@contextmanager
def holding(locks: Locks, key: str, ttl: float) -> Iterator[Callable[[], bool] | None]:
    """None when someone else holds the lock; else it is held until the block ends, and what is yielded
    extends the hold by ``ttl`` again (for work that goes on longer than expected)."""
    token = locks.acquire(key, ttl)
    try:
        yield None if token is None else (lambda: locks.refresh(key, token, ttl))
    finally:
        if token is not None:
            locks.release(key, token)
