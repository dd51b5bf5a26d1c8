"""The web page of stories in a real browser: Debian's Chromium (``.ci/run`` installs it where missing), driven
by Playwright, against ``docsieve serve`` in a process of its own. An editor logs in, opens a story with
Arabic copies, and sees the differences highlighted and each text in its own direction. The screenshot is
kept in ``test-artifacts/``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, REPO
from tests.services import serving

pytestmark = pytest.mark.slow
ARTIFACTS = REPO / "test-artifacts"


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "Chromium is missing: .ci/run installs Debian's chromium package (apt-get install chromium)"
    return found


def test_an_editor_logs_in_and_reads_an_arabic_story(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCSIEVE_")}
    env["DOCSIEVE_STORE"] = str(tmp_path / "pages.db")
    docsieve = [sys.executable, "-m", "docsieve.cli"]
    batch = tmp_path / "batch.jsonl"
    rows = [
        {
            "id": "wire",
            "text": (FIXTURES / "ar_near_a.txt").read_text(),
            "source": "وكالة الأنباء",
            "published": "2026-12-01T08:00:00Z",
        },
        {
            "id": "paper",
            "text": (FIXTURES / "ar_near_b.txt").read_text(),
            "source": "Paper",
            "published": "2026-12-01T10:00:00Z",
        },
        {"id": "english", "text": (FIXTURES / "en_article.txt").read_text(), "source": "Daily"},
    ]
    batch.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    subprocess.run([*docsieve, "ingest", str(batch), "--quiet"], env=env, check=True, capture_output=True, cwd=REPO)
    key = subprocess.run(
        [*docsieve, "keys", "create", "--scope", "read", "--name", "editor"],
        env=env, check=True, capture_output=True, text=True, cwd=REPO,
    ).stdout.strip()  # fmt: skip
    with serving(env) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(base + "/")
        assert page.url.startswith(base + "/login")
        page.fill("#key", "not a key")
        page.click("button[type=submit]")
        assert "not an API key" in page.inner_text("[role=alert]")
        page.fill("#key", key)
        page.click("section.login button[type=submit]")
        page.wait_for_selector("table.stories")
        titles = page.locator("table.stories td a")
        assert titles.count() == 2
        arabic = page.locator("table.stories td a[dir=rtl]")
        assert arabic.count() == 1
        arabic.first.click()
        page.wait_for_selector("section.pair")
        canonical = page.locator("article.canonical-text").first
        copy = page.locator("article.copy-text").first
        assert canonical.evaluate("e => getComputedStyle(e).direction") == "rtl"
        assert copy.evaluate("e => getComputedStyle(e).direction") == "rtl"
        assert "وكالة الأنباء" in page.inner_text("p.summary")  # the first publisher
        inserted = copy.locator("ins")
        assert inserted.count() > 0
        assert inserted.first.evaluate("e => getComputedStyle(e).backgroundColor") != "rgba(0, 0, 0, 0)"
        assert canonical.locator("del").count() > 0
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "story-page.png"), full_page=True)
        page.goto(base + "/")
        page.locator("table.stories td a[dir=ltr]").first.click()
        english = page.locator("article.canonical-text").first
        assert english.evaluate("e => getComputedStyle(e).direction") == "ltr"
        browser.close()
    assert (ARTIFACTS / "story-page.png").stat().st_size > 10_000
