from __future__ import annotations

from pathlib import Path

import pytest

from worker.models import RawDocument, Record
from worker.pipeline import Pipeline
from worker.settings import Settings
from worker.store import Store

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).parent.parent


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
def settings(store_url: str) -> Settings:
    return Settings(store=store_url)


@pytest.fixture
def store(store_url: str):
    s = Store(store_url)
    yield s
    s.close()


@pytest.fixture
def pipeline(store: Store, settings: Settings) -> Pipeline:
    return Pipeline(store, settings)


def ingest_texts(pipeline: Pipeline, *pairs: tuple[str, str]) -> dict[str, Record]:
    """Ingest (source, body) pairs in order; the stored records by source."""
    pipeline.ingest([RawDocument(source=source, body=body) for source, body in pairs])
    return {r.source: r for r in pipeline.store.iter_records()}
