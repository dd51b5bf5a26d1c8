"""Decider slots: at most N processes of one machine decide and store batches at once for one store; a slot is
released when its process ends however it ends; a process's threads share its slot, and a forked child does not."""

from __future__ import annotations

import errno
import fcntl
import logging
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from docsieve import deciders
from docsieve.deciders import DeciderSlots, cores
from docsieve.models import RawDocument
from docsieve.pipeline import Pipeline
from docsieve.settings import Settings, SettingsError
from docsieve.store import Store

from .services import postgres_database
from .test_stories import text, words

SPAWN = multiprocessing.get_context("spawn")
# How long a process that must not get a slot is given to get one anyway, once it tries (it never does where the
# slots work). Counted from ``trying``: a spawned process takes about as long to start.
REFUSED_FOR_S = 0.5


def _hold(folder: str, count: int, inside, release, trying=None) -> None:
    """A process that takes a slot, says so, and keeps it until ``release`` (or until it is killed); ``trying``: set
    once it has started and goes for the slot."""
    slots = DeciderSlots("store", count, Path(folder))
    if trying is not None:
        trying.set()
    with slots.held():
        inside.set()
        release.wait(60)


def _refused(process, trying, inside) -> bool:
    """``process`` started, and tried for a slot in vain for a while."""
    process.start()
    assert trying.wait(60), "the process never started"
    return not inside.wait(REFUSED_FOR_S)


def _holder(tmp_path: Path, count: int):
    inside, release = SPAWN.Event(), SPAWN.Event()
    process = SPAWN.Process(target=_hold, args=(str(tmp_path), count, inside, release))
    process.start()
    assert inside.wait(60), "the first process never got a slot"
    return process, inside, release


def test_a_process_waits_while_every_slot_is_taken(tmp_path: Path) -> None:
    first, _, release_first = _holder(tmp_path, 1)
    second_inside, release_second, trying = SPAWN.Event(), SPAWN.Event(), SPAWN.Event()
    second = SPAWN.Process(target=_hold, args=(str(tmp_path), 1, second_inside, release_second, trying))
    try:
        assert _refused(second, trying, second_inside), "a second process decided beside the one the slot allows"
        release_first.set()
        assert second_inside.wait(60), "the slot was never handed on"
    finally:
        release_first.set()
        release_second.set()
        first.join(60)
        second.join(60)


def test_as_many_processes_as_slots_decide_at_once(tmp_path: Path) -> None:
    first, _, release_first = _holder(tmp_path, 2)
    second, _, release_second = _holder(tmp_path, 2)  # gets the other slot while the first holds its own
    third_inside, release_third, trying = SPAWN.Event(), SPAWN.Event(), SPAWN.Event()
    third = SPAWN.Process(target=_hold, args=(str(tmp_path), 2, third_inside, release_third, trying))
    try:
        assert _refused(third, trying, third_inside)
        release_second.set()
        assert third_inside.wait(60)
    finally:
        for event in (release_first, release_second, release_third):
            event.set()
        for process in (first, second, third):
            process.join(60)


def test_a_killed_holder_leaves_its_slot_free(tmp_path: Path) -> None:
    first, _, _ = _holder(tmp_path, 1)
    os.kill(first.pid, signal.SIGKILL)  # no exit handler, no finally: the kernel releases the lock
    first.join(60)
    second, _, release_second = _holder(tmp_path, 1)
    release_second.set()
    second.join(60)


def test_a_process_threads_and_nested_decisions_share_its_slot(tmp_path: Path) -> None:
    slots = DeciderSlots("store", 1, tmp_path)
    inside = threading.Event()
    other_inside, release, trying = SPAWN.Event(), SPAWN.Event(), SPAWN.Event()
    other = SPAWN.Process(target=_hold, args=(str(tmp_path), 1, other_inside, release, trying))
    opened = len(os.listdir("/proc/self/fd"))
    with slots.held(), slots.held():
        pass
    assert len(os.listdir("/proc/self/fd")) == opened, "the slot's file was left open"
    with slots.held():
        with DeciderSlots("store", 1, tmp_path).held():  # a second pipeline of this process, inside the first
            pass

        def decide() -> None:
            with slots.held():
                inside.set()

        thread = threading.Thread(target=decide)
        thread.start()
        thread.join(60)
        assert inside.is_set(), "a thread of the process holding the slot waited for it"
        # Still the process's once the nested decision and the thread have left it.
        try:
            assert _refused(other, trying, other_inside), "a decision inside another gave the process's slot back"
        except BaseException:
            release.set()
            raise
    # The process left the slot as often as it entered it: another process gets it.
    try:
        assert other_inside.wait(60)
    finally:
        release.set()
        other.join(60)


