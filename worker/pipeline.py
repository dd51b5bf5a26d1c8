"""The pipeline: raw documents -> extract -> language -> fingerprint -> decide -> store, in batches.

One batch costs a handful of store round trips (ids already stored, exact hashes, index keys,
candidate sketches, one write transaction) whatever its size. Within a batch documents are decided
in arrival order, so the first copy of a story is its canonical record there as well.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice

from worker import language
from worker.decide import decide
from worker.extract import extract
from worker.fingerprint import fingerprint_batch, jaccard_and_containment
from worker.index import BatchIndex, all_keys, keys_of
from worker.models import Decision, Document, Fingerprint, Method, Record, Rejection, Status, record_id
from worker.readers import Item
from worker.settings import Settings
from worker.store import NewRecord, Sketch, Store

FINGERPRINT_CHUNK = 64  # the vectorized fingerprint is fastest when a chunk's arrays stay in cache


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

    def ingest(self, items: Iterable[Item], progress: Callable[[int], None] | None = None) -> Summary:
        summary = Summary()
        started = time.perf_counter()
        for batch in _batches(items, self.settings.batch_size):
            stored = self.process(batch)
            summary.read += len(batch)
            summary.unchanged += len(batch) - len(stored)
            for record in stored:
                summary.count(record)
            if progress:
                progress(len(batch))
        summary.elapsed = time.perf_counter() - started
        return summary

    def process(self, batch: list[Item]) -> list[Record]:
        """Decide and store one batch; returns the records it created (none for inputs already stored)."""
        rejections: list[Rejection] = []
        documents: list[Document] = []
        for item in batch:
            result = extract(item) if not isinstance(item, Rejection) else item
            (rejections if isinstance(result, Rejection) else documents).append(result)
        fingerprints = self.fingerprint(documents)
        wordless = [i for i, fp in enumerate(fingerprints) if not len(fp.shingles)]
        for i in reversed(wordless):
            doc = documents.pop(i)
            fingerprints.pop(i)
            rejections.append(
                Rejection(
                    doc.source,
                    "no words left after normalization (punctuation or symbols only)",
                    hashlib.sha256(doc.text.encode()).hexdigest(),
                )
            )

        ids = [
            record_id(doc.source, fp.content_hash) for doc, fp in zip(documents, fingerprints, strict=True)
        ]
        known = self.store.existing_ids(ids + [r.id for r in rejections])
        new: list[NewRecord] = []
        seen: set[str] = set(known)
        for rejection in rejections:
            if rejection.id not in seen:
                seen.add(rejection.id)
                new.append(
                    NewRecord(
                        Record(
                            id=rejection.id,
                            source=rejection.source,
                            status=Status.REJECTED,
                            content_hash=rejection.raw_hash,
                            reason=rejection.reason,
                        )
                    )
                )
        fresh = []
        for rid, doc, fp in zip(ids, documents, fingerprints, strict=True):
            if rid not in seen:
                seen.add(rid)
                fresh.append((rid, doc, fp))
        new.extend(self._decide(fresh))
        self.store.write(new)
        return [n.record for n in new]

    def similar(self, items: Iterable[Item], limit: int) -> Iterator[tuple[str, list[Match] | str]]:
        """For each input, the stored records closest to it (nothing is stored), or why it was rejected."""
        for batch in _batches(items, self.settings.batch_size):
            documents = []
            for item in batch:
                result = extract(item) if not isinstance(item, Rejection) else item
                if isinstance(result, Rejection):
                    yield result.source, result.reason
                else:
                    documents.append(result)
            fingerprints = self.fingerprint(documents)
            index = BatchIndex(self.store.lookup(keys_of(fingerprints)))
            for doc, fp in zip(documents, fingerprints, strict=True):
                ids = index.candidates(fp, max(limit, self.settings.max_candidates))
                exact = self.store.roots_by_hash([fp.content_hash])
                scored = []
                for sketch in self.store.sketches(ids + list(exact.values())).values():
                    jaccard, containment = jaccard_and_containment(fp.shingles, sketch.shingles)
                    if jaccard or containment:
                        scored.append((max(jaccard, containment), jaccard, containment, sketch.record_id))
                scored.sort(reverse=True)
                matches = []
                for _, jaccard, containment, record_id_ in scored[:limit]:
                    record = self.store.get(record_id_)
                    if record:
                        matches.append(Match(record, jaccard, containment))
                yield doc.source, matches

    def fingerprint(self, documents: list[Document]) -> list[Fingerprint]:
        texts = [doc.text for doc in documents]
        return [
            fp
            for start in range(0, len(texts), FINGERPRINT_CHUNK)
            for fp in fingerprint_batch(texts[start : start + FINGERPRINT_CHUNK], self.settings)
        ]

    def _decide(self, fresh: list[tuple[str, Document, Fingerprint]]) -> Iterator[NewRecord]:
        roots = self.store.roots_by_hash(fp.content_hash for _, _, fp in fresh)
        inexact = [fp for _, _, fp in fresh if fp.content_hash not in roots]
        index = BatchIndex(self.store.lookup(keys_of(inexact)))
        limit = self.settings.max_candidates
        sketches = self.store.sketches({rid for fp in inexact for rid in index.candidates(fp, limit)})
        for rid, doc, fp in fresh:
            if fp.content_hash in roots:
                decision = Decision(Status.DUPLICATE, roots[fp.content_hash], 1.0, Method.EXACT)
            else:
                candidates = [sketches[c] for c in index.candidates(fp, limit) if c in sketches]
                decision = decide(fp, candidates, self.settings)
                root = decision.duplicate_of or rid
                roots[fp.content_hash] = root
                sketches[rid] = Sketch(rid, root, fp.shingles)
                index.add(rid, fp)
            yield NewRecord(
                Record(
                    id=rid,
                    source=doc.source,
                    status=decision.status,
                    content_hash=fp.content_hash,
                    duplicate_of=decision.duplicate_of,
                    similarity=decision.similarity,
                    method=decision.method,
                    language=doc.language or language.detect(doc.text),
                    title=doc.title,
                    text=doc.text,
                    images=doc.images,
                    url=doc.url,
                    published=doc.published,
                ),
                shingles=fp.shingles if decision.method is not Method.EXACT else None,
                signature=fp.signature,
                keys=all_keys(fp) if decision.method is not Method.EXACT else None,
            )


def _batches(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch
