"""The HTTP service on the embedded default: keys and scopes, documents in and records out, stories, similar,
size limits, errors as problem details, and the OpenAPI document."""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from docsieve import keys
from docsieve.service import create_app
from docsieve.settings import Settings
from docsieve.store import Store
from tests.conftest import fixture_text
from tests.webserver import Reply, WebServer

PROBLEM = "application/problem+json"


@pytest.fixture
def service_settings(tmp_path: Path) -> Settings:
    return Settings(store=f"sqlite:///{tmp_path / 'api.db'}", api_rate=0)


def _key(settings: Settings, scope: str) -> str:
    store = Store(settings.store, fingerprints=settings.fingerprint_parameters)
    try:
        return keys.create(store, scope, f"{scope} key")[1]
    finally:
        store.close()


@pytest.fixture
def client(service_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(service_settings)) as client:
        client.headers["X-API-Key"] = _key(service_settings, "admin")
        yield client


def _post(client: TestClient, documents: list[dict] | str, **headers: str):
    body = documents if isinstance(documents, str) else json.dumps(documents, ensure_ascii=False)
    return client.post("/v1/documents", content=body.encode(), headers={"Content-Type": "application/json", **headers})


def _copies() -> list[dict]:
    a, b = fixture_text("ar_near_a.txt"), fixture_text("ar_near_b.txt")
    return [
        {"id": "wire-1", "text": a, "source": "Wire", "published": "2026-12-01T08:00:00Z"},
        {"id": "paper-1", "text": b, "source": "Paper", "published": "2026-12-01T09:30:00Z"},
        {"id": "other-1", "text": fixture_text("ar_other.txt"), "source": "Paper"},
    ]


def test_documents_are_answered_each_with_its_record_in_order(client: TestClient) -> None:
    documents = [*_copies(), {"id": "broken", "title": "no text"}, {"id": "wire-1-again", "text": _copies()[0]["text"]}]
    reply = _post(client, documents)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["received"], body["new"], body["copies"], body["rejected"], body["already_stored"]) == (5, 2, 2, 1, 0)
    records = [d["record"] for d in body["documents"]]
    assert [d["position"] for d in body["documents"]] == [1, 2, 3, 4, 5]
    assert [r["source"] for r in records] == [
        "api#wire-1",
        "api#paper-1",
        "api#other-1",
        "api#broken",
        "api#wire-1-again",
    ]
    wire, paper, other, broken, again = records
    assert wire["status"] == "canonical" and other["status"] == "canonical"
    assert (paper["status"], paper["method"], paper["duplicate_of"]) == ("duplicate", "near", wire["id"])
    assert paper["story_id"] == wire["story_id"] != other["story_id"]
    assert (again["method"], again["duplicate_of"]) == ("exact", wire["id"])
    assert broken["status"] == "rejected" and "'text' is required" in broken["reason"]
    assert "text" not in wire  # replies are light; the record's own route gives the text

    # Sent again: the same records, stored before, nothing new.
    second = _post(client, documents).json()
    assert (second["new"], second["copies"], second["rejected"], second["already_stored"]) == (0, 0, 0, 5)
    assert [d["record"]["id"] for d in second["documents"]] == [r["id"] for r in records]
    assert not any(d["stored"] for d in second["documents"])

    whole = client.get(f"/v1/records/{paper['id']}").json()
    assert whole["text"][:300] in _copies()[1]["text"] and whole["outlet"] == "Paper"


def test_ndjson_is_read_as_json_lines(client: TestClient) -> None:
    lines = "\n".join(json.dumps(d, ensure_ascii=False) for d in _copies()) + "\n{not json\n"
    body = _post(client, lines, **{"Content-Type": "application/x-ndjson"}).json()
    assert (body["new"], body["copies"], body["rejected"]) == (2, 1, 1)
    assert "not valid JSON" in body["documents"][3]["record"]["reason"]


def test_a_story_shows_its_canonical_copies_first_publisher_and_timeline(client: TestClient) -> None:
    # The later publication arrives first: the first publisher still becomes the canonical.
    wire, paper, _ = _copies()
    first = _post(client, [paper]).json()["documents"][0]["record"]
    second = _post(client, [wire]).json()["documents"][0]["record"]
    story = client.get(f"/v1/stories/{first['story_id']}").json()
    assert story["canonical"] == second["id"] and story["copies"] == 1
    assert story["first_published"] == "2026-12-01T08:00:00+00:00"
    assert sorted(story["outlets"]) == ["Paper", "Wire"]
    copy = next(m for m in story["members"] if m["id"] == first["id"])
    assert copy["method"] == "near" and 0.5 < copy["jaccard"] <= 1.0
    assert [t["outlet"] for t in story["timeline"]] == ["Wire", "Paper"]
    assert story["timeline"][0]["canonical"] is True
    missing = client.get("/v1/stories/nope")
    assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM


def test_a_story_merged_into_another_redirects_to_it(client: TestClient, service_settings: Settings) -> None:
    """A consumer holding the id of a story since merged into another (one story split in two) is sent there, by the
    API and by the story's page; a consumer listing what changed since hears of the merge on the first page."""
    from datetime import UTC, datetime

    from tests.test_stories import merge

    records = [d["record"] for d in _post(client, _copies()).json()["documents"]]
    wire, other = records[0], records[2]
    before = datetime.now(UTC).isoformat()
    store = Store(service_settings.store)
    try:
        found = {r.id: r for r in store.iter_records()}
        merge(store, service_settings, found[wire["id"]], found[other["id"]])
    finally:
        store.close()
    moved = client.get(f"/v1/stories/{other['story_id']}", follow_redirects=False)
    assert moved.status_code == 308 and moved.headers["location"] == f"/v1/stories/{wire['story_id']}"
    story = client.get(f"/v1/stories/{other['story_id']}").json()
    assert story["id"] == wire["story_id"] and other["id"] in {m["id"] for m in story["members"]}
    listed = client.get("/v1/stories", params={"since": before, "limit": 1}).json()
    assert [s["id"] for s in listed["stories"]] == [wire["story_id"]]
    assert [(m["id"], m["merged_into"]) for m in listed["merged"]] == [(other["story_id"], wire["story_id"])]
    following = client.get("/v1/stories", params={"since": before, "cursor": listed["next_cursor"]}).json()
    assert "merged" not in following  # said once, on the first page
    assert "merged" not in client.get("/v1/stories").json()
    pages = TestClient(client.app)
    pages.post("/login", data={"key": client.headers["X-API-Key"], "next": "/"})
    page = pages.get(f"/stories/{other['story_id']}", follow_redirects=False)
    assert page.status_code == 308 and page.headers["location"] == f"/stories/{wire['story_id']}"


def test_stories_are_listed_by_copies_and_title_a_page_at_a_time(client: TestClient) -> None:
    _post(client, _copies())
    copied = client.get("/v1/stories", params={"min_copies": 1}).json()["stories"]
    assert len(copied) == 1 and copied[0]["copies"] == 1
    pages, cursor = [], None
    while True:
        reply = client.get("/v1/stories", params={"limit": 1, **({"cursor": cursor} if cursor else {})}).json()
        pages += [s["id"] for s in reply["stories"]]
        cursor = reply["next_cursor"]
        if not reply["more"]:
            break
    assert len(pages) == len(set(pages)) == 2
    title_word = copied[0]["title"].split()[0]
    found = client.get("/v1/stories", params={"q": title_word}).json()["stories"]
    assert copied[0]["id"] in [s["id"] for s in found]
    assert client.get("/v1/stories", params={"q": "no such title anywhere"}).json()["stories"] == []


