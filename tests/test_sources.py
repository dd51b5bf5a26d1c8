"""Sources: the TOML file, discovery of feeds, sitemaps and folders, hostile XML, and polls that
enqueue each entry once."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from docsieve import sources
from docsieve.settings import Settings
from docsieve.sources import Entry, PollResult, Source, SourcesError, discover, load_sources, poll
from tests.conftest import FIXTURES
from tests.webserver import Reply, WebServer

FEEDS = FIXTURES / "feeds"
RSS_URL = "https://news.example.org/world/rss.xml"
ATOM_URL = "https://akhbar.example.net/economy/atom.xml"
INDEX_URL = "https://news.example.org/sitemap.xml"
LIMIT = Settings().max_entries_per_poll


def feed_text(name: str) -> str:
    return (FEEDS / name).read_text(encoding="utf-8")


class Web:
    """get_text over a dict of URL -> text, remembering what was asked."""

    def __init__(self, pages: dict[str, str]) -> None:
        self.pages = pages
        self.asked: list[str] = []

    def __call__(self, url: str) -> str:
        self.asked.append(url)
        if url not in self.pages:
            raise LookupError(f"404 Not Found: {url}")
        return self.pages[url]


class MemoryClaims:
    """The store's claim: the keys never claimed before, remembered per source."""

    def __init__(self) -> None:
        self.claimed: dict[str, set[str]] = {}

    def claim_entries(self, source: str, keys: list[str]) -> list[str]:
        seen = self.claimed.setdefault(source, set())
        new = [k for k in dict.fromkeys(keys) if k not in seen]
        seen.update(new)
        return new

    def release_entries(self, source: str, keys: list[str]) -> None:
        self.claimed.get(source, set()).difference_update(keys)

    def mark_sent(self, source: str, keys: list[str]) -> None:
        pass  # a memory claim is never given out again anyway


class Queue:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[Entry]]] = []

    def __call__(self, source: Source, entries: list[Entry]) -> None:
        self.calls.append((source.name, entries))

    @property
    def locations(self) -> list[str]:
        return [e.location for _, entries in self.calls for e in entries]


def local_fetching(web: WebServer) -> Settings:
    return Settings(fetch_allow_hosts=f"127.0.0.1:{web.port}", host_interval=0, fetch_retries=0)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# The sources file.


def test_load_sources_reads_every_kind_with_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path / "sources.toml",
        """
[[source]]
name = "wire"
kind = "feed"
location = "https://news.example.org/world/rss.xml"
interval = 600

[[source]]
name = "أخبار"
kind = "sitemap"
location = " https://akhbar.example.net/sitemap.xml "
interval = 12.5

[[source]]
name = "inbox"
kind = "folder"
location = "incoming/today"
""",
    )
    assert load_sources(path) == [
        Source("wire", "feed", "https://news.example.org/world/rss.xml", 600.0),
        Source("أخبار", "sitemap", "https://akhbar.example.net/sitemap.xml", 12.5),
        # Relative to the sources file, not to wherever the worker runs.
        Source("inbox", "folder", str(tmp_path / "incoming" / "today"), 900.0),
    ]


def test_an_empty_sources_file_has_no_sources(tmp_path: Path) -> None:
    assert load_sources(write(tmp_path / "sources.toml", "# nothing yet\n")) == []


def test_a_missing_sources_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SourcesError, match=r"nope\.toml: sources file not found"):
        load_sources(tmp_path / "nope.toml")


GOOD = 'name = "wire"\nkind = "feed"\nlocation = "https://news.example.org/rss.xml"\n'


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[[source]\nname = 1", r"invalid TOML: .*line 1"),
        ("[[sources]]\n" + GOOD, r"unknown top-level key 'sources'; sources are \[\[source\]\] tables"),
        ('source = "wire"', r"'source' must be an array of tables"),
        ("source = [1]", r"source #1: must be a table"),
        ('[[source]]\nkind = "feed"\nlocation = "https://a.example/rss"', r"source #1: 'name' is required"),
        ("[[source]]\n" + GOOD.replace('"wire"', '"  "'), r"source #1 \('  '\): 'name' is required"),
        ("[[source]]\n" + GOOD.replace('"wire"', '" wire"'), r"source #1 \(' wire'\): 'name' must not have"),
        ("[[source]]\n" + GOOD.replace('"wire"', '"a\\tb"'), r"'name' must not have surrounding spaces or control"),
        ("[[source]]\n" + GOOD + "\n[[source]]\n" + GOOD, r"source #2 \('wire'\): the name is already used"),
        (
            "[[source]]\n" + GOOD.replace('"feed"', '"podcast"'),
            r"'wire'\): 'kind' must be one of feed, sitemap, folder",
        ),
        ('[[source]]\nname = "wire"\nkind = "feed"', r"'wire'\): 'location' is required"),
        ("[[source]]\n" + GOOD.replace("https://", "ftp://"), r"'location' of a feed must be an http\(s\) URL"),
        (
            '[[source]]\nname = "s"\nkind = "sitemap"\nlocation = "sitemap.xml"',
            r"of a sitemap must be an http\(s\) URL",
        ),
        ("[[source]]\n" + GOOD + "intervall = 60\n", r"'wire'\): unknown key 'intervall'"),
        ("[[source]]\n" + GOOD + "interval = true\n", r"'interval' must be a number of seconds, got True"),
        ("[[source]]\n" + GOOD + 'interval = "15m"\n', r"'interval' must be a number of seconds, got '15m'"),
        ("[[source]]\n" + GOOD + "interval = inf\n", r"'interval' must be a number of seconds, got inf"),
        ("[[source]]\n" + GOOD + "interval = 9.5\n", r"'interval' must be at least 10 seconds, got 9\.5"),
    ],
)
def test_every_problem_of_the_sources_file_is_named(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path / "sources.toml", text)
    with pytest.raises(SourcesError, match=problem) as raised:
        load_sources(path)
    assert str(raised.value).startswith(f"{path}: ")  # the file, then the source, then the problem


# Feeds.


def test_rss_feed_entries_have_absolute_links_titles_and_utc_dates() -> None:
    entries = discover(Source("wire", "feed", RSS_URL, 900), Web({RSS_URL: feed_text("rss_en.xml")}))
    assert entries == [
        Entry(
            key="https://news.example.org/world/2024/05/01/ports-reopen",
            location="https://news.example.org/world/2024/05/01/ports-reopen",
            title="Ports reopen after week-long strike",  # the first of the two items with this link
            published="2024-05-01T08:00:00+00:00",
        ),
        Entry(
            key="https://news.example.org/world/2024/05/01/grain-prices",  # relative link, resolved
            location="https://news.example.org/world/2024/05/01/grain-prices",
            title="Grain prices ease as shipping resumes",
            published="2024-05-01T09:15:00+00:00",
        ),
    ]  # the item without a link has no page to fetch


def test_arabic_atom_feed() -> None:
    entries = discover(Source("akhbar", "feed", ATOM_URL, 900), Web({ATOM_URL: feed_text("atom_ar.xml")}))
    assert [(e.title, e.published) for e in entries] == [
        ("البنك المركزي يثبت أسعار الفائدة للمرة الثالثة", "2024-05-02T04:30:00+00:00"),  # published, not updated
        ("ارتفاع صادرات التمور بنسبة ١٢٪", "2024-05-01T18:00:00+00:00"),  # updated when nothing else
    ]
    assert entries[0].key == entries[0].location
    assert entries[1].location == "https://akhbar.example.net/economy/2024/05/01/dates-exports"  # not the image


def test_text_already_decoded_keeps_its_arabic_whatever_the_declaration_says() -> None:
    text = feed_text("atom_ar.xml").replace('encoding="utf-8"', 'encoding="windows-1256"')
    entries = discover(Source("akhbar", "feed", ATOM_URL, 900), Web({ATOM_URL: text}))
    assert entries[1].title == "ارتفاع صادرات التمور بنسبة ١٢٪"


def test_broken_xml_in_a_feed_is_read_leniently() -> None:
    text = feed_text("rss_en.xml").replace("Grain prices ease", "Grain & oil prices ease")  # a bare &
    entries = discover(Source("wire", "feed", RSS_URL, 900), Web({RSS_URL: text}))
    assert [e.title for e in entries][1] == "Grain & oil prices ease as shipping resumes"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("<!doctype html><html><body><p>Welcome</p></body></html>", "not an RSS or Atom feed"),
        ("", "not an RSS or Atom feed"),
        # feedparser opens a str that names a file or URL: the text must be read as data, never as a name.
        (str(FEEDS / "rss_en.xml"), "not an RSS or Atom feed"),
    ],
)
def test_what_is_not_a_feed_is_an_error(text: str, problem: str) -> None:
    with pytest.raises(SourcesError, match=f"source 'wire': feed {RSS_URL}: {problem}"):
        discover(Source("wire", "feed", RSS_URL, 900), Web({RSS_URL: text}))


# Sitemaps.


def news_site() -> Web:
    return Web(
        {
            INDEX_URL: feed_text("sitemap_index.xml"),
            "https://news.example.org/sitemaps/pages.xml": feed_text("sitemap_pages.xml"),
            "https://news.example.org/sitemaps/news.xml": feed_text("sitemap_news.xml"),
            "https://news.example.org/sitemaps/2019-01.xml": feed_text("sitemap_pages.xml").replace("2024", "2019"),
        }
    )


def test_sitemap_index_reads_its_urlsets_and_news_sitemaps_newest_first(caplog: pytest.LogCaptureFixture) -> None:
    web = news_site()
    with caplog.at_level(logging.WARNING, logger="docsieve.sources"):
        entries = discover(Source("wire-map", "sitemap", INDEX_URL, 900), web)
    assert web.asked == [
        INDEX_URL,
        "https://news.example.org/sitemaps/news.xml",  # most recently modified first
        "https://news.example.org/sitemaps/pages.xml",
        "https://news.example.org/sitemaps/2019-01.xml",
        "https://news.example.org/sitemaps/missing.xml",  # no lastmod: last
    ]
    by_key = {e.key: e for e in entries}
    assert by_key["https://news.example.org/world/2024/05/01/grain-prices"] == Entry(
        "https://news.example.org/world/2024/05/01/grain-prices",
        "https://news.example.org/world/2024/05/01/grain-prices",
        title="Grain prices ease as shipping resumes",
        published="2024-05-01T09:15:00+00:00",
    )
    tamr = by_key["https://news.example.org/ar/2024/05/01/tamr"]
    assert (tamr.title, tamr.published) == ("ارتفاع صادرات التمور", "2024-05-01T18:00:00+03:00")  # news date wins
    ports = by_key["https://news.example.org/world/2024/05/01/ports-reopen"]
    assert (ports.title, ports.published) == (None, "2024-05-01T10:05:00+02:00")
    assert by_key["https://news.example.org/about"].published == "2023-11-20T00:00:00+00:00"
    assert by_key["https://news.example.org/world/2024/04/30/elections"].published is None
    assert "https://news.example.org/world/2019/05/01/ports-reopen" in by_key
    assert not any(key.startswith("ftp:") or key.endswith(".xml") for key in by_key)  # no page, no <loc>: skipped
    assert len(entries) == len(by_key) == 7  # the 2019 archive repeats /about: listed once
    # A child that cannot be fetched is skipped, and said so; it is tried again at the next poll.
    assert "skipped child sitemap https://news.example.org/sitemaps/missing.xml: 404 Not Found" in caplog.text


def index(*children: str) -> str:
    items = "".join(f"<sitemap><loc>{c}</loc></sitemap>" for c in children)
    return f'<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{items}</sitemapindex>'


