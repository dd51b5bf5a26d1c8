"""Shared by the benchmarks in this folder: SaudiNewsNet articles from the shared corpus, the machine."""

from __future__ import annotations

import gzip
import json
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus"
FOLDER = "saudinewsnet-dev"


@dataclass(frozen=True, slots=True)
class Article:
    id: str  # snn-<date>-<index in that day's array>, as in silver_pairs_dev.tsv
    title: str
    content: str


def folder_or_exit(corpus: Path) -> Path:
    """The saudinewsnet-dev folder, or exit 2 with a message: the corpus is not part of the repository."""
    folder = corpus / FOLDER
    if not any(folder.glob("*.json.gz")):
        print(
            f"corpus not found: no {FOLDER}/*.json.gz under {corpus} "
            f"(the shared corpus lives beside the repository; pass --corpus DIR)",
            file=sys.stderr,
        )
        sys.exit(2)
    return folder


def load_articles(folder: Path, limit: int | None = None) -> list[Article]:
    """Articles with non-empty content, in day and array order; ids keep the index in the day's array."""
    articles: list[Article] = []
    for path in sorted(folder.glob("*.json.gz")):
        day = path.name.removesuffix(".json.gz")
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            rows = json.load(fh)
        for index, row in enumerate(rows):
            content = row.get("content") or ""
            if content.strip():
                articles.append(Article(f"snn-{day}-{index}", (row.get("title") or "").strip(), content))
                if limit is not None and len(articles) >= limit:
                    return articles
    return articles


def machine() -> str:
    """CPU model and count, for the header of a results table."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs"
