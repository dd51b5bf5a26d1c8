"""The pipeline: raw documents -> extract -> fingerprint -> language -> decide -> store, in batches.

Extraction, fingerprints (``worker/prepare.py``) and language are computed outside any lock. Deciding
and storing happen in one transaction that holds the store's write lock: the index first catches up
with what other processes stored, then each document of the batch is decided in arrival order (so the
first copy of a story is its canonical record within a batch as well), then the batch is written. A
batch costs a handful of store round trips whatever its size.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from worker import language
from worker.decide import best_matches
from worker.fingerprint import jaccard_and_containment
from worker.index import CandidateIndex, MemoryIndex, RedisIndex, within_batch
from worker.models import Decision, Method, Record, Rejection, Sketch, Status, batched
from worker.prepare import Prepared, PreparedBatch, RunAhead, prepare, prepare_ahead
from worker.readers import Item
from worker.settings import Settings
from worker.store import NewRecord, Store, Transaction

SKETCH_CACHE = 200_000  # records' shingles kept in memory, about 1.2 KB each for a news article


@dataclass(slots=True)
class Summary:
    read: int = 0
    new: int = 0
    exact: int = 0
    near: int = 0
    rejected: int = 0
    unchanged: int = 0  # already stored: the same source with the same text
    elapsed: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def docs_per_s(self) -> float:
        return self.read / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def ingested(self) -> int:
        return self.new + self.exact + self.near + self.unchanged

    def count(self, record: Record) -> None:
        if record.status is Status.CANONICAL:
            self.new += 1
        elif record.status is Status.REJECTED:
            self.rejected += 1
            self.reasons[record.reason or ""] = self.reasons.get(record.reason or "", 0) + 1
        elif record.method is Method.EXACT:
            self.exact += 1
        else:
            self.near += 1


@dataclass(frozen=True, slots=True)
class Match:
    record: Record
    jaccard: float
    containment: float


class Pipeline:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        store.check_fingerprints(settings.fingerprint_parameters)
        self.index = make_index(settings)
        # Shingles of the records this process stored or read, so most verifications need no store read.
        # A record's root never changes, so an entry never goes stale; the cap only bounds memory.
        self._sketches: dict[str, Sketch] = {}

    def ingest(self, items: Iterable[Item], progress: Callable[[int], None] | None = None) -> Summary:
        """Store everything the items hold (see ``ingest_prepared``)."""
        return self.ingest_prepared(prepare_ahead(items, self.settings), progress)

    def ingest_prepared(
        self, batches: RunAhead[PreparedBatch], progress: Callable[[int], None] | None = None
    ) -> Summary:
        """Decide and store batches prepared on another thread: the next batch is read and prepared there
        while this one decides and stores the last, and the numpy, file and SQLite work that releases
        the GIL overlaps (measured on 5,000 articles: 9% less wall time in the machine's quieter
        states, none in others; most of the work holds the GIL). Order is kept."""
        summary = Summary()
        try:
            for batch, (rejections, ready) in batches:
                stored = self.store_prepared(rejections, ready)
                summary.read += len(batch)
                summary.unchanged += len(batch) - len(stored)
                for record in stored:
                    summary.count(record)
                if progress:
                    progress(len(batch))
        finally:
            batches.close()
        summary.elapsed = time.perf_counter() - batches.started
        return summary

    def process(self, batch: list[Item]) -> list[Record]:
        """Decide and store one batch; returns the records it created (none for inputs already stored)."""
        return self.store_prepared(*self.prepare(batch))

    def store_prepared(self, rejections: list[Rejection], prepared: list[Prepared]) -> list[Record]:
        """Decide and store a prepared batch; returns the records it created."""
        limit = self.settings.max_candidates
        # The language here rather than while preparing: the preparing thread is the busier of the two.
        unknown = [p for p in prepared if not p.document.language]
        languages = dict(
            zip([p.id for p in unknown], language.detect_many([p.document.text for p in unknown]), strict=True)
        )
        # The costly lookup happens before taking the lock; under it, only the records stored since
        # that lookup (by other workers, meanwhile) are looked at again.
        early, complete_to = self.index.lookup([p.keys for p in prepared], limit, stage_ids=[p.id for p in prepared])
        with self.store.writing() as txn:
            self.index.catch_up(txn)
            late = MemoryIndex()
            late.catch_up(txn, after=complete_to)
            found = {
                p.id: a + [c for c in b if c not in a]
                for p, a, b in zip(prepared, early, late.candidates([p.keys for p in prepared], limit), strict=True)
            }
            known = txn.existing_ids([p.id for p in prepared] + [r.id for r in rejections])
            new = [_rejected(r) for r in _first_of_each(rejections, known)]
            new += self._decide(txn, _first_of_each(prepared, known), found, languages)
            txn.insert(new)
            last_seq = txn.last_seq()
        # Only after the commit: an index never claims records that were rolled back. (A shared index
        # had the keys staged before the lock; only its sequence number moves now.)
        indexed = [item for item in new if item.keys is not None]
        self.index.add([i.record.id for i in indexed], [i.keys for i in indexed], last_seq)
        if len(self._sketches) > SKETCH_CACHE:
            self._sketches.clear()
        for item in indexed:
            r = item.record
            self._sketches[r.id] = Sketch(r.id, r.duplicate_of or r.id, item.shingles, item.minima)
        return [n.record for n in new]

    def prepare(self, batch: list[Item]) -> tuple[list[Rejection], list[Prepared]]:
        """Extraction and fingerprints (``prepare.prepare``); the language comes in ``store_prepared``."""
        return prepare(batch, self.settings)

    def close(self) -> None:
        self.index.close()
        self.store.close()

    def _decide(
        self, txn: Transaction, batch: list[Prepared], found: dict[str, list[str]], languages: dict[str, str | None]
    ) -> list[NewRecord]:
        limit = self.settings.max_candidates
        roots = txn.roots_by_hash(p.fingerprint.content_hash for p in batch)
        wanted = {c for p in batch for c in found[p.id]}
        sketches = {c: self._sketches[c] for c in wanted if c in self._sketches}
        loaded = txn.sketches(wanted - sketches.keys())
        sketches.update(loaded)
        self._sketches.update(loaded)  # other workers' records: read from the store once
        # An exact copy of a stored text, or of an earlier text of this batch (which, not being one
        # itself, will have set the root of its hash by then), needs no verification.
        exact, hashes = [], set(roots)
        for p in batch:
            exact.append(p.fingerprint.content_hash in hashes)
            hashes.add(p.fingerprint.content_hash)
        # Every candidate pair of the batch, verified at once: stored candidates (their root known),
        # then earlier documents of the batch that are not exact copies (their root decided below first).
        doc_of_pair: list[int] = []
        candidate_shingles: list[np.ndarray] = []
        candidate_minima: list[np.ndarray] = []
        targets: list[str | int] = []  # a stored candidate's root id, or a batch position
        for i, (p, local) in enumerate(zip(batch, within_batch([p.keys for p in batch]), strict=True)):
            if exact[i]:
                continue
            for c in found[p.id]:
                if (sketch := sketches.get(c)) is not None:
                    doc_of_pair.append(i)
                    candidate_shingles.append(sketch.shingles)
                    candidate_minima.append(sketch.minima)
                    targets.append(sketch.root_id)
            for j in local[:limit]:
                if not exact[j]:
                    doc_of_pair.append(i)
                    candidate_shingles.append(batch[j].fingerprint.shingles)
                    candidate_minima.append(batch[j].fingerprint.minima)
                    targets.append(j)
        matches = best_matches(
            [p.fingerprint.shingles for p in batch],
            np.array([p.fingerprint.minima for p in batch]),
            doc_of_pair,
            candidate_shingles,
            candidate_minima,
            self.settings,
        )
        batch_roots: list[str] = []
        new = []
        for i, p in enumerate(batch):
            fp = p.fingerprint
            if exact[i]:
                decision = Decision(Status.DUPLICATE, roots[fp.content_hash], 1.0, Method.EXACT)
            elif (match := matches.get(i)) is not None:
                target = targets[match.pair]
                root = batch_roots[target] if isinstance(target, int) else target
                decision = Decision(Status.DUPLICATE, root, match.similarity, match.method)
            else:
                decision = Decision(Status.CANONICAL)
            root = decision.duplicate_of or p.id
            batch_roots.append(root)
            if not exact[i]:
                roots[fp.content_hash] = root
            indexed = decision.method is not Method.EXACT  # an exact copy adds nothing to find
            doc = p.document
            new.append(
                NewRecord(
                    Record(
                        id=p.id,
                        source=doc.source,
                        status=decision.status,
                        content_hash=fp.content_hash,
                        duplicate_of=decision.duplicate_of,
                        similarity=decision.similarity,
                        method=decision.method,
                        language=doc.language or languages[p.id],
                        title=doc.title,
                        text=doc.text,
                        images=doc.images,
                        url=doc.url,
                        published=doc.published,
                        author=doc.author,
                        outlet=doc.outlet,
                    ),
                    shingles=fp.shingles if indexed else None,
                    keys=p.keys if indexed else None,
                    minima=fp.minima if indexed else None,
                )
            )
        return new

    def similar(self, items: Iterable[Item], limit: int) -> Iterator[tuple[str, list[Match] | str]]:
        """For each input, the stored records closest to it (nothing is stored), or why it was rejected."""
        for batch in batched(items, self.settings.batch_size):
            rejections, prepared = self.prepare(batch)
            for rejection in rejections:
                yield rejection.source, rejection.reason
            with self.store.reading() as txn:
                self.index.catch_up(txn)
                found, _ = self.index.lookup([p.keys for p in prepared], max(limit, self.settings.max_candidates))
                for p, ids in zip(prepared, found, strict=True):
                    ids += txn.roots_by_hash([p.fingerprint.content_hash]).values()
                    scored = []
                    for sketch in txn.sketches(ids).values():
                        jaccard, containment = jaccard_and_containment(p.fingerprint.shingles, sketch.shingles)
                        if jaccard or containment:
                            scored.append((max(jaccard, containment), jaccard, containment, sketch.record_id))
                    scored.sort(reverse=True)
                    matches = [
                        Match(record, j, c)
                        for _, j, c, rid in scored[:limit]
                        if (record := self.store.get(rid)) is not None
                    ]
                    yield p.document.source, matches


T = TypeVar("T", Rejection, Prepared)


def make_index(settings: Settings) -> CandidateIndex:
    """In memory for the embedded default; shared in Redis when DOCSIEVE_INDEX_URL names one."""
    if settings.index_url:
        return RedisIndex(settings.index_url, settings.queue_prefix)
    return MemoryIndex()


def _first_of_each(items: list[T], known: set[str]) -> list[T]:
    """Items whose record id is neither stored already nor earlier in the batch."""
    seen = set(known)
    first = []
    for item in items:
        if item.id not in seen:
            seen.add(item.id)
            first.append(item)
    return first


def _rejected(rejection: Rejection) -> NewRecord:
    return NewRecord(
        Record(
            id=rejection.id,
            source=rejection.source,
            status=Status.REJECTED,
            content_hash=rejection.raw_hash,
            reason=rejection.reason,
        )
    )
