"""docsieve: document ingestion and near-duplicate detection. One canonical record per story, every copy
linked to it with how alike they are.

The library, with no broker or server (the embedded default: a SQLite file, or any SQLAlchemy URL)::

    import docsieve

    with docsieve.open("news.db") as sieve:
        summary = sieve.ingest(["articles/", "batch.jsonl"])  # files, folders, JSON batches
        sieve.ingest_documents([docsieve.RawDocument("wire-1", "نص الخبر ...", title="...")])
        for match in sieve.similar("draft.txt"):
            print(match.record.id, match.jaccard, match.containment)
        record = sieve.record(some_id)
        story = sieve.story(record.story_id)

Settings come from ``DOCSIEVE_`` environment variables (``docsieve.Settings``), and any of them can be
given to ``open`` by name (``docsieve.open("news.db", jaccard_threshold=0.6)``). The stages are modules of
their own (``docsieve.readers``, ``extract``, ``normalize``, ``fingerprint``, ``index``, ``decide``,
``stories``, ``store``, ``pipeline``); ``docs/architecture.md`` shows how they fit. The deployment's
Celery side (``worker``) and scheduler (``scheduler``) build on this package; it never imports them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from docsieve.models import Method, RawDocument, Record, Status, Story
from docsieve.settings import Settings, SettingsError, StoreError

if TYPE_CHECKING:
    from docsieve.pipeline import Match, Pipeline, Summary

__all__ = [
    "Method",
    "RawDocument",
    "Record",
    "Settings",
    "SettingsError",
    "Sieve",
    "Status",
    "StoreError",
    "Story",
    "open",
]


def open(store: str | None = None, **settings: Any) -> Sieve:  # the package's verb, as io.open is io's
    """A store opened for ingesting and looking up, with its schema brought up to date (created if new).
    ``store``: a SQLAlchemy URL or the path of a SQLite file (default: ``DOCSIEVE_STORE``, else
    ``docsieve.db``); ``settings``: any ``Settings`` field, over the ``DOCSIEVE_`` environment."""
    from docsieve.index import open_index
    from docsieve.pipeline import Pipeline
    from docsieve.store import Store

    chosen = Settings.from_env(store=store).with_(**settings)
    index = open_index(chosen)
    return Sieve(Pipeline(Store(chosen.store, fingerprints=chosen.fingerprint_parameters), chosen, index))


class Sieve:
    """An open store and the pipeline that fills it (``docsieve.open``). Close it, or use it in a ``with``."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.settings = pipeline.settings

    def ingest(self, paths: Iterable[str]) -> Summary:
        """Read every document under the paths (files, folders, JSON batches; ``-`` is standard input) and
        store it: a new story, a copy linked to its story, or a rejected record with the reason."""
        from docsieve.prepare import Preparing, ahead_by_default
        from docsieve.readers import read

        items = read(paths, self.settings.max_document_bytes)
        return self.pipeline.ingest(Preparing(items, self.settings, ahead=ahead_by_default(self.settings)))

    def ingest_documents(self, documents: Iterable[RawDocument]) -> Summary:
        """Store documents already in hand, as ``ingest`` does."""
        return self.pipeline.ingest(documents)

    def similar(self, path: str, limit: int = 10) -> list[Match]:
        """The stored records closest to the document at ``path`` (nothing is stored), closest first."""
        from docsieve.readers import read

        found: list[Match] = []
        for _, matches in self.pipeline.similar(read([path], self.settings.max_document_bytes), limit):
            if isinstance(matches, str):  # the document itself was rejected: why
                raise ValueError(f"{path}: {matches}")
            found += matches
        return found

    def record(self, record_id: str) -> Record | None:
        return self.pipeline.store.get(record_id)

    def story(self, story_id: str) -> Story | None:
        """A story: its canonical record, its copies with their overlap with it, what it holds."""
        return self.pipeline.store.story(story_id)

    def records(self, status: Status | None = None) -> Iterator[Record]:
        """Every record in arrival order, or those of one status."""
        return self.pipeline.store.iter_records(status)

    def close(self) -> None:
        self.pipeline.close()

    def __enter__(self) -> Sieve:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
