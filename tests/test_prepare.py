"""Preparing a batch (docsieve/prepare.py): extraction, validation, fingerprints and language, before any lock;
and preparing ahead, in a process of its own."""

from __future__ import annotations

import gc
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from docsieve.fingerprint import jaccard_and_containment
from docsieve.index import keys_of
from docsieve.models import RawDocument, Rejection, record_id
from docsieve.prepare import Prepared, Preparing, Within, _pack, _unpack, prepare, verified_within
from docsieve.settings import Settings
from tests.conftest import REPO, fixture_text


def test_a_batch_is_prepared_in_order_and_what_cannot_be_a_document_says_why() -> None:
    article = fixture_text("ar_near_a.txt")
    batch = [
        RawDocument("a.txt", article),
        Rejection.of("bad.bin", "binary data", b"\x00\x01"),  # as a reader hands one over
        RawDocument("blank.txt", "  \n\n"),
        RawDocument("marks.txt", "!!! ... ؟؟؟ ---"),
        RawDocument("b.txt", fixture_text("ar_other.txt")),
        RawDocument("again.txt", article),
    ]
    rejections, prepared = prepare(batch, Settings())
    assert [p.document.source for p in prepared] == ["a.txt", "b.txt", "again.txt"]
    reasons = {r.source: r.reason for r in rejections}
    assert reasons["bad.bin"] == "binary data"
    assert reasons["blank.txt"].startswith("no article text")
    assert reasons["marks.txt"] == "no words left after normalization (punctuation or symbols only)"
    first, _, again = prepared
    # Ids are the source and the normalized text: the same text from another source is another record.
    assert first.id == record_id("a.txt", first.fingerprint.content_hash)
    assert first.fingerprint.content_hash == again.fingerprint.content_hash and first.id != again.id
    assert np.array_equal(first.keys, keys_of(first.fingerprint)) and len(first.keys) > 0


def test_the_batchs_own_copies_are_verified_against_the_earlier_documents_only() -> None:
    article, other = fixture_text("ar_near_a.txt"), fixture_text("ar_other.txt")
    cut = article[: len(article) * 2 // 3]  # a truncated copy: nearly all of it is in the article
    batch = [RawDocument("a.txt", article), RawDocument("b.txt", other), RawDocument("cut.txt", cut)]
    _, (a, b, c) = prepare(batch, Settings())
    within = verified_within([a, b, c], Settings())
    jaccard, containment = jaccard_and_containment(c.fingerprint.shingles, a.fingerprint.shingles)
    assert containment > 0.95 and jaccard < 0.8
    assert within.passed == {2: [(a.id, jaccard, containment, len(a.fingerprint.shingles))]}  # by place in the batch
    assert within.near == {}
    # The same pair the other way round (the copy first) is the article's: each looks only at those before it.
    assert verified_within([c, b, a], Settings()).passed == {
        2: [(c.id, jaccard, containment, len(c.fingerprint.shingles))]
    }
    assert verified_within([b, a], Settings()) == Within({}, {})


def test_a_text_utf16_cannot_carry_crosses_the_pipe_as_it_is() -> None:
    """Validation replaces lone surrogates, so a prepared text has none; were one there, it would still arrive."""
    _, (a, b) = prepare(
        [RawDocument("a.txt", fixture_text("ar_near_a.txt")), RawDocument("b.txt", "plain words")], Settings()
    )
    odd = replace(b, document=replace(b.document, text="a \ud800 b"))
    for batch in ([a, b], [a, odd]):
        count, rejections, prepared, within = _unpack(pickle.loads(pickle.dumps(_pack(3, [], batch, Within({}, {})))))
        assert count == 3 and rejections == [] and within == Within({}, {})
        assert [p.document for p in prepared] == [p.document for p in batch]


def _numbered(count: int, raise_at: int | None = None, exit_at: int | None = None) -> Iterator[RawDocument]:
    """Documents that say which process read them (as their author, which no fingerprint reads); at
    ``raise_at`` the reading fails, at ``exit_at`` the reading process dies (only a preparing process: never
    the one that runs the test)."""
    texts = [fixture_text(name) for name in ("ar_near_a.txt", "ar_other.txt", "en_article.txt", "ar_long_article.txt")]
    runner = os.getpid()
    for i in range(count):
        if i == raise_at:
            raise ValueError(f"cannot read item {i}")
        if i == exit_at and os.getpid() != runner:
            os._exit(3)
        # every third names a day: the weekday check's slots cross the pipe too
        day = f"\n\nقالت الوزارة اليوم الخميس إن العدد {i}" if i % 3 == 0 else ""
        sign = (
            " 🌍" if i % 5 == 0 else ""
        )  # beyond the 16-bit plane: the texts cross the pipe in UTF-16 (surrogate pairs)
        yield RawDocument(f"item-{i}.txt", f"{texts[i % len(texts)]}{sign}\n\nitem {i}{day}", author=str(os.getpid()))
    yield RawDocument("marks.txt", "!!! ؟؟؟")  # rejected: the rejections come back too


def _reader_of(prepared: Prepared) -> int:
    return int(prepared.document.author or 0)


def _alive(pid: int | None) -> bool:
    return pid is not None and Path(f"/proc/{pid}").exists()


@pytest.fixture(scope="module")
def clean_process() -> Iterator[Callable[[Callable[[], None]], None]]:
    """Runs a check in a process of its own, started fresh (spawned) and running no other thread: the test
    runner's own process has threads left by other tests, and ``Preparing`` does not fork beside threads."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield lambda check: pool.submit(check).result(timeout=120)


def _prepared_ahead_equals_prepared_here() -> None:
    assert threading.active_count() == 1, threading.enumerate()
    settings = Settings(batch_size=8, rewrites=True)  # the rewrite stage's words cross the pipe too
    with Preparing(_numbered(45), settings, ahead=True) as ahead:
        child = ahead.process_id
        assert _alive(child)
        there = list(ahead)
        assert list(ahead) == []  # and once more: the end stays the end
    with Preparing(_numbered(45), settings) as here:
        assert here.process_id is None
        local = list(here)
        assert list(here) == []
    assert [count for count, _, _, _ in there] == [8, 8, 8, 8, 8, 6] == [count for count, _, _, _ in local]
    assert [r for _, rs, _, _ in there for r in rs] == [r for _, rs, _, _ in local for r in rs] != []
    # The batch's own pairs, verified by the preparing process.
    assert [w for _, _, _, w in there] == [w for _, _, _, w in local]
    assert sum(len(w.passed) for _, _, _, w in there) >= 20
    ahead_docs = [p for _, _, ps, _ in there for p in ps]
    local_docs = [p for _, _, ps, _ in local for p in ps]
    assert len(ahead_docs) == len(local_docs) == 45
    assert sum(bool(p.fingerprint.days) for p in ahead_docs) >= 15  # the fixtures name days of their own too
    assert sum(len(p.fingerprint.figures or ()) >= 3 for p in ahead_docs) >= 15  # and figures enough to differ in
    for a, b in zip(ahead_docs, local_docs, strict=True):
        assert a.id == b.id and replace(a.document, author=None) == replace(b.document, author=None)
        assert a.document.text == b.document.text and ("🌍" in a.document.text) == a.document.source.endswith(
            ("0.txt", "5.txt")
        )
        assert a.document.language in ("ar", "en")
        assert a.fingerprint.content_hash == b.fingerprint.content_hash and a.fingerprint.seed == b.fingerprint.seed
        for name in ("shingles", "minima", "signature", "band_keys", "winnow_keys", "words"):
            x, y = getattr(a.fingerprint, name), getattr(b.fingerprint, name)
            assert x.dtype == y.dtype and np.array_equal(x, y)
        assert a.keys.dtype == b.keys.dtype and np.array_equal(a.keys, b.keys) and len(a.keys) > 0
        assert a.fingerprint.days == b.fingerprint.days and a.fingerprint.days is not None
        assert a.fingerprint.figures == b.fingerprint.figures and a.fingerprint.figures is not None
    # The first batch and one more item are read here (to know there is more than one batch); the rest by the
    # preparing process, and none of it here.
    readers = [_reader_of(p) for p in ahead_docs]
    assert set(readers[:9]) == {os.getpid()} and os.getpid() not in readers[9:] and len(set(readers[9:])) == 1
    assert {_reader_of(p) for p in local_docs} == {os.getpid()}
    assert not _alive(child)


def test_batches_prepared_ahead_in_a_process_of_their_own_equal_those_prepared_here(clean_process) -> None:
    clean_process(_prepared_ahead_equals_prepared_here)


def _frozen_where_read(count: int) -> Iterator[RawDocument]:
    """``_numbered``'s documents, each saying (as its outlet) how many objects its reading process's collector had
    frozen when it was read."""
    for document in _numbered(count):
        yield replace(document, outlet=str(gc.get_freeze_count()))


def _the_preparing_process_freezes_what_it_inherited() -> None:
    assert gc.get_freeze_count() == 0
    with Preparing(_frozen_where_read(45), Settings(batch_size=8), ahead=True) as preparing:
        documents = [p.document for _, _, prepared, _ in preparing for p in prepared]
    here = [int(d.outlet or -1) for d in documents if d.author == str(os.getpid())]
    there = [int(d.outlet or -1) for d in documents if d.author != str(os.getpid())]
    assert len(here) == 9 and set(here) == {0} and len(there) == 36
    assert min(there) > 1000  # the modules it was forked with, at least
    assert gc.get_freeze_count() == 0  # this process's collector as it was


def test_the_preparing_process_keeps_what_it_inherited_from_its_collector(clean_process) -> None:
    """Its collections would write to every inherited object's header (copying the parent's pages) and walk them
    all again: it freezes them (``gc.freeze``) first thing, and the process that forked it keeps its collector."""
    clean_process(_the_preparing_process_freezes_what_it_inherited)


def _one_batch_makes_no_process() -> None:
    with Preparing(_numbered(7), Settings(batch_size=8), ahead=True) as preparing:
        assert preparing.process_id is None
        ((count, rejections, prepared, _),) = list(preparing)
    assert count == 8 and len(prepared) == 7 and len(rejections) == 1
    assert {_reader_of(p) for p in prepared} == {os.getpid()}


def test_one_batch_is_prepared_here_without_a_process(clean_process) -> None:
    clean_process(_one_batch_makes_no_process)


def _an_error_ahead_comes_after_the_batches_before_it() -> None:
    with Preparing(_numbered(45, raise_at=30), Settings(batch_size=8), ahead=True) as preparing:
        child = preparing.process_id
        assert _alive(child)
        taken = [next(preparing)[0] for _ in range(3)]
        with pytest.raises(ValueError, match="cannot read item 30"):
            next(preparing)
        assert list(preparing) == []
    assert taken == [8, 8, 8]
    assert not _alive(child)


def test_an_error_while_reading_ahead_comes_after_the_batches_before_it(clean_process) -> None:
    clean_process(_an_error_ahead_comes_after_the_batches_before_it)


def _a_process_that_dies_is_an_error() -> None:
    with Preparing(_numbered(45, exit_at=30), Settings(batch_size=8), ahead=True) as preparing:
        assert _alive(preparing.process_id)
        assert [next(preparing)[0] for _ in range(3)] == [8, 8, 8]
        with pytest.raises(RuntimeError, match=r"preparing process ended before the input did \(exit code 3\)"):
            next(preparing)


def test_a_preparing_process_that_dies_is_an_error_that_says_so_not_a_hang(clean_process) -> None:
    clean_process(_a_process_that_dies_is_an_error)


def _closing_early_stops_it() -> None:
    # A handler of SIGTERM in the host process (a server's, say) is not the preparing process's: close still ends it.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        preparing = Preparing(_numbered(4000), Settings(batch_size=8), ahead=True)
        child = preparing.process_id
        assert _alive(child)
        assert next(preparing)[0] == 8
        time.sleep(0.2)  # the child blocked in sending the next batch
        preparing.close()
        assert not _alive(child) and list(preparing) == []
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def test_closing_early_stops_the_preparing_process(clean_process) -> None:
    clean_process(_closing_early_stops_it)


def _beside_a_thread_no_fork() -> None:
    done = threading.Event()
    other = threading.Thread(target=done.wait)
    other.start()
    try:
        with Preparing(_numbered(45), Settings(batch_size=8), ahead=True) as preparing:
            assert preparing.process_id is None
            prepared = [p for _, _, ps, _ in preparing for p in ps]
    finally:
        done.set()
        other.join()
    assert len(prepared) == 45 and {_reader_of(p) for p in prepared} == {os.getpid()}
    with Preparing(_numbered(45), Settings(batch_size=8), ahead=True) as preparing:  # the thread gone: a fork
        assert _alive(preparing.process_id)
        assert len([p for _, _, ps, _ in preparing for p in ps]) == 45


def test_a_process_running_other_threads_prepares_here_rather_than_fork(clean_process) -> None:
    clean_process(_beside_a_thread_no_fork)


@pytest.mark.slow
def test_the_preparing_process_ends_when_its_parent_is_killed(tmp_path: Path) -> None:
    """A parent killed outright (SIGKILL: no close) leaves no preparing process reading on, nor holding its
    output open."""
    script = tmp_path / "parent.py"
    script.write_text(
        "import sys, time\n"
        "from docsieve.models import RawDocument\n"
        "from docsieve.prepare import Preparing\n"
        "from docsieve.settings import Settings\n"
        "def endless():\n"
        "    i = 0\n"
        "    while True:\n"
        "        i += 1\n"
        "        yield RawDocument(f'{i}.txt', f'news item number {i} ' * 20)\n"
        "preparing = Preparing(endless(), Settings(batch_size=8), ahead=True)\n"
        "print(preparing.process_id, flush=True)\n"
        "time.sleep(60)\n",
        encoding="utf-8",
    )
    parent = subprocess.Popen([sys.executable, str(script)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert _alive(child)
    parent.kill()
    parent.wait(timeout=30)
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)
    assert parent.stdout.read() == ""  # the pipe closed: no process left writing to it