def test_a_waiting_process_takes_whichever_slot_is_freed(tmp_path: Path) -> None:
    """Every slot is tried, before waiting and while waiting: with one busy, the other is taken at once; with both
    busy, the first freed, whichever it is. (A file locked here stands for another process's slot: two open files
    of one process exclude each other too.)"""
    slots = DeciderSlots("store", 2, tmp_path)
    tmp_path.mkdir(exist_ok=True)
    files = [os.open(tmp_path / f"{slots.name}-{k}", os.O_RDWR | os.O_CREAT, 0o600) for k in range(2)]
    try:
        for freed in range(2):
            inside, leave = threading.Event(), threading.Event()

            def decide(inside: threading.Event = inside, leave: threading.Event = leave) -> None:
                with slots.held():
                    inside.set()
                    leave.wait(60)

            fcntl.flock(files[1 - freed], fcntl.LOCK_EX)
            thread = threading.Thread(target=decide)
            thread.start()
            assert inside.wait(10), f"slot {freed} was free, but not taken"
            leave.set()
            thread.join(60)
            inside.clear()
            leave.clear()
            fcntl.flock(files[freed], fcntl.LOCK_EX)  # both busy: it waits
            thread = threading.Thread(target=decide)
            thread.start()
            assert not inside.wait(REFUSED_FOR_S)
            fcntl.flock(files[freed], fcntl.LOCK_UN)
            assert inside.wait(10), f"slot {freed} was freed, but not taken"
            leave.set()
            thread.join(60)
            fcntl.flock(files[1 - freed], fcntl.LOCK_UN)
    finally:
        for fd in files:
            os.close(fd)  # a waiting thread gets its slot and ends


def test_a_forked_child_does_not_hold_its_parent_slot(tmp_path: Path) -> None:
    fork = multiprocessing.get_context("fork")
    inside, release, trying = fork.Event(), fork.Event(), fork.Event()
    with DeciderSlots("store", 1, tmp_path).held():
        child = fork.Process(target=_hold, args=(str(tmp_path), 1, inside, release, trying))
        assert _refused(child, trying, inside), "a forked child took the slot its parent holds"
    try:
        assert inside.wait(60)
    finally:
        release.set()
        child.join(60)


def test_a_child_forked_while_another_thread_takes_a_slot_takes_its_own(tmp_path: Path) -> None:
    """The fork is made while the slots' registry is locked (as another thread of the parent may have it): the child
    has a lock of its own, not the copy of one nobody will ever release."""
    fork = multiprocessing.get_context("fork")
    inside, release = fork.Event(), fork.Event()
    with deciders._held_lock:
        child = fork.Process(target=_hold, args=(str(tmp_path), 1, inside, release))
        child.start()
    try:
        assert inside.wait(60), "the child waited for its parent's lock"
    finally:
        release.set()
        child.join(60)
        if child.exitcode is None:
            child.kill()


