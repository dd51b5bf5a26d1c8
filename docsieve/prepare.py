"""Preparing a batch: extraction, fingerprints and the batch's own pairs verified, which need neither the store nor
its lock (in the deployment, outside it, in each worker; in one ``ingest``, in a process of its own, ahead of the
batch being decided: ``Preparing``).

A thread instead of a process gained less than 5% (the work almost all holds the GIL; docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import multiprocessing
import os
import pickle
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields, replace
from itertools import chain, islice
from multiprocessing.connection import Connection
from typing import TypeVar

import numpy as np

from docsieve import language
from docsieve.decide import passes, verified_pairs
from docsieve.extract import HtmlLimits, extract
from docsieve.fingerprint import fingerprint_batch
from docsieve.index import keys_of, within_batch
from docsieve.models import Document, Fingerprint, Rejection, batched, record_id
from docsieve.readers import Item
from docsieve.settings import Settings
from docsieve.validate import validate

FINGERPRINT_CHUNK = 64  # the vectorized fingerprint is fastest when a chunk's arrays stay in cache


@dataclass(frozen=True, slots=True)
class Prepared:
    """A document ready to be decided."""

    id: str
    document: Document
    fingerprint: Fingerprint
    keys: np.ndarray


# For each document of a batch by its place in it, the candidates verification passed: (record id, Jaccard,
# containment, the candidate's shingle count).
Found = dict[int, list[tuple[str, float, float, int]]]


@dataclass(frozen=True, slots=True)
class Within:
    """A batch's documents that are copies of earlier documents of the same batch, by their shingle sets: how a copy
    finds an original that arrived a few documents before it, not yet stored. ``passed``: at the thresholds;
    ``near``: at the rewrite stage's floor only. Which of them are exact copies is known only under the lock,
    where their pairs are dropped (``Pipeline._decide``)."""

    passed: Found
    near: Found


def verified_within(prepared: list[Prepared], settings: Settings) -> Within:
    """Each document's earlier documents in the batch that share index keys with it (``index.within_batch``, at
    most ``max_candidates``), verified."""
    pairs = within_batch([p.keys for p in prepared])
    docs = [i for i, earlier in enumerate(pairs) for _ in earlier[: settings.max_candidates]]
    others = [j for earlier in pairs for j in earlier[: settings.max_candidates]]
    strong = verified_pairs(
        [p.fingerprint.shingles for p in prepared],
        np.array([p.fingerprint.minima for p in prepared]),
        docs,
        [prepared[j].fingerprint.shingles for j in others],
        [prepared[j].fingerprint.minima for j in others],
        settings,
        settings.rewrite_floor if settings.rewrites else None,
    )
    within = Within({}, {})
    for pair, (jaccard, containment) in strong.items():
        doc, other = prepared[docs[pair]], prepared[others[pair]]
        size = len(other.fingerprint.shingles)
        smaller = min(size, len(doc.fingerprint.shingles))
        kind = within.passed if passes(jaccard, containment, smaller, settings) else within.near
        kind.setdefault(docs[pair], []).append((other.id, jaccard, containment, size))
    return within


def prepare(batch: list[Item], settings: Settings) -> tuple[list[Rejection], list[Prepared]]:
    """Extraction, fingerprints and language of a batch; what cannot become a document is rejected."""
    each = prepare_each(batch, settings)
    return [r for r in each if isinstance(r, Rejection)], [p for p in each if isinstance(p, Prepared)]


def prepare_each(batch: list[Item], settings: Settings) -> list[Rejection | Prepared]:
    """``prepare``'s work, one result for each input, in the inputs' order."""
    html_limits = HtmlLimits(settings.max_html_chars, settings.extract_timeout)
    results = [validate(item if isinstance(item, Rejection) else extract(item, html_limits)) for item in batch]
    documents = [d for d in results if isinstance(d, Document)]
    # Documents that do not say their language get it here, the whole batch in one call.
    unknown = [i for i, d in enumerate(documents) if not d.language]
    for i, detected in zip(unknown, language.detect_many([documents[i].text for i in unknown]), strict=True):
        documents[i] = replace(documents[i], language=detected)
    fingerprinted = iter(zip(documents, fingerprint_documents(documents, settings), strict=True))
    each: list[Rejection | Prepared] = []
    for result in results:
        if isinstance(result, Rejection):
            each.append(result)
            continue
        document, fp = next(fingerprinted)
        if not len(fp.shingles):
            reason = "no words left after normalization (punctuation or symbols only)"
            each.append(Rejection.of(document.source, reason, document.text))
        else:
            each.append(Prepared(record_id(document.source, fp.content_hash), document, fp, keys_of(fp)))
    return each


def fingerprint_documents(documents: list[Document], settings: Settings) -> list[Fingerprint]:
    texts = [doc.text for doc in documents]
    return [
        fp
        for start in range(0, len(texts), FINGERPRINT_CHUNK)
        for fp in fingerprint_batch(texts[start : start + FINGERPRINT_CHUNK], settings)
    ]


Batch = tuple[int, list[Rejection], list[Prepared], Within]  # how many items, what they became, their own pairs


def _batch(items: list[Item], settings: Settings) -> Batch:
    rejections, prepared = prepare(items, settings)
    return len(items), rejections, prepared, verified_within(prepared, settings)


class Preparing:
    """Items read and prepared a batch at a time, in order: an iterator of (items in the batch, rejections,
    prepared, their own pairs verified), to be closed (or used in a ``with``).

    ``ahead``: where there is more than one batch of items, a process of its own reads and prepares the
    batches while the caller decides and stores the one before (on two cores a 5,000-article ingest takes a
    fifth less time: docs/benchmarks.md; ``ahead_by_default`` says where it pays). It is forked, so it starts
    at once with what this process has imported, and it reads the items itself: they must be docsieve's
    readers' (files, standard input) or held in memory, never a caller's iterator over a connection this
    process goes on using. It is at most one batch ahead (the one waiting in the pipe), so memory stays
    bounded however long the input, and it ends with this process. One batch, a daemon process (such as a
    Celery pool's, which may not have children) or one that runs other threads is prepared here.
    """

    def __init__(self, items: Iterable[Item], settings: Settings, ahead: bool = False) -> None:
        self.settings = settings  # what the batches are prepared with
        items = iter(items)
        first = list(islice(items, settings.batch_size + 1))
        self._batches: Iterator[list[Item]] = batched(chain(first, items), settings.batch_size)
        self._done = False
        self.process_id: int | None = None  # the preparing process, while there is one
        if ahead and len(first) > settings.batch_size and _may_fork():
            batches, self._batches = self._batches, iter(())  # the child's now: never read here again
            self._pipe, sending = multiprocessing.Pipe(duplex=False)
            self.process_id = _fork(lambda: _prepare_ahead(batches, settings, sending, self._pipe))
            sending.close()  # the child's end: this process only reads

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        if self._done:
            raise StopIteration
        if self.process_id is None:
            batch = next(self._batches, None)
            if batch is None:
                self._done = True
                raise StopIteration
            return _batch(batch, self.settings)
        try:
            message = self._pipe.recv_bytes()
        except EOFError:
            raise RuntimeError(
                f"the preparing process ended before the input did (exit code {self.close()}); the batches before "
                "were stored"
            ) from None
        kind, value = pickle.loads(message)
        if kind == "batch":
            return _unpack(value)
        self.close()
        if kind == "error":
            raise value
        raise StopIteration

    def close(self) -> int | None:
        """Stop preparing: what was read and not yet taken is dropped (nothing of it was stored). The preparing
        process's exit code, if there was one to collect (negative: the signal that ended it)."""
        self._done = True
        if self.process_id is None:
            return None
        self._pipe.close()
        with contextlib.suppress(ProcessLookupError):  # ended already: its exit status waits to be collected
            os.kill(self.process_id, signal.SIGTERM)
        _, status = os.waitpid(self.process_id, 0)
        self.process_id = None
        return os.waitstatus_to_exitcode(status)

    def __enter__(self) -> Preparing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def ahead_by_default(settings: Settings) -> bool:
    """Whether ``ingest`` prepares ahead: ``DOCSIEVE_PREPARE_AHEAD`` on, or auto on Linux with two CPUs or more
    (on one, the two processes would only take turns; elsewhere a fork is less safe: macOS's system libraries
    do not all survive one, which is why Python spawns there)."""
    if settings.prepare_ahead == "auto":
        return hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) > 1
    return settings.prepare_ahead == "on"