def test_record_pages_neither_skip_nor_repeat_while_records_are_stored(client: TestClient) -> None:
    def texts(start: int, n: int) -> list[dict]:
        return [
            {"id": f"n{i}", "text": f"خبر رقم {i} عن موضوع مختلف تماما {i * 7919} في مدينة {i}"}
            for i in range(start, start + n)
        ]

    _post(client, texts(0, 5))
    first = client.get("/v1/records", params={"limit": 3}).json()
    assert first["more"] is True and len(first["records"]) == 3
    _post(client, texts(5, 4))  # stored between two pages
    seen = [r["source"] for r in first["records"]]
    cursor = first["next_cursor"]
    while True:
        page = client.get("/v1/records", params={"limit": 3, "cursor": cursor}).json()
        seen += [r["source"] for r in page["records"]]
        cursor = page["next_cursor"]
        if not page["more"]:
            break
    assert seen == [f"api#n{i}" for i in range(9)]
    # A cursor given after the last page brings what is stored later, and nothing twice.
    _post(client, texts(9, 1))
    assert [r["source"] for r in client.get("/v1/records", params={"cursor": cursor}).json()["records"]] == ["api#n9"]
    rejected = client.get("/v1/records", params={"status": "rejected"}).json()["records"]
    assert rejected == []
    bad = client.get("/v1/records", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 400 and bad.headers["content-type"] == PROBLEM


def test_similar_answers_without_storing(client: TestClient, service_settings: Settings) -> None:
    stored = _post(client, _copies()).json()["documents"]
    before = client.get("/v1/records").json()["records"]
    reply = client.post("/v1/similar", json={"text": fixture_text("ar_near_b.txt"), "limit": 2})
    assert reply.status_code == 200, reply.text
    matches = reply.json()["matches"]
    assert [m["record"]["id"] for m in matches] == [stored[1]["record"]["id"], stored[0]["record"]["id"]]
    assert matches[0]["jaccard"] == 1.0
    assert client.get("/v1/records").json()["records"] == before
    empty = client.post("/v1/similar", json={"limit": 2})
    assert empty.status_code == 422 and empty.headers["content-type"] == PROBLEM
    blank = client.post("/v1/similar", json={"text": "  \n"})
    assert blank.status_code == 422 and "cannot be compared" in blank.json()["detail"]


@pytest.mark.slow
def test_urls_are_fetched_and_stored_politely_across_requests(tmp_path: Path) -> None:
    page = fixture_text("ar_near_a.txt").encode()

    def article(request):
        if request.headers.get("If-None-Match") == '"v1"':
            return Reply(304)
        return Reply(200, {"Content-Type": "text/plain; charset=utf-8", "ETag": '"v1"'}, page)

    with WebServer() as web:
        web.route("/robots.txt", Reply(404))
        web.route("/a", article)
        web.route("/gone", Reply(404))
        settings = Settings(
            store=f"sqlite:///{tmp_path / 'u.db'}",
            api_rate=0,
            fetch_allow_hosts=f"127.0.0.1:{web.port}",
            host_interval=0.3,
        )
        with TestClient(create_app(settings)) as client:
            client.headers["X-API-Key"] = _key(settings, "submit")
            body = client.post("/v1/urls", json={"urls": [web.url("/a"), web.url("/gone")]}).json()
            assert (body["new"], body["rejected"]) == (1, 1)
            assert body["documents"][0]["record"]["url"] == web.url("/a")
            assert "404" in body["documents"][1]["record"]["reason"]
            again = client.post("/v1/urls", json={"urls": [web.url("/a")]}).json()
            assert again["not_modified"] == 1 and again["documents"][0]["outcome"] == "not modified"
            # similar fetches the page whole, though the store knows its ETag.
            similar = client.post("/v1/similar", json={"url": web.url("/a")})
            assert similar.status_code == 200, similar.text
            assert similar.json()["matches"][0]["record"]["id"] == body["documents"][0]["record"]["id"]
        # One fetcher for every request: robots.txt read once, and the host's requests kept apart.
        assert len(web.hits("/robots.txt")) == 1
        arrivals = sorted(r.at for r in web.requests)
        assert all(later - earlier >= 0.29 for earlier, later in itertools.pairwise(arrivals))


def test_urls_and_queries_are_held_to_their_limits(service_settings: Settings) -> None:
    settings = service_settings.with_(api_max_request_bytes=20_000)
    with TestClient(create_app(settings)) as client:
        client.headers["X-API-Key"] = _key(settings, "read")
        long_url = "http://example.com/" + "a" * 9000
        assert client.post("/v1/similar", json={"url": long_url}).status_code in (413, 422)
        too_big = client.post("/v1/similar", json={"text": "كلمة " * 10_000})
        assert too_big.status_code == 413 and too_big.headers["content-type"] == PROBLEM
        everything = client.post("/v1/similar", json={"text": "نص", "all": True})
        assert everything.status_code == 403 and "admin" in everything.json()["detail"]
        huge_cursor = client.get("/v1/records", params={"cursor": "cjk5OTk5OTk5OTk5OTk5OTk5OTk5"})
        assert huge_cursor.status_code == 400
        far_future = client.get("/v1/records", params={"since": "9999-12-31T23:59:59-05:00"})
        assert far_future.status_code == 400


def test_keys_missing_wrong_revoked_of_another_scope_or_too_fast(service_settings: Settings) -> None:
    settings = service_settings.with_(api_rate=1.0, api_burst=2)
    with TestClient(create_app(settings)) as client:
        reader, submitter, admin = (_key(settings, scope) for scope in ("read", "submit", "admin"))
        missing = client.get("/v1/records")
        assert missing.status_code == 401 and missing.headers["content-type"] == PROBLEM
        assert "WWW-Authenticate" in missing.headers
        wrong = client.get("/v1/records", headers={"X-API-Key": reader[:-2] + "xx"})
        assert wrong.status_code == 401 and "not one of this service's" in wrong.json()["detail"]
        assert client.get("/v1/records", headers={"Authorization": f"Bearer {reader}"}).status_code == 200
        scoped = _post(client, _copies(), **{"X-API-Key": reader})
        assert scoped.status_code == 403 and "scope submit" in scoped.json()["detail"]
        assert client.delete("/v1/records/x", headers={"X-API-Key": submitter}).status_code == 403
        assert client.get("/v1/records", headers={"X-API-Key": admin}).status_code == 200  # admin reads too

        # One a second, two more at once: the fourth request in a row waits.
        statuses = [client.get("/v1/records", headers={"X-API-Key": submitter}).status_code for _ in range(4)]
        assert statuses[:3] == [200, 200, 200] and statuses[3] == 429
        limited = client.get("/v1/records", headers={"X-API-Key": submitter})
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        assert client.get("/v1/records", headers={"X-API-Key": admin}).status_code == 200  # each key its own

        store = Store(settings.store)
        try:
            keys.revoke(store, submitter)
        finally:
            store.close()
        revoked = client.get("/v1/records", headers={"X-API-Key": submitter})
        assert revoked.status_code == 401 and "revoked" in revoked.json()["detail"]


def test_only_the_hash_of_a_key_is_kept(service_settings: Settings) -> None:
    key = _key(service_settings, "read")
    database = sqlite3.connect(service_settings.store.removeprefix("sqlite:///"))
    try:
        rows = database.execute("SELECT * FROM api_keys").fetchall()
    finally:
        database.close()
    secret = key.split("_", 2)[2]  # dsk_<id>_<secret>: the secret itself may hold "_" (URL-safe base64)
    assert len(rows) == 1 and key not in repr(rows) and secret not in repr(rows)


def test_sizes_and_shapes_of_bodies_are_refused_with_why(service_settings: Settings) -> None:
    settings = service_settings.with_(api_max_request_bytes=20_000, api_max_documents=3, max_document_bytes=5_000)
    with TestClient(create_app(settings)) as client:
        client.headers["X-API-Key"] = _key(settings, "submit")
        big = _post(client, [{"text": "كلمة " * 5000}])
        assert big.status_code == 413 and "DOCSIEVE_API_MAX_REQUEST_BYTES" in big.json()["detail"]
        chunks = iter([b'[{"text": "' + "كلمة ".encode() * 2000, "كلمة ".encode() * 2000 + b'"}]'])
        streamed = client.post("/v1/documents", content=chunks, headers={"Content-Type": "application/json"})
        assert streamed.status_code == 413 and "more than" in streamed.json()["detail"]  # no Content-Length
        one_large = _post(client, [{"id": "ok", "text": "خبر قصير"}, {"id": "large", "text": "ك" * 3000}])
        assert one_large.status_code == 413 and one_large.headers["content-type"] == PROBLEM
        assert one_large.json()["documents"][0]["position"] == 2
        many = _post(client, [{"text": f"خبر {i}"} for i in range(4)])
        assert many.status_code == 413 and "DOCSIEVE_API_MAX_DOCUMENTS" in many.json()["detail"]
        assert _post(client, "hello").status_code == 400
        assert _post(client, "[]").status_code == 400
        assert _post(client, "[1, 2").json()["rejected"] == 3  # two items that are no objects, and the broken end
        kind = client.post("/v1/documents", content=b"<p>x</p>", headers={"Content-Type": "text/html"})
        assert kind.status_code == 415
        # Nothing of the refused requests was stored.
        assert [r["source"] for r in client.get("/v1/records").json()["records"]] == ["api#1", "api#2", "api"]


def test_deleting_takes_a_record_down(client: TestClient) -> None:
    wire = _post(client, _copies()).json()["documents"][0]["record"]
    assert client.delete(f"/v1/records/{wire['id'][:6]}").status_code == 404  # a whole id only
    gone = client.delete(f"/v1/records/{wire['id']}", params={"reason": "takedown request"})
    assert gone.status_code == 200 and gone.json() == {"deleted": wire["id"], "reason": "takedown request"}
    assert client.get(f"/v1/records/{wire['id']}").status_code == 404
    story = client.get(f"/v1/stories/{wire['story_id']}").json()
    assert story["canonical"] != wire["id"]  # the copy holds the story now


def test_health_readiness_openapi_and_unknown_paths(client: TestClient) -> None:
    assert client.get("/healthz", headers={"X-API-Key": ""}).json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    spec = client.get("/openapi.json").json()
    assert {"/v1/documents", "/v1/records", "/v1/records/{record_id}", "/v1/stories/{story_id}", "/v1/similar"} <= set(
        spec["paths"]
    )
    assert client.get("/docs").status_code == 200
    unknown = client.get("/v2/nothing")
    assert unknown.status_code == 404 and unknown.headers["content-type"] == PROBLEM
    assert client.get("/v1/tasks/abc").status_code == 404


def test_a_failure_inside_is_a_problem_not_a_traceback(service_settings: Settings) -> None:
    from docsieve.service._backends import Embedded

    class Failing(Embedded):
        def similar(self, document, limit, everything):
            raise RuntimeError("secret internals")

    with TestClient(create_app(service_settings, Failing(service_settings)), raise_server_exceptions=False) as client:
        reply = client.post("/v1/similar", json={"text": "نص"}, headers={"X-API-Key": _key(service_settings, "read")})
    assert reply.status_code == 500 and reply.headers["content-type"] == PROBLEM
    assert "secret internals" not in reply.text and "Traceback" not in reply.text


def test_concurrent_copies_of_one_story_make_one_story(client: TestClient) -> None:
    base = fixture_text("ar_long_article.txt")
    paragraphs = base.split("\n")
    versions = [
        {"id": f"outlet-{i}", "source": f"Outlet {i}", "text": "\n".join(paragraphs[: len(paragraphs) - i % 3])}
        for i in range(8)
    ]
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda d: _post(client, [d]).json(), versions))
    records = [r["documents"][0]["record"] for r in replies]
    assert len({r["story_id"] for r in records}) == 1
    assert sum(r["status"] == "canonical" for r in records) == 1