def urlset(*pages: str) -> str:
    items = "".join(f"<url><loc>{p}</loc></url>" for p in pages)
    return f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{items}</urlset>'


def test_sitemap_index_depth_and_child_count_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    base = "https://deep.example/"
    web = Web(
        {
            base + "0.xml": index(base + "1.xml", base + "0.xml", base + "a.xml"),  # itself: a loop
            base + "1.xml": index(base + "2.xml"),
            base + "2.xml": index(base + "3.xml"),  # the third level: its children are not read
            base + "3.xml": urlset(base + "too-deep"),
            base + "a.xml": urlset(base + "page-a"),
        }
    )
    entries = discover(Source("deep", "sitemap", base + "0.xml", 900), web)
    assert [e.key for e in entries] == [base + "page-a"]
    assert web.asked == [base + "0.xml", base + "1.xml", base + "a.xml", base + "2.xml"]

    monkeypatch.setattr(sources, "MAX_CHILD_SITEMAPS", 2)
    web = news_site()
    discover(Source("wire-map", "sitemap", INDEX_URL, 900), web)
    assert web.asked == [
        INDEX_URL,
        "https://news.example.org/sitemaps/news.xml",
        "https://news.example.org/sitemaps/pages.xml",
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("<urlset><url><loc>https://a.example/x</loc></url>", r"not well-formed XML \(no element found: line 1"),
        ("<html><body>Not found</body></html>", r"not a sitemap \(the root element is <html>\)"),
        ("", r"not well-formed XML"),
    ],
)
def test_what_is_not_a_sitemap_is_an_error(text: str, problem: str) -> None:
    with pytest.raises(SourcesError, match=f"source 'map': sitemap {INDEX_URL}: {problem}"):
        discover(Source("map", "sitemap", INDEX_URL, 900), Web({INDEX_URL: text}))


# Hostile XML: refused before anything is expanded or fetched, with a reason a person can act on.


@pytest.mark.parametrize("kind", ["feed", "sitemap"])
def test_billion_laughs_is_refused(kind: str) -> None:
    started = time.monotonic()
    with pytest.raises(SourcesError) as raised:
        discover(Source("evil", kind, RSS_URL, 900), Web({RSS_URL: feed_text("billion_laughs.xml")}))
    assert str(raised.value) == (
        f"source 'evil': {kind} {RSS_URL}: refused: the document declares the XML entity 'lol'; entity "
        "declarations (entity expansion, 'billion laughs', external entities) are not accepted"
    )
    assert raised.value.__cause__ is None and raised.value.__suppress_context__  # no parser traceback
    assert time.monotonic() - started < 1


@pytest.mark.parametrize("kind", ["feed", "sitemap"])
def test_external_entities_are_refused(kind: str) -> None:
    with pytest.raises(SourcesError, match="declares the XML entity 'secret' pointing at file:///etc/passwd"):
        discover(Source("evil", kind, RSS_URL, 900), Web({RSS_URL: feed_text("external_entity.xml")}))


def test_a_hostile_child_sitemap_is_skipped_and_the_others_still_count(caplog: pytest.LogCaptureFixture) -> None:
    web = news_site()
    web.pages["https://news.example.org/sitemaps/pages.xml"] = feed_text("billion_laughs.xml")
    with caplog.at_level(logging.WARNING, logger="docsieve.sources"):
        entries = discover(Source("wire-map", "sitemap", INDEX_URL, 900), web)
    assert "https://news.example.org/ar/2024/05/01/tamr" in {e.key for e in entries}
    assert "child sitemap https://news.example.org/sitemaps/pages.xml: refused" in caplog.text


def test_fetch_errors_of_the_source_itself_pass_through() -> None:
    with pytest.raises(LookupError, match="404"):
        discover(Source("wire", "feed", RSS_URL, 900), Web({}))


# Folders.