def _may_fork() -> bool:
    """A fork that is safe: not from a daemon process, and not while other threads run (one of them could
    hold a lock the child would then wait on forever; Python 3.12 warns of it)."""
    return hasattr(os, "fork") and not multiprocessing.current_process().daemon and threading.active_count() == 1


def _fork(run: Callable[[], None]) -> int:
    """``run`` in a forked child, which leaves with ``os._exit`` (never through this process's exit handlers
    or the caller's code); returns its process id.

    A plain fork, not ``multiprocessing.Process``: that one's start replaces the child's standard input with
    /dev/null, which the items may be reading. Signals are held across the fork, so that the child never runs
    this process's handlers: Ctrl-C is for the deciding process (which then stops this one), SIGTERM ends it.

    The child first freezes what it inherited out of its garbage collector's reach: its collections would
    otherwise write to every inherited object's header, copying the parent's pages, and each full collection
    would walk them all again (docs/benchmarks.md).
    """
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                gc.freeze()
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_SETMASK, held)
                _end_with_parent()
                run()
                code = 0
            finally:
                os._exit(code)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
    return pid


def _end_with_parent() -> None:
    """Linux: SIGTERM when the parent dies (killed, say), so that no orphan is left reading the input."""
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getppid()
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the call
        os._exit(1)


