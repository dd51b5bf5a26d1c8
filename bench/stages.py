"""Where the preparing thread's time goes: reading, extraction, validation and fingerprints of the same
articles, each stage timed apart in one process (best of N rounds).

    .venv/bin/python bench/stages.py [--corpus ../shared/corpus] [--docs 5000] [--rounds 9]

To compare two versions, run it from each one's checkout and virtual environment, alternating: the
machine is shared and noisy, and only stages measured in the same minutes compare.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from common import DEFAULT_CORPUS, folder_or_exit, load_articles, machine
from pipeline import write_articles

from docsieve.extract import extract
from docsieve.models import Document
from docsieve.prepare import fingerprint_documents
from docsieve.readers import read
from docsieve.settings import Settings
from docsieve.validate import validate


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="shared corpus folder")
    parser.add_argument("--docs", type=int, default=5000, help="articles (default 5000)")
    parser.add_argument("--rounds", type=int, default=9, help="rounds; the best of each stage is shown (default 9)")
    args = parser.parse_args(argv)
    articles = load_articles(folder_or_exit(args.corpus), args.docs)
    settings = Settings()
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="docsieve-stages-") as work:
        folder = Path(work) / "articles"
        write_articles(articles, folder)
        for _ in range(args.rounds):
            began = time.perf_counter()
            items = list(read([str(folder)], settings.max_document_bytes))
            read_at = time.perf_counter()
            documents = [extract(item) for item in items]
            extracted_at = time.perf_counter()
            documents = [validate(document) for document in documents]
            validated_at = time.perf_counter()
            # What the pipeline fingerprints: the documents no stage rejected (13 of the first 5,000 have no text).
            fingerprint_documents([d for d in documents if isinstance(d, Document)], settings)
            done_at = time.perf_counter()
            for stage, seconds in (
                ("read", read_at - began),
                ("extract", extracted_at - read_at),
                ("validate", validated_at - extracted_at),
                ("fingerprint", done_at - validated_at),
            ):
                best[stage] = min(best.get(stage, seconds), seconds)
    print(f"{len(articles):,} articles, best of {args.rounds} rounds; {machine()}")
    for stage, seconds in best.items():
        print(f"  {stage:<12} {seconds * 1000:8.1f} ms  {seconds / len(articles) * 1e6:7.1f} µs a document")
    return 0


if __name__ == "__main__":
    sys.exit(main())
