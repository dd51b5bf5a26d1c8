"""Web ingestion end to end: `docsieve ingest URL...` against a local server with real-shaped pages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.webserver import Reply, Request, WebServer

REPO = Path(__file__).resolve().parent.parent
PAGES = Path(__file__).parent / "fixtures" / "pages"
ETAG = '"ar-v1"'


def page(name: str, canonical: str | None = None) -> bytes:
    html = (PAGES / name).read_bytes()
    if canonical is not None:  # point the page's canonical link at the test server
        start = html.index(b'<link rel="canonical"')
        end = html.index(b">", start) + 1
        html = html[:start] + f'<link rel="canonical" href="{canonical}">'.encode() + html[end:]
    return html


def conditional(body: bytes) -> object:
    def answer(request: Request) -> Reply:
        if request.headers.get("If-None-Match") == ETAG:
            return Reply(304, {"ETag": ETAG})
        return Reply(200, {"Content-Type": "text/html; charset=utf-8", "ETag": ETAG}, body)

    return answer


@pytest.fixture
def site():
    with WebServer() as web:
        ar = page("ar_article.html", canonical="/ar/story.html")
        web.route("/robots.txt", Reply(200, {"Content-Type": "text/plain"}, b"User-agent: *\nDisallow: /private/\n"))
        web.route("/ar/story.html", conditional(ar))
        web.route("/mirror/story.html", Reply(200, {"Content-Type": "text/html; charset=utf-8"}, ar))
        en = page("en_article.html", canonical="/en/story.html")
        web.route("/en/story.html", Reply(200, {"Content-Type": "text/html; charset=utf-8"}, en))
        web.route("/private/memo.html", Reply(200, {"Content-Type": "text/html"}, en))
        web.route("/moved", Reply(301, {"Location": "/en/story.html"}))
        web.route("/menu.html", Reply(200, {"Content-Type": "text/html"}, b"<html><body><nav>Home</nav></body></html>"))
        yield web


def docsieve(*args: str, store: Path, site: WebServer | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCSIEVE_")}
    env |= {"DOCSIEVE_STORE": f"sqlite:///{store}", "DOCSIEVE_HOST_INTERVAL": "0"}
    if site is not None:  # the test server; every other internal address (or port) is refused
        env["DOCSIEVE_FETCH_ALLOW_HOSTS"] = f"127.0.0.1:{site.port}"
    return subprocess.run(
        [sys.executable, "-m", "docsieve.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


def export(store: Path) -> dict[str, dict]:
    out = docsieve("export", store=store)
    assert out.returncode == 0, out.stderr
    return {r["source"]: r for r in map(json.loads, out.stdout.splitlines())}


def test_ingest_urls_one_record_per_article(site: WebServer, tmp_path: Path) -> None:
    store = tmp_path / "web.db"
    refused = f"http://127.0.0.2:{site.port}/ar/story.html"  # internal, and not the allowed host name
    urls = [
        site.url("/ar/story.html?utm_source=newsletter&utm_medium=email"),
        site.url("/mirror/story.html"),  # the same article; its canonical link names /ar/story.html
        site.url("/moved#top"),
        site.url("/private/memo.html"),
        site.url("/gone.html"),
        site.url("/menu.html"),
        refused,
        "ftp://127.0.0.1/file.txt",
    ]
    run = docsieve("ingest", *urls, "--quiet", store=store, site=site)
    assert run.returncode == 0, run.stderr
    assert "read 8  new 2  exact copies 0  near copies 0  rejected 5  already stored 1" in run.stdout

    records = export(store)
    ar, en = records[site.url("/ar/story.html")], records[site.url("/en/story.html")]
    assert (ar["status"], ar["language"], ar["url"]) == ("canonical", "ar", site.url("/ar/story.html"))
    assert "تحلية المياه" in ar["title"] and "تحلية" in ar["text"]
    assert (en["status"], en["language"]) == ("canonical", "en")
    assert "flood barrier" in en["title"].lower()
    assert "Maria Lindqvist" in en["author"] and en["published"] == "2024-03-12"
    assert ar["published"] == "2024-05-21"
    for boilerplate in ("Subscribe", "All rights reserved"):
        assert boilerplate not in en["text"]
    reasons = {source: r["reason"] for source, r in records.items() if r["status"] == "rejected"}
    assert "robots.txt" in reasons[site.url("/private/memo.html")]
    assert "404" in reasons[site.url("/gone.html")]
    assert "no article text" in reasons[site.url("/menu.html")]
    assert "127.0.0.2" in reasons[refused] and "loopback" in reasons[refused]
    assert "http" in reasons["ftp://127.0.0.1/file.txt"]
    assert not site.hits("/private/memo.html")  # never fetched
    assert len(site.hits("/robots.txt")) == 1  # once per host

    # A second run: the page answers 304 to the validators the first run kept; nothing new is stored.
    again = docsieve("ingest", site.url("/ar/story.html"), "--quiet", store=store, site=site)
    assert again.returncode == 0, again.stderr
    assert "not modified 1" in again.stdout and "read 0" in again.stdout
    assert site.hits("/ar/story.html")[-1].headers.get("If-None-Match") == ETAG
    assert export(store).keys() == records.keys()


def test_a_plain_text_article_is_read_as_text(site: WebServer, tmp_path: Path) -> None:
    article = (Path(__file__).parent / "fixtures" / "en_article.txt").read_bytes()
    site.route("/wire/story.txt", Reply(200, {"Content-Type": "text/plain; charset=utf-8"}, article))
    run = docsieve("ingest", site.url("/wire/story.txt"), "--quiet", store=tmp_path / "web.db", site=site)
    assert run.returncode == 0, run.stderr
    record = export(tmp_path / "web.db")[site.url("/wire/story.txt")]
    assert (record["status"], record["language"]) == ("canonical", "en")
    assert record["text"].split("\n")[0] in article.decode()


def test_the_summary_s_elapsed_time_counts_the_fetching(site: WebServer, tmp_path: Path) -> None:
    body = page("en_article.html", canonical="/slow.html")
    site.route("/slow.html", Reply(200, {"Content-Type": "text/html; charset=utf-8"}, body, delay=1.5))
    run = docsieve("ingest", site.url("/slow.html"), "--quiet", store=tmp_path / "slow.db", site=site)
    assert run.returncode == 0, run.stderr
    elapsed = float(run.stdout.split("elapsed ")[1].split(" s")[0])
    assert elapsed >= 1.5, run.stdout  # the page took 1.5 s to answer; before, only the storing was counted
