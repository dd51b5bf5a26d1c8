"""Real articles kept as test fixtures (tests/fixtures/*.json: source, outlet, title, published, body)."""

import json
from pathlib import Path

from docsieve.models import RawDocument

FIXTURES = Path(__file__).parent / "fixtures"


def fixture_documents(name: str) -> dict[str, RawDocument]:
    """The documents of ``tests/fixtures/<name>``, by source."""
    rows = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return {
        d["source"]: RawDocument(
            source=d["source"], body=d["body"], title=d["title"], published=d["published"], outlet=d["outlet"]
        )
        for d in rows
    }


def text_reads(monkeypatch) -> list[int]:
    """From now on, how many ids each read of stored texts (``Transaction.texts``) asks for; an empty call makes
    no query and is not counted."""
    from docsieve.store import Transaction

    calls: list[int] = []
    texts = Transaction.texts

    def counted(self, ids):
        ids = list(ids)
        if ids:
            calls.append(len(ids))
        return texts(self, ids)

    monkeypatch.setattr(Transaction, "texts", counted)
    return calls