def test_slots_that_cannot_be_made_leave_deciding_unthrottled(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocked = tmp_path / "a file"
    blocked.write_text("not a folder")
    slots = DeciderSlots("store", 1, blocked)
    ran = []
    with caplog.at_level(logging.WARNING, logger="docsieve.deciders"):
        for _ in range(2):
            with slots.held():
                ran.append(True)
    assert ran == [True, True]
    assert len([r for r in caplog.records if "cannot be used" in r.getMessage()]) == 1  # said once, not per batch


def test_slots_that_cannot_be_locked_leave_no_file_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file system that refuses flock (ENOLCK): deciding goes on unthrottled, and no batch leaves a slot's file
    open (a worker that lives long would run out of them)."""

    def refused(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", refused)
    slots = DeciderSlots("store", 1, tmp_path)
    opened = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        with slots.held():
            pass
    assert len(os.listdir("/proc/self/fd")) == opened


def test_slots_are_named_for_the_store_and_not_its_password() -> None:
    """Another store has other slots; the names (files in a folder other users may list) are the same whatever the
    store's password, so they hold no hash of it."""
    name = DeciderSlots("postgresql://docsieve:secret@db:5432/news", 1).name
    assert name == DeciderSlots("postgresql://docsieve:other@db:5432/news", 1).name
    assert name != DeciderSlots("postgresql://docsieve:secret@db:5432/archive", 1).name


def test_deciders_setting() -> None:
    assert Settings().deciders == 0
    assert Settings.from_env({"DOCSIEVE_DECIDERS": "3"}).deciders == 3
    with pytest.raises(SettingsError, match="DECIDERS must not be negative"):
        Settings.from_env({"DOCSIEVE_DECIDERS": "-1"})


def _ingest(
    url: str, deciders: int, folder: str, docs: list[RawDocument], times: str, first_in, others_in, first: bool
) -> None:
    """A worker process ingesting ``docs`` in batches of 4, writing when each of its batches was decided (enter and
    leave, on the machine's monotonic clock) to ``times``. The first worker's first batch waits (up to a limit) for
    the other worker to start deciding one of its own, which it may only do where the slots allow two."""
    settings = Settings(store=url, batch_size=4, deciders=deciders, deciders_folder=folder, prepare_ahead="off")
    pipeline = Pipeline(Store(url), settings)
    decide = pipeline._store_prepared
    spans = []

    def timed(*args):
        began = time.monotonic()
        if first and not spans:
            first_in.set()
            others_in.wait(3)
        elif not first:
            others_in.set()
        try:
            return decide(*args)
        finally:
            spans.append((began, time.monotonic()))

    pipeline._store_prepared = timed
    if not first:
        first_in.wait(60)
    pipeline.ingest(docs)
    pipeline.close()
    Path(times).write_text("\n".join(f"{a} {b}" for a, b in spans))


@pytest.mark.parametrize("deciders", [1, 2])
def test_workers_of_one_machine_decide_in_turn_when_one_slot_is_set(
    postgres_server_url: str, tmp_path: Path, deciders: int
) -> None:
    docs = [RawDocument(source=f"{k}.txt", body=text(words(k, 80))) for k in range(16)]
    first_in, others_in = SPAWN.Event(), SPAWN.Event()
    with postgres_database(postgres_server_url) as url:
        workers = [
            SPAWN.Process(
                target=_ingest,
                args=(
                    url,
                    deciders,
                    str(tmp_path),
                    docs[k::2],
                    str(tmp_path / f"times-{k}"),
                    first_in,
                    others_in,
                    k == 0,
                ),
            )
            for k in range(2)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(120)
            assert worker.exitcode == 0
        records = list(Store(url).iter_records())
    spans = [
        [tuple(map(float, line.split())) for line in (tmp_path / f"times-{k}").read_text().splitlines()]
        for k in range(2)
    ]
    overlapping = [(a, b) for a in spans[0] for b in spans[1] if a[0] < b[1] and b[0] < a[1]]
    if deciders == 1:
        assert overlapping == []
    else:  # two slots: the second worker decided while the first's first batch waited for it
        assert overlapping != []
    assert sorted(r.source for r in records) == sorted(d.source for d in docs)
    slots = {p.name for p in tmp_path.iterdir()} - {"times-0", "times-1"}
    assert {f"{DeciderSlots(url, deciders).name}-{k}" for k in range(deciders)} <= slots  # in the folder set


def test_a_postgresql_store_has_one_slot_a_core_by_default(postgres_server_url: str) -> None:
    with postgres_database(postgres_server_url) as url:
        pipeline = Pipeline(Store(url), Settings(store=url))
        pipeline.close()
    assert pipeline.deciders.count == cores() == len(os.sched_getaffinity(0))


def test_a_sqlite_store_has_no_slots(tmp_path: Path) -> None:
    """Its workers decide under its one writer's lock: a slot would only add a wait."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    pipeline = Pipeline(Store(url), Settings(store=url, deciders=1, deciders_folder=str(tmp_path / "slots")))
    pipeline.ingest([RawDocument(source="a.txt", body=text(words(1, 80)))])
    pipeline.close()
    assert pipeline.deciders.count == 0
    assert not (tmp_path / "slots").exists()


def test_the_default_folder_is_the_user_runtime_folder_else_a_temporary_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert deciders.default_folder() == tmp_path / "docsieve-deciders"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    assert deciders.default_folder() == tmp_path / "tmp" / f"docsieve-deciders-{os.getuid()}"
