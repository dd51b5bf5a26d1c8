"""The HTTP service in front of a real deployment: `docsieve serve` with DOCSIEVE_API_QUEUE=on queues to
`docsieve worker` processes (Celery prefork) on Redis, storing into PostgreSQL."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.conftest import REPO, fixture_text
from tests.services import serving
from tests.test_deployment import deployment, workers  # noqa: F401 (the fixture)

pytestmark = pytest.mark.slow


def _key(env: dict, scope: str) -> str:
    made = subprocess.run(
        [sys.executable, "-m", "docsieve.cli", "keys", "create", "--scope", scope],
        env=env, cwd=REPO, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return made.stdout.strip()


def _done(base: str, key: str, task_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = requests.get(f"{base}/v1/tasks/{task_id}", headers={"X-API-Key": key}, timeout=10).json()
        if task["done"]:
            return task
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} not done in {timeout} s")


def test_copies_sent_at_once_through_the_api_make_one_story(deployment: dict) -> None:  # noqa: F811
    key = _key(deployment, "admin")
    base_text = fixture_text("ar_long_article.txt")
    paragraphs = base_text.split("\n")
    versions = [
        {"id": f"outlet-{i}", "source": f"Outlet {i}", "text": "\n".join(paragraphs[: len(paragraphs) - i % 3])}
        for i in range(8)
    ]
    served = {**deployment, "DOCSIEVE_API_QUEUE": "on", "DOCSIEVE_API_RATE": "0"}
    with workers(deployment, concurrency=2), serving(served) as base:
        headers = {"X-API-Key": key, "Content-Type": "application/json"}
        assert requests.get(base + "/readyz", timeout=30).json() == {"status": "ready"}

        def send(document: dict) -> dict:
            body = json.dumps([document], ensure_ascii=False).encode()
            reply = requests.post(base + "/v1/documents", data=body, headers=headers, timeout=60)
            assert reply.status_code == 200, reply.text
            return reply.json()

        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(send, versions))
        assert all(r["queued"] and len(r["tasks"]) == 1 for r in replies)
        results = [_done(base, key, r["tasks"][0]) for r in replies]
        assert all(t["state"] == "SUCCESS" for t in results), results
        ids = [t["result"]["records"][0] for t in results]
        records = [requests.get(f"{base}/v1/records/{i}", headers=headers, timeout=30).json() for i in ids]
        assert len({r["story_id"] for r in records}) == 1
        assert sum(r["status"] == "canonical" for r in records) == 1
        story = requests.get(f"{base}/v1/stories/{records[0]['story_id']}", headers=headers, timeout=30).json()
        assert story["copies"] == 7
        metrics = requests.get(base + "/metrics", timeout=30).text
        assert 'docsieve_records{status="canonical"} 1.0' in metrics
        assert "docsieve_queue_depth{queue=" in metrics
        postings = float(metrics.split("\ndocsieve_index_postings ")[1].split()[0])
        assert postings > 8  # the shared Redis index's entries of the 8 copies
        similar = requests.post(
            base + "/v1/similar", json={"text": versions[0]["text"], "limit": 3}, headers=headers, timeout=30
        ).json()
        assert similar["matches"][0]["jaccard"] == 1.0


def test_a_worker_serves_the_metrics_of_all_its_pool_processes(deployment: dict, tmp_path: Path) -> None:  # noqa: F811
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    counting = tmp_path / "tmp"  # the worker's temporary directory, where it counts
    counting.mkdir()
    with workers({**deployment, "TMPDIR": str(counting)}, 2, "--metrics-port", str(port)):
        assert len(list(counting.glob("docsieve-metrics-*"))) == 1
        submitted = subprocess.run(
            [sys.executable, "-m", "docsieve.cli", "submit", "seeds/", "--wait", "--quiet"],
            env={**deployment, "DOCSIEVE_SUBMIT_BATCH": "5"},  # five tasks: both pool processes take some
            cwd=REPO, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert submitted.returncode == 0, submitted.stderr
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    assert list(counting.glob("docsieve-metrics-*")) == []  # the stopped worker took its counting folder with it
    from prometheus_client.parser import text_string_to_metric_families

    counted: dict[tuple, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            counted[key] = counted.get(key, 0) + sample.value
    documents = {
        labels: value for (name, labels), value in counted.items() if name == "docsieve_documents_total" and value
    }
    # The seeds as the embedded default stores them: 13 stories, 3 exact copies, 9 near ones.
    by_status = {}
    for labels, value in documents.items():
        status = dict(labels)["status"]
        by_status[status] = by_status.get(status, 0) + value
    assert by_status == {"canonical": 13, "duplicate": 12}
    assert counted[("docsieve_batch_seconds_count", ())] == 5


def test_a_worker_logs_json_on_request(deployment: dict, tmp_path) -> None:  # noqa: F811
    from tests.services import running_worker

    log = tmp_path / "worker.log"
    with running_worker(deployment, "--log-json", concurrency=1, log=log, loglevel="INFO"):
        submitted = subprocess.run(
            [sys.executable, "-m", "docsieve.cli", "submit", "seeds/000_3b0ecb07abc01b42.txt", "--wait", "--quiet"],
            env=deployment, cwd=REPO, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert submitted.returncode == 0, submitted.stderr
    lines = [line for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    # Every line is one JSON object, but the notice Celery prints (not logs) as it stops.
    assert [line for line in lines if not line.startswith("{")] == ["worker: Warm shutdown (MainProcess)"]
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    assert {"time", "level", "logger", "message"} <= entries[0].keys()
    assert any("succeeded" in e["message"] for e in entries), lines[-5:]
