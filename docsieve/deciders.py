"""Decider slots: how many processes of one machine decide and store batches at once, for one store.

Deciding a batch (its lookup, verification and story rules, before the store's lock and again under it when others
stored meanwhile) is the CPU-heavy half of a batch, and what it read goes stale whenever another worker commits. More
deciding processes than cores take turns on the cores, so each decision takes longer, more of them are overtaken by
others' commits, and they are made again: on two cores, eight workers spent 2.4-3.7 times the CPU a document
that one did (docs/benchmarks.md, "Issue 14, thirty-first session"). A slot caps the deciders (``Settings.deciders``,
one a core by default); the workers beyond it prepare their next batches (read, extract, fingerprint) meanwhile,
which needs no lock. A SQLite store has none: its workers decide under its one writer's lock already.

A slot is an exclusive ``flock`` on one of N files named for the store, in a folder of the machine
(``Settings.deciders_folder``): the kernel releases it when its process dies, however it dies, so no slot is ever
lost. It is a throttle of one machine, not a lock of the store: other machines have their own cores and slots, and
correctness never rests on it (the store's lock does that). Written here rather than taken from a library:
``multiprocessing``'s semaphores exist only among the children of one parent, and Celery's workers, an ``ingest``
and the HTTP service are not.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from docsieve.settings import redacted

logger = logging.getLogger(__name__)

# How often the one process that waits for a slot (the others wait on the gate, in the kernel) tries them: a batch
# holds one for tenths of a second (a batch of 512), a few milliseconds (a batch of 1).
POLL_S = 0.001
OPEN = os.O_RDWR | os.O_CREAT


# The slots this process holds, by store. Slots limit processes: a process's threads share its interpreter (its
# one core's worth of Python), and a decision made inside another in one process (one process standing for two
# workers, as tests and benchmarks do) must never wait for its own process's slot.
@dataclass
class _Held:
    lock: threading.Lock = field(default_factory=threading.Lock)  # taken while the slot is got or given back
    fd: int = -1  # the slot's open file; -1: none held
    threads: int = 0  # this process's threads inside it


_held: dict[tuple[Path, str], _Held] = {}  # (folder, store's name) -> this process's slot
_held_lock = threading.Lock()


def _forget_after_fork() -> None:
    """A forked child holds none of its parent's slots (closing its copies of their files releases nothing: the
    parent's stay open), nor the locks its parent's other threads held at the fork."""
    global _held_lock
    for held in _held.values():
        if held.fd >= 0:
            os.close(held.fd)
    _held.clear()
    _held_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


def default_folder() -> Path:
    """The slots' folder where none is set: in the user's runtime folder (``XDG_RUNTIME_DIR``: the user's alone, in
    memory, where a session's lock files go), else the user's own in the machine's temporary folder (another user's
    could not be written)."""
    if runtime := os.environ.get("XDG_RUNTIME_DIR"):
        return Path(runtime) / "docsieve-deciders"
    return Path(tempfile.gettempdir()) / f"docsieve-deciders-{os.getuid()}"


def cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class DeciderSlots:
    """``count`` slots of this machine for the store at ``store_url`` (the same URL names the same slots; 0: no
    slots, every process decides at once)."""

    def __init__(self, store_url: str, count: int, folder: Path | None = None) -> None:
        """``folder``: where the slots' files are (``default_folder()`` unless given)."""
        self.count = count
        self.folder = folder or default_folder()
        # The store's slots among others', named without its password: the folder may be listed by other users, and
        # a hash of a password is one to guess at.
        self.name = hashlib.sha256(redacted(store_url).encode()).hexdigest()[:16]
        self._unusable = False

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Hold one slot for the block, waiting for one if all are taken (the threads of a process share its slot)."""
        if not self.count:
            yield
            return
        self._enter()
        try:
            yield
        finally:
            self._leave()

    @property
    def _key(self) -> tuple[Path, str]:
        return self.folder, self.name

    def _enter(self) -> None:
        with _held_lock:
            held = _held.setdefault(self._key, _Held())
        with held.lock:  # the process's other threads wait here while one gets the slot
            if held.threads == 0:
                try:
                    held.fd = self._take()
                except OSError as e:  # a full or read-only temporary folder: deciding unthrottled beats not deciding
                    if not self._unusable:
                        logger.warning("decider slots in %s cannot be used (%s): deciding without them", self.folder, e)
                        self._unusable = True
                    held.fd = -1
            held.threads += 1

    def _leave(self) -> None:
        held = _held[self._key]
        with held.lock:
            held.threads -= 1
            if held.threads == 0 and held.fd >= 0:
                fcntl.flock(held.fd, fcntl.LOCK_UN)
                os.close(held.fd)
                held.fd = -1

    def _take(self) -> int:
        """A slot's open file, locked. Files are opened for each hold, so that a forked child never shares one with
        its parent (a ``flock`` belongs to the open file, which a fork shares)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        gate = -1
        opened: list[int] = []
        try:
            # Opened once and tried again at each poll (not opened every millisecond), from where this process's id
            # points, so that processes spread over the slots rather than all trying the first one.
            for k in range(self.count):
                opened.append(os.open(self.folder / f"{self.name}-{(os.getpid() + k) % self.count}", OPEN, 0o600))
            while True:
                for k, fd in enumerate(opened):
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        continue
                    return opened.pop(k)
                if gate < 0:
                    gate = os.open(self.folder / f"{self.name}-gate", OPEN, 0o600)
                    fcntl.flock(gate, fcntl.LOCK_EX)  # one waiter polls the slots; the others sleep here
                else:
                    time.sleep(POLL_S)
        finally:
            for fd in opened:  # the slots not taken (all of them, on an error: a file system without flock)
                os.close(fd)
            if gate >= 0:
                fcntl.flock(gate, fcntl.LOCK_UN)
                os.close(gate)