def test_folder_lists_supported_article_files_and_an_edited_file_is_new(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "sub").mkdir(parents=True)
    (inbox / ".git").mkdir()
    names = ("a.txt", "sub/b.md", "sub/c.json", "sub/e.JSONL.gz", ".hidden.txt", "README.md", "photo.png", "f.tar.gz")
    for name in (*names, ".git/d.txt"):
        write(inbox / name, f"text of {name}\n")
    source = Source("inbox", "folder", str(inbox), 60)

    first = discover(source, Web({}))
    assert [e.location for e in first] == [
        str(inbox / name) for name in ("a.txt", "sub/b.md", "sub/c.json", "sub/e.JSONL.gz")
    ]
    stat = os.stat(inbox / "a.txt")
    assert first[0] == Entry(f"{inbox / 'a.txt'}@{stat.st_mtime_ns}:{stat.st_size}", str(inbox / "a.txt"))
    assert discover(source, Web({})) == first  # unchanged files: the same keys

    write(inbox / "a.txt", "text of a.txt, corrected\n")
    os.utime(inbox / "a.txt", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    second = discover(source, Web({}))
    assert second[0].key != first[0].key
    assert second[1:] == first[1:]


def test_a_watched_folder_a_thousand_levels_deep_is_listed_in_order(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    deep = inbox
    for level in range(1001):  # one by one: mkdir(parents=True) recurses too
        deep.mkdir()
        if level == 500:
            write(deep / "middle.txt", "half way down\n")
        deep = deep / "d"
    deep = deep.parent
    write(deep / "bottom.txt", "the bottom\n")
    write(inbox / "z.txt", "at the top\n")
    (inbox / "linked.txt").symlink_to(inbox / "d")  # a link to a folder, however it is named: not an entry
    try:
        found = discover(Source("inbox", "folder", str(inbox), 60), Web({}))
    finally:  # bottom up: pytest's own clean-up (shutil.rmtree) recurses, and fails this deep
        while deep != inbox:
            for file in deep.glob("*.txt"):
                file.unlink()
            deep.rmdir()
            deep = deep.parent
    assert [Path(e.location).name for e in found] == ["z.txt", "middle.txt", "bottom.txt"]


def test_a_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SourcesError, match=f"source 'inbox': folder {tmp_path / 'gone'} does not exist"):
        discover(Source("inbox", "folder", str(tmp_path / "gone"), 60), Web({}))


# Polls.


def test_polling_twice_enqueues_each_entry_once() -> None:
    web = Web({RSS_URL: feed_text("rss_en.xml")})
    source = Source("wire", "feed", RSS_URL, 900)
    claims, queue = MemoryClaims(), Queue()

    assert poll(source, web, claims, queue, limit=LIMIT) == PollResult(found=2, new=2)
    assert poll(source, web, claims, queue, limit=LIMIT) == PollResult(found=2, new=0)
    assert len(queue.calls) == 1  # nothing enqueued when nothing is new

    item = "<item><title>New</title><link>https://news.example.org/world/new</link></item>"
    web.pages[RSS_URL] = web.pages[RSS_URL].replace("<item>", item + "<item>", 1)
    assert poll(source, web, claims, queue, limit=LIMIT) == PollResult(found=3, new=1)
    assert queue.locations == [
        "https://news.example.org/world/2024/05/01/ports-reopen",
        "https://news.example.org/world/2024/05/01/grain-prices",
        "https://news.example.org/world/new",
    ]


def test_entries_that_could_not_be_sent_are_sent_by_the_next_poll() -> None:
    web = Web({RSS_URL: feed_text("rss_en.xml")})
    source = Source("wire", "feed", RSS_URL, 900)
    claims, queue = MemoryClaims(), Queue()

    def broker_down(source: Source, entries: list[Entry]) -> None:
        raise ConnectionError("broker unreachable")

    with pytest.raises(ConnectionError):
        poll(source, web, claims, broker_down, limit=LIMIT)
    assert poll(source, web, claims, queue, limit=LIMIT) == PollResult(found=2, new=2)


def test_claims_are_per_source_and_in_batches(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sources, "CLAIM_BATCH", 2)
    for n in range(5):
        write(tmp_path / f"{n}.txt", f"article {n}\n")
    claims, queue = MemoryClaims(), Queue()
    source = Source("inbox", "folder", str(tmp_path), 60)
    assert poll(source, Web({}), claims, queue, limit=LIMIT) == PollResult(found=5, new=5)
    assert [len(entries) for _, entries in queue.calls] == [2, 2, 1]
    assert poll(source, Web({}), claims, queue, limit=LIMIT) == PollResult(found=5, new=0)
    # The same files under another source's name are that source's news.
    assert poll(Source("copy", "folder", str(tmp_path), 60), Web({}), claims, queue, limit=LIMIT).new == 5


def test_a_poll_enqueues_at_most_its_limit_and_the_next_polls_go_on_from_there(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sources, "CLAIM_BATCH", 4)  # the limit falls inside a claim
    base = "https://big.example/"
    children = [f"{base}{c}.xml" for c in range(3)]
    pages = [[f"{base}{c}/{n}" for n in range(10)] for c in range(3)]
    web = Web(
        {base + "index.xml": index(*children)} | {child: urlset(*p) for child, p in zip(children, pages, strict=True)}
    )
    source = Source("big", "sitemap", base + "index.xml", 900)
    claims, queue = MemoryClaims(), Queue()

    assert poll(source, web, claims, queue, limit=7) == PollResult(found=8, new=7)
    assert queue.locations == pages[0][:7]
    assert web.asked == [base + "index.xml", children[0]]  # no child read past the limit
    assert [poll(source, web, claims, queue, limit=7).new for _ in range(4)] == [7, 7, 7, 2]
    assert queue.locations == pages[0] + pages[1] + pages[2]  # each once, in the sitemap's order
    assert web.asked.count(children[2]) == 3  # reached by the third poll
    assert poll(source, web, claims, queue, limit=7) == PollResult(found=30, new=0)


def test_polling_over_http_with_the_real_fetcher() -> None:
    """An Arabic feed in windows-1256 (declared only in the document) and a sitemap index, fetched."""
    from docsieve.fetch import Fetcher

    legacy = feed_text("atom_ar.xml").replace('encoding="utf-8"', 'encoding="windows-1256"')
    atom = legacy.encode("cp1256", "xmlcharrefreplace")  # the Arabic-Indic digits are not in windows-1256
    xml = {"Content-Type": "application/xml"}
    with WebServer() as web, Fetcher(local_fetching(web)) as fetcher:
        web.route("/atom.xml", Reply(200, {"Content-Type": "application/atom+xml"}, atom))
        web.route("/sitemaps/news.xml", Reply(200, xml, feed_text("sitemap_news.xml").encode()))
        web.route("/sitemaps/pages.xml", Reply(200, xml, feed_text("sitemap_pages.xml").encode()))
        index = feed_text("sitemap_index.xml").replace("https://news.example.org", web.url("").rstrip("/"))
        web.route("/sitemap.xml", Reply(200, xml, index.encode()))
        claims, queue = MemoryClaims(), Queue()

        feed = Source("akhbar", "feed", web.url("/atom.xml"), 900)
        assert poll(feed, fetcher.get_text, claims, queue, limit=LIMIT) == PollResult(found=2, new=2)
        assert [e.title for e in queue.calls[0][1]][1] == "ارتفاع صادرات التمور بنسبة ١٢٪"

        sitemap = Source("wire-map", "sitemap", web.url("/sitemap.xml"), 900)
        assert poll(sitemap, fetcher.get_text, claims, queue, limit=LIMIT) == PollResult(found=5, new=5)
        assert poll(sitemap, fetcher.get_text, claims, queue, limit=LIMIT) == PollResult(found=5, new=0)
        assert len(web.hits("/sitemaps/missing.xml")) == 2  # a 404 child: skipped, tried again next poll