def _prepare_ahead(batches: Iterator[list[Item]], settings: Settings, pipe: Connection, theirs: Connection) -> None:
    """The preparing process: every batch, prepared and sent in order, then the end (or what went wrong)."""
    theirs.close()  # the parent's end: held here, a write would never fail once the parent is gone
    try:
        for batch in batches:
            pipe.send_bytes(pickle.dumps(("batch", _pack(*_batch(batch, settings))), protocol=5))
    except BrokenPipeError:  # the deciding process stopped
        return
    except BaseException as error:
        try:
            message = pickle.dumps(("error", error), protocol=5)
        except Exception:  # an error that cannot travel goes as its message
            message = pickle.dumps(("error", RuntimeError(f"preparing failed: {error!r}")), protocol=5)
        pipe.send_bytes(message)
        return
    pipe.send_bytes(pickle.dumps(("end", None), protocol=5))


_ARRAYS = ("shingles", "signature", "band_keys", "winnow_keys", "minima")
_DOCUMENT_FIELDS = tuple(f.name for f in fields(Document))
_TEXT_AT = _DOCUMENT_FIELDS.index("text")


def _pack(count: int, rejections: list[Rejection], prepared: list[Prepared], within: Within) -> tuple:
    """A prepared batch for the pipe: each fingerprint array of the batch as one array (pickling thousands
    of small arrays took the deciding process 14 ms a batch, one array each 0.2 ms), and the texts as one string in
    UTF-16 (``_texts``)."""
    arrays = {name: _joined([getattr(p.fingerprint, name) for p in prepared]) for name in _ARRAYS} | {
        "keys": _joined([p.keys for p in prepared])
    }
    if prepared and prepared[0].fingerprint.words is not None:  # the rewrite stage's: all a batch's or none
        arrays["words"] = _joined([p.fingerprint.words for p in prepared if p.fingerprint.words is not None])
    texts = [p.document.text for p in prepared]
    # A document as the tuple of its fields: a frozen dataclass unpickles through its ``__setstate__``, twice the time.
    rest = [
        (
            p.id,
            tuple("" if i == _TEXT_AT else getattr(p.document, name) for i, name in enumerate(_DOCUMENT_FIELDS)),
            p.fingerprint.content_hash,
            p.fingerprint.seed,
            p.fingerprint.days,
            p.fingerprint.figures,
        )
        for p in prepared
    ]
    return count, rejections, rest, arrays, _texts(texts), np.cumsum([len(t) for t in texts]).tolist(), within


def _texts(texts: list[str]) -> bytes | list[str]:
    """A batch's texts for the pipe: one string in UTF-16, which the deciding process decodes in a tenth of the time
    pickle's UTF-8 takes for Arabic (0.7 ms against 7.2 ms a batch of 512 articles, 4.3 MB; English gives up 0.4 ms).
    A text that UTF-16 cannot carry (a lone surrogate, which validation replaces) sends them as they are."""
    try:
        return "".join(texts).encode("utf-16-le")
    except UnicodeEncodeError:
        return texts


def _unpack(packed: tuple) -> Batch:
    count, rejections, rest, arrays, texts, text_ends, within = packed
    parts = {name: _parts(joined, ends) for name, (joined, ends) in arrays.items()}
    if isinstance(texts, bytes):
        texts = _parts(texts.decode("utf-16-le"), text_ends)
    prepared = []
    for i, ((id, document, content_hash, seed, days, figures), text) in enumerate(zip(rest, texts, strict=True)):
        values = list(document)
        values[_TEXT_AT] = text
        fingerprint = Fingerprint(
            content_hash,
            shingles=parts["shingles"][i],
            signature=parts["signature"][i],
            band_keys=parts["band_keys"][i],
            winnow_keys=parts["winnow_keys"][i],
            minima=parts["minima"][i],
            seed=seed,
            words=parts["words"][i] if "words" in parts else None,
            days=days,
            figures=figures,
        )
        prepared.append(Prepared(id, Document(*values), fingerprint, parts["keys"][i]))
    return count, rejections, prepared, within


def _joined(arrays: list[np.ndarray]) -> tuple[np.ndarray, list[int]]:
    """One array and where each part ends."""
    ends = np.cumsum([len(a) for a in arrays]).tolist()
    return (np.concatenate(arrays) if arrays else np.empty(0)), ends


Joined = TypeVar("Joined", np.ndarray, str)


def _parts(joined: Joined, ends: list[int]) -> list[Joined]:
    """The parts again (of an array, as views: slices take a fifth of ``np.split``'s time)."""
    return [joined[start:end] for start, end in zip([0, *ends], ends, strict=False)]
