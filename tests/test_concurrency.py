"""Several processes ingesting copies of the same stories into one store at the same moment: the
write lock and the index catch-up make each story end with exactly one canonical record."""

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from tests.conftest import REPO, fixture_text

STORIES = {
    "long": fixture_text("ar_long_article.txt"),
    "near": fixture_text("ar_near_a.txt"),
    "en": fixture_text("en_article.txt"),
    "tmpl": fixture_text("ar_template_a.txt"),
}


def test_parallel_ingest_keeps_one_canonical_per_story(tmp_path: Path, store_url: str) -> None:
    processes = 4
    folders = []
    for p in range(processes):
        folder = tmp_path / f"in{p}"
        folder.mkdir()
        for copy in range(30):
            for story, text in STORIES.items():
                # Every process gets its own copy of every story: a new line at the end makes it a near copy.
                (folder / f"{copy:03d}_{story}.txt").write_text(f"{text}\nنسخة {p}-{copy} من {story}", "utf-8")
        folders.append(folder)
    env = {**os.environ, "DOCSIEVE_STORE": store_url, "DOCSIEVE_BATCH_SIZE": "8"}
    running = [
        subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "ingest", str(f), "--quiet"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for f in folders
    ]
    for proc in running:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    exported = subprocess.run(
        [sys.executable, "-m", "worker.cli", "export"], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    records = [json.loads(line) for line in exported.stdout.splitlines()]
    assert len(records) == processes * 30 * len(STORIES)
    by_id = {r["id"]: r for r in records}
    canonical_per_story = defaultdict(set)
    for r in records:
        story = Path(r["source"]).stem.split("_", 1)[1]
        root = r["duplicate_of"] or r["id"]
        assert by_id[root]["status"] == "canonical"
        canonical_per_story[story].add(root)
    assert {story: len(roots) for story, roots in canonical_per_story.items()} == dict.fromkeys(STORIES, 1)
