"""Several processes ingesting copies of the same stories into one store at the same moment: the
write lock and the index catch-up make each story end with exactly one canonical record."""

import json
import os
import random
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.conftest import REPO, fixture_text

STORIES = {
    "long": fixture_text("ar_long_article.txt"),
    "near": fixture_text("ar_near_a.txt"),
    "en": fixture_text("en_article.txt"),
    "tmpl": fixture_text("ar_template_a.txt"),
}


def test_parallel_ingest_keeps_one_canonical_per_story(tmp_path: Path, store_url: str) -> None:
    """Copies arrive in no order of publication: each story still ends as one story whose canonical is its
    earliest-published member (DOCSIEVE_CANONICAL's default)."""
    processes = 4
    folders = []
    rng = random.Random(7)
    # Distinct publication times within a day or so: copies farther apart than the candidate window
    # (DOCSIEVE_INDEX_WINDOW) are other stories by design.
    seconds = rng.sample(range(100_000), processes * 30 * len(STORIES))
    for p in range(processes):
        folder = tmp_path / f"in{p}"
        folder.mkdir()
        lines = []
        for copy in range(30):
            for story, text in STORIES.items():
                # Every process gets its own copy of every story: a new line at the end makes it a near copy.
                published = datetime(2015, 7, 1, tzinfo=UTC) + timedelta(seconds=seconds.pop())
                lines.append(
                    {
                        "id": f"{copy:03d}_{story}",
                        "text": f"{text}\nنسخة {p}-{copy} من {story}",
                        "published": published.isoformat(),
                    }
                )
        (folder / "batch.jsonl").write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines), "utf-8")
        folders.append(folder)
    env = {**os.environ, "DOCSIEVE_STORE": store_url, "DOCSIEVE_BATCH_SIZE": "8"}
    running = [
        subprocess.Popen(
            [sys.executable, "-m", "docsieve.cli", "ingest", str(f), "--quiet"],
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
        [sys.executable, "-m", "docsieve.cli", "export"], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    records = [json.loads(line) for line in exported.stdout.splitlines()]
    assert len(records) == processes * 30 * len(STORIES)
    by_id = {r["id"]: r for r in records}
    canonical_per_story = defaultdict(set)
    stories_per_story = defaultdict(set)
    members = defaultdict(list)
    for r in records:
        story = r["source"].rsplit("_", 1)[1]
        root = r["duplicate_of"] or r["id"]
        assert by_id[root]["status"] == "canonical"
        canonical_per_story[story].add(root)
        stories_per_story[story].add(r["story_id"])
        members[story].append(r)
    assert {story: len(roots) for story, roots in canonical_per_story.items()} == dict.fromkeys(STORIES, 1)
    assert {story: len(ids) for story, ids in stories_per_story.items()} == dict.fromkeys(STORIES, 1)
    for story, group in members.items():
        earliest = min(group, key=lambda r: r["published_at"])
        assert canonical_per_story[story] == {earliest["id"]}, story