def _sample(text: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def test_metrics_move_by_exactly_what_was_stored(client: TestClient) -> None:
    before = client.get("/metrics").text
    _post(client, [*_copies(), {"id": "broken"}])
    _post(client, _copies()[:1])  # stored before
    after = client.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text

    def moved(name: str, **labels: str) -> float:
        return _sample(text, name, **labels) - _sample(before, name, **labels)

    assert moved("docsieve_documents_total", status="canonical", method="") == 2
    assert moved("docsieve_documents_total", status="duplicate", method="near") == 1
    assert moved("docsieve_documents_total", status="rejected", method="") == 1
    assert moved("docsieve_documents_total", status="already_stored", method="") == 1
    assert moved("docsieve_batch_seconds_count") == 2
    assert moved("docsieve_decision_seconds_count") == 5
    assert moved("docsieve_http_requests_total", route="/v1/documents", method="POST", status="200") == 2
    assert _sample(text, "docsieve_records", status="canonical") == 2  # read from the store when scraped
    assert _sample(text, "docsieve_stories") == 2
    assert "docsieve_index_bytes " in text  # the embedded index's files (written as the index grows)
    assert _sample(text, "docsieve_index_postings") > 0


# --- The web page of stories


def test_the_page_needs_a_login_and_keeps_to_its_own_site(client: TestClient, service_settings: Settings) -> None:
    reader = _key(service_settings, "read")
    pages = TestClient(client.app, follow_redirects=False)
    away = pages.get("/stories/abc?x=1")
    assert away.status_code == 303 and away.headers["location"] == "/login?next=%2Fstories%2Fabc%3Fx%3D1"
    forged = pages.post("/login", data={"key": reader, "next": "/"}, headers={"Origin": "https://evil.example"})
    assert forged.status_code == 403 and "set-cookie" not in forged.headers  # another site's form
    wrong = pages.post("/login", data={"key": "dsk_nothing_here", "next": "/"})
    assert wrong.status_code == 401 and "not an API key" in wrong.text
    elsewhere = pages.post(
        "/login", data={"key": reader, "next": "//evil.example/"}, headers={"Origin": "http://testserver"}
    )
    assert elsewhere.status_code == 303 and elsewhere.headers["location"] == "/"
    assert "httponly" in elsewhere.headers["set-cookie"].lower()
    assert pages.get("/").status_code == 200  # the cookie stays with the client
    program = TestClient(client.app, follow_redirects=False)  # no cookie: the header alone
    assert program.get("/").status_code == 303
    assert program.get("/", headers={"X-API-Key": reader}).status_code == 200
    store = Store(service_settings.store)
    try:
        keys.revoke(store, reader)
    finally:
        store.close()
    assert pages.get("/").status_code == 303  # a revoked key's cookie no longer opens the page


def test_a_story_page_shows_copies_beside_the_canonical_with_differences_marked(client: TestClient) -> None:
    wire, paper, _ = _copies()
    records = [d["record"] for d in _post(client, [wire, paper, _copies()[2]]).json()["documents"]]
    pages = TestClient(client.app)
    pages.post("/login", data={"key": client.headers["X-API-Key"], "next": "/"})
    home = pages.get("/")
    assert home.status_code == 200 and f"/stories/{records[0]['story_id']}" in home.text
    assert 'dir="rtl"' in home.text
    story = pages.get(f"/stories/{records[0]['story_id']}").text
    assert "<ins>" in story and "<del>" in story
    assert story.count('dir="rtl"') >= 3  # the title and both texts
    assert "first published by <strong><bdi>Wire</bdi></strong>" in story
    # The words only the copy has are inside <ins>, the ones only the canonical has inside <del>.
    import re

    inserted = " ".join(re.findall(r"<ins>(.*?)</ins>", story, flags=re.S))
    deleted = " ".join(re.findall(r"<del>(.*?)</del>", story, flags=re.S))
    paper_words, wire_words = set(paper["text"].split()), set(wire["text"].split())
    assert inserted.split() and all(w in paper_words for w in inserted.split())
    assert deleted.split() and all(w in wire_words for w in deleted.split())
    searched = pages.get("/", params={"q": records[0]["title"].split()[0]}).text
    assert f"/stories/{records[0]['story_id']}" in searched
    assert pages.get("/stories/nothing").status_code == 404


def test_differences_mark_only_what_differs() -> None:
    from docsieve.service._pages import differences

    left, right = differences("the cat sat on the mat", "the dog sat on the mat today")
    assert [(p.text, p.changed) for p in left] == [("the ", False), ("cat ", True), ("sat on the mat", False)]
    assert [(p.text, p.changed) for p in right] == [
        ("the ", False),
        ("dog ", True),
        ("sat on the mat ", False),
        ("today", True),
    ]


def test_readiness_names_what_cannot_be_reached(tmp_path: Path) -> None:
    """Queuing to a deployment whose broker and shared index are down: up, but not ready, and why."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]  # nothing listens here once the socket is closed
    down = f"redis://127.0.0.1:{closed}/0"
    settings = Settings(
        store=f"sqlite:///{tmp_path / 'q.db'}", api_queue=True, broker_url=down, result_backend=down, index_url=down
    )
    Store(settings.store).close()  # the deployment's migrate service made the schema
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.headers["content-type"] == PROBLEM
    assert set(ready.json()["parts"]) == {"broker", "index"}
    assert "broker:" in ready.json()["detail"]


@pytest.mark.slow
def test_serve_logs_json_on_request(tmp_path: Path) -> None:
    import os

    import requests

    from tests.services import serving

    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCSIEVE_")}
    env["DOCSIEVE_STORE"] = str(tmp_path / "logs.db")
    log = tmp_path / "serve.log"
    with serving(env, "--log-json", log=log) as base:
        assert requests.get(f"{base}/v1/records", timeout=5).status_code == 401
    lines = log.read_text(encoding="utf-8").splitlines()
    entries = [json.loads(line) for line in lines if line.strip()]  # every line one JSON object
    access = [e for e in entries if e["logger"] == "uvicorn.access"]
    assert any("/v1/records" in e["message"] and "401" in e["message"] for e in access), entries


def test_only_the_start_of_long_texts_is_compared() -> None:
    """Word-by-word comparison grows with the square of the length: past its first words a text is shown
    as it is (a 20,000-word story took 20 s a page before)."""
    from docsieve.service._pages import differences

    left, right = differences("a b c d e f", "a x c d y f", words=3)
    assert [(p.text, p.changed) for p in left] == [("a ", False), ("b ", True), ("c d e f", False)]
    assert [(p.text, p.changed) for p in right] == [("a ", False), ("x ", True), ("c d y f", False)]
    _long_left, long_right = differences("كلمة " * 50_000, "كلمة " * 49_999 + "أخرى")
    assert "".join(p.text for p in long_right).endswith("أخرى") and not any(p.changed for p in long_right)
