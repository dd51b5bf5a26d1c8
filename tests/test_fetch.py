"""The fetcher against a real local HTTP server: redirects, conditional GET, retries, limits, charsets, robots.txt,
the per-host rate limit and the SSRF guard (which never lets a test connect beyond this machine)."""

from __future__ import annotations

import ipaddress
import itertools
import pickle
import re
import socket
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from docsieve import fetch as fetch_module
from docsieve.fetch import FEED_TYPES, Fetcher, FetchError, NoSuchName, blocked_reason
from docsieve.models import Rejection
from docsieve.politeness import MemoryRateLimiter
from docsieve.settings import Settings, SettingsError
from docsieve.urls import canonicalize
from docsieve.web import Unreachable, fetch_page
from tests.webserver import Reply, Request, TrickleRelay, WebServer, dribble

PAGES = Path(__file__).parent / "fixtures" / "pages"
HTML = {"Content-Type": "text/html; charset=utf-8"}
MiB = 1 << 20


@pytest.fixture(autouse=True)
def connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every TCP connection attempt, recorded; one to an address beyond this machine fails without a packet sent."""
    attempts: list[tuple[str, int]] = []
    real_connect = socket.socket.connect

    def connect(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append((address[0], address[1]))
            if not ipaddress.ip_address(address[0]).is_loopback:
                raise ConnectionRefusedError(f"test: no connection to {address[0]} from here")
        real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return attempts


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch_module, "BACKOFF_BASE", 0.05)


@pytest.fixture
def web() -> Iterator[WebServer]:
    with WebServer() as server:
        yield server


def make_fetcher(
    *servers: WebServer | TrickleRelay, robots: bool = False, limiter: MemoryRateLimiter | None = None, **settings: Any
) -> Fetcher:
    """The test servers (127.0.0.1, each on its port) allowed, no rate limit, no retries, unless said otherwise."""
    allow = ",".join(f"127.0.0.1:{server.port}" for server in servers)
    values: dict[str, Any] = {"fetch_allow_hosts": allow, "host_interval": 0.0, "fetch_retries": 0}
    return Fetcher(Settings(**(values | settings)), limiter=limiter, robots=robots)


@pytest.fixture
def fetcher(web: WebServer) -> Iterator[Fetcher]:
    with make_fetcher(web) as f:
        yield f


def fetch_error(fetcher: Fetcher, url: str, **kwargs: Any) -> FetchError:
    with pytest.raises(FetchError) as caught:
        fetcher.fetch(url, **kwargs)
    return caught.value


# --- redirects ---


def test_redirect_chain_is_followed_and_the_final_url_recorded(web: WebServer, fetcher: Fetcher) -> None:
    web.route("/a", Reply(301, {"Location": "/b"}))
    web.route("/b", Reply(302, {"Location": web.url("/c?id=7&utm_source=feed#top")}))
    web.route("/c", Reply(200, HTML, b"<p>the article</p>"))
    got = fetcher.fetch(web.url("/a?utm_medium=email"))
    assert got.status == 200 and got.text == "<p>the article</p>" and got.content_type == "text/html"
    assert got.url == web.url("/a")
    assert got.final_url == web.url("/c?id=7")
    assert [r.path for r in web.requests] == ["/a", "/b", "/c?id=7"]


def test_redirect_loop_is_refused(web: WebServer, fetcher: Fetcher) -> None:
    web.route("/one", Reply(302, {"Location": "/two"}))
    web.route("/two", Reply(301, {"Location": "/one"}))
    error = fetch_error(fetcher, web.url("/one"))
    assert "redirect loop" in str(error) and not error.transient


def test_too_many_redirects_are_refused(web: WebServer) -> None:
    for i in range(10):
        web.route(f"/r{i}", Reply(302, {"Location": f"/r{i + 1}"}))
    with make_fetcher(web, fetch_max_redirects=3) as fetcher:
        error = fetch_error(fetcher, web.url("/r0"))
    assert "too many redirects" in str(error) and not error.transient
    assert len(web.requests) == 4  # the first request and three redirects


def test_redirect_to_another_scheme_is_refused(web: WebServer, fetcher: Fetcher) -> None:
    web.route("/a", Reply(302, {"Location": "file:///etc/passwd"}))
    error = fetch_error(fetcher, web.url("/a"))
    assert "file" in str(error) and not error.transient


# --- conditional GET ---


def test_if_none_match_gives_304(web: WebServer, fetcher: Fetcher) -> None:
    def page(request: Request) -> Reply:
        if request.headers.get("If-None-Match") == '"v1"':
            return Reply(304, {"ETag": '"v1"'})
        return Reply(200, HTML | {"ETag": '"v1"', "Last-Modified": "Tue, 12 Mar 2024 18:40:00 GMT"}, b"<p>x</p>")

    web.route("/page", page)
    first = fetcher.fetch(web.url("/page"))
    assert (first.status, first.etag, first.not_modified) == (200, '"v1"', False)
    assert first.last_modified == "Tue, 12 Mar 2024 18:40:00 GMT"
    again = fetcher.fetch(web.url("/page"), etag=first.etag)
    assert again.not_modified and again.status == 304 and again.text is None
    assert again.etag == '"v1"' and again.final_url == web.url("/page")


def test_if_modified_since_gives_304(web: WebServer, fetcher: Fetcher) -> None:
    stamp = "Tue, 12 Mar 2024 18:40:00 GMT"

    def page(request: Request) -> Reply:
        if request.headers.get("If-Modified-Since") == stamp:
            return Reply(304)
        return Reply(200, HTML | {"Last-Modified": stamp}, b"<p>x</p>")

    web.route("/page", page)
    again = fetcher.fetch(web.url("/page"), last_modified=fetcher.fetch(web.url("/page")).last_modified)
    assert again.not_modified and again.text is None and again.last_modified == stamp


# --- timeouts and retries ---


def test_slow_answer_beyond_the_read_timeout_is_transient(web: WebServer) -> None:
    web.route("/slow", Reply(200, HTML, b"late", delay=1.0))
    with make_fetcher(web, fetch_read_timeout=0.2) as fetcher:
        error = fetch_error(fetcher, web.url("/slow"))
    assert error.transient and "no answer" in str(error)


def test_503_then_200_is_retried(web: WebServer) -> None:
    web.route("/flaky", Reply(503), Reply(200, HTML, b"<p>ok</p>"))
    with make_fetcher(web, fetch_retries=2) as fetcher:
        assert fetcher.fetch(web.url("/flaky")).text == "<p>ok</p>"
    assert len(web.hits("/flaky")) == 2


def test_retries_exhausted_is_transient(web: WebServer) -> None:
    web.route("/down", Reply(503))
    with make_fetcher(web, fetch_retries=2) as fetcher:
        error = fetch_error(fetcher, web.url("/down"))
    assert error.transient and error.status == 503 and "503" in str(error)
    assert len(web.hits("/down")) == 3


@pytest.mark.slow
def test_429_retry_after_is_honoured(web: WebServer) -> None:
    web.route("/busy", Reply(429, {"Retry-After": "1"}), Reply(200, HTML, b"<p>ok</p>"))
    with make_fetcher(web, fetch_retries=1) as fetcher:
        assert fetcher.fetch(web.url("/busy")).text == "<p>ok</p>"
    first, second = web.hits("/busy")
    assert second.at - first.at >= 0.95


def test_hostile_retry_after_is_not_waited_for(web: WebServer) -> None:
    web.route("/busy", Reply(429, {"Retry-After": "86400"}))
    with make_fetcher(web, fetch_retries=3) as fetcher:
        error = fetch_error(fetcher, web.url("/busy"))
    assert error.transient and error.status == 429 and "86400" in str(error)
    assert len(web.hits("/busy")) == 1


def test_client_error_is_permanent_and_not_retried(web: WebServer) -> None:
    with make_fetcher(web, fetch_retries=3) as fetcher:
        error = fetch_error(fetcher, web.url("/missing"))
    assert not error.transient and error.status == 404 and "404" in str(error)
    assert len(web.requests) == 1


def test_unreachable_host_is_transient() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with make_fetcher(fetch_allow_hosts=f"127.0.0.1:{port}") as fetcher:
        error = fetch_error(fetcher, f"http://127.0.0.1:{port}/")
    assert error.transient and "cannot connect" in str(error)


# --- size limits ---


def test_content_length_over_the_limit_is_refused_before_reading(web: WebServer) -> None:
    web.route("/big", Reply(200, HTML, b"x" * 200_000))
    with make_fetcher(web, fetch_max_bytes=100_000) as fetcher:
        error = fetch_error(fetcher, web.url("/big"))
    assert "Content-Length" in str(error) and not error.transient


def test_streamed_body_over_the_limit_is_cut_off(web: WebServer) -> None:
    web.route("/big", Reply(200, HTML, stream=lambda: (b"x" * 10_000 for _ in range(1000))))
    with make_fetcher(web, fetch_max_bytes=100_000) as fetcher:
        error = fetch_error(fetcher, web.url("/big"))
    assert "more than 100000 bytes" in str(error) and not error.transient


@cache
def gzip_bomb() -> bytes:
    """128 MiB of zeros, gzipped to about 130 KB."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    return b"".join(compressor.compress(bytes(MiB)) for _ in range(128)) + compressor.flush()


@cache
def brotli_bomb() -> bytes:
    """1 GiB of zeros, brotli-compressed to under a kilobyte."""
    import brotli

    compressor = brotli.Compressor(quality=5)
    return b"".join(compressor.process(bytes(MiB)) for _ in range(1024)) + compressor.finish()


@pytest.mark.slow
@pytest.mark.parametrize(("encoding", "bomb"), [("gzip", gzip_bomb), ("br", brotli_bomb)])
def test_decompression_bomb_stops_at_the_decoded_limit(web: WebServer, encoding: str, bomb: Any) -> None:
    web.route("/bomb", Reply(200, HTML | {"Content-Encoding": encoding}, bomb()))
    with make_fetcher(web, fetch_max_decoded_bytes=MiB) as fetcher:
        tracemalloc.start()
        try:
            error = fetch_error(fetcher, web.url("/bomb"))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert "decompresses to more than" in str(error) and not error.transient
    assert peak < 32 * MiB  # the limit plus buffers, not the bomb's full size


def test_compressed_page_within_the_limits_is_decoded(web: WebServer, fetcher: Fetcher) -> None:
    page = (PAGES / "en_article.html").read_bytes()
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    web.route("/page", Reply(200, HTML | {"Content-Encoding": "gzip"}, compressor.compress(page) + compressor.flush()))
    assert fetcher.fetch(web.url("/page")).text == page.decode("utf-8")


# --- content type and charset ---


def test_unaccepted_content_type_is_refused(web: WebServer, fetcher: Fetcher) -> None:
    web.route("/doc.pdf", Reply(200, {"Content-Type": "application/pdf"}, b"%PDF-1.7"))
    error = fetch_error(fetcher, web.url("/doc.pdf"))
    assert "application/pdf" in str(error) and not error.transient


def test_get_text_takes_feeds_and_refuses_html(web: WebServer, fetcher: Fetcher) -> None:
    rss = b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title></channel></rss>'
    web.route("/feed", Reply(200, {"Content-Type": "application/rss+xml"}, rss))
    web.route("/page", Reply(200, HTML, b"<p>not a feed</p>"))
    assert fetcher.get_text(web.url("/feed")) == rss.decode()
    with pytest.raises(FetchError, match="text/html"):
        fetcher.get_text(web.url("/page"))
    assert "text/html" not in FEED_TYPES


def test_charset_from_the_header(web: WebServer, fetcher: Fetcher) -> None:
    page = (PAGES / "ar_article.html").read_bytes()
    web.route("/ar", Reply(200, HTML, page))
    assert fetcher.fetch(web.url("/ar")).text == page.decode("utf-8")


def test_charset_from_meta_when_the_header_has_none(web: WebServer, fetcher: Fetcher) -> None:
    utf8 = (PAGES / "ar_article.html").read_bytes()  # <meta charset="utf-8">
    legacy = (
        (PAGES / "ar_article_windows1256.html")
        .read_bytes()
        .replace(b"<head>", b'<head><meta http-equiv="Content-Type" content="text/html; charset=windows-1256">', 1)
    )
    web.route("/utf8", Reply(200, {"Content-Type": "text/html"}, utf8))
    web.route("/legacy", Reply(200, {"Content-Type": "text/html"}, legacy))
    assert fetcher.fetch(web.url("/utf8")).text == utf8.decode("utf-8")
    assert fetcher.fetch(web.url("/legacy")).text == legacy.decode("cp1256")


def test_charset_detected_when_nothing_declares_it(web: WebServer, fetcher: Fetcher) -> None:
    page = (PAGES / "ar_article_windows1256.html").read_bytes()
    web.route("/ar", Reply(200, {"Content-Type": "text/html"}, page))
    text = fetcher.fetch(web.url("/ar")).text
    assert text == page.decode("cp1256")
    assert "ارتفاع أسعار الخضار" in text


@pytest.mark.parametrize(
    ("page", "declared", "encoding"),
    [
        ("ar_article_windows1256.html", "utf-8", "cp1256"),  # not UTF-8 at all: detected
        ("ar_article.html", "iso-8859-1", "utf-8"),  # decodes as Latin-1, but it is valid UTF-8
        ("ar_article.html", "x-no-such-charset", "utf-8"),
    ],
)
def test_wrong_header_charset_falls_back(
    web: WebServer, fetcher: Fetcher, page: str, declared: str, encoding: str
) -> None:
    body = (PAGES / page).read_bytes()
    web.route("/page", Reply(200, {"Content-Type": f"text/html; charset={declared}"}, body))
    assert fetcher.fetch(web.url("/page")).text == body.decode(encoding)


# --- robots.txt ---


def test_robots_disallow_is_obeyed_and_robots_fetched_once(web: WebServer) -> None:
    # The group naming docsieve is the one that applies to it, not the "*" one.
    robots = b"User-agent: *\nDisallow: /\n\nUser-agent: docsieve\nDisallow: /private\nDisallow: /no-bots\n"
    web.route("/robots.txt", Reply(200, {"Content-Type": "text/plain"}, robots))
    web.route("/news", Reply(200, HTML, b"<p>news</p>"))
    with make_fetcher(web, robots=True) as fetcher:
        for _ in range(3):
            assert fetcher.fetch(web.url("/news")).text == "<p>news</p>"
        for path in ("/private/page", "/no-bots"):
            error = fetch_error(fetcher, web.url(path))
            assert "disallowed by robots.txt" in str(error) and not error.transient
    assert len(web.hits("/robots.txt")) == 1
    assert not web.hits("/private/page") and not web.hits("/no-bots")


def test_robots_disallow_applies_to_a_redirect_target(web: WebServer) -> None:
    web.route("/robots.txt", Reply(200, {"Content-Type": "text/plain"}, b"User-agent: *\nDisallow: /private\n"))
    web.route("/go", Reply(302, {"Location": "/private/page"}))
    with make_fetcher(web, robots=True) as fetcher:
        assert "disallowed by robots.txt" in str(fetch_error(fetcher, web.url("/go")))
    assert not web.hits("/private/page")


def test_missing_robots_allows_everything(web: WebServer) -> None:
    web.route("/news", Reply(200, HTML, b"<p>news</p>"))
    with make_fetcher(web, robots=True) as fetcher:
        assert fetcher.fetch(web.url("/news")).status == 200
    assert len(web.hits("/robots.txt")) == 1


def test_robots_server_error_disallows_for_now(web: WebServer) -> None:
    web.route("/robots.txt", Reply(503))
    web.route("/news", Reply(200, HTML, b"<p>news</p>"))
    with make_fetcher(web, robots=True) as fetcher:
        for _ in range(2):
            error = fetch_error(fetcher, web.url("/news"))
            assert error.transient and "robots.txt" in str(error)
    assert len(web.hits("/robots.txt")) == 1  # the failure is remembered for a while
    assert not web.hits("/news")


# --- rate limit, headers, threads ---


class RecordingLimiter(MemoryRateLimiter):
    """The memory limiter, noting the host and the moment each wait ended (when the request could go out)."""

    def __init__(self, interval: float) -> None:
        super().__init__(interval)
        self.released: list[tuple[str, float]] = []

    def wait(self, host: str) -> None:
        super().wait(host)
        self.released.append((host, time.monotonic()))


@pytest.mark.slow
def test_requests_to_one_host_are_spaced_by_the_interval(web: WebServer) -> None:
    web.route("/news", Reply(200, HTML, b"<p>news</p>"))
    limiter = RecordingLimiter(0.2)
    with make_fetcher(web, robots=True, limiter=limiter) as fetcher:
        for _ in range(3):
            fetcher.fetch(web.url("/news"))
    assert [r.path for r in web.requests] == ["/robots.txt", "/news", "/news", "/news"]  # robots counts too
    assert [host for host, _ in limiter.released] == ["127.0.0.1"] * 4  # one wait per request
    released = [moment for _, moment in limiter.released]
    assert all(later - earlier >= 0.15 for earlier, later in itertools.pairwise(released))  # less a thread wake-up
    # On the server's side too, give or take the scheduling of its threads.
    arrivals = [r.at for r in web.requests]
    assert all(later - earlier >= 0.1 for earlier, later in itertools.pairwise(arrivals))


def test_user_agent_and_accept_are_sent(web: WebServer) -> None:
    web.route("/news", Reply(200, HTML, b"<p>news</p>"))
    with make_fetcher(web, user_agent="docsieve-test/1.0") as fetcher:
        fetcher.fetch(web.url("/news"))
    headers = web.requests[0].headers
    assert headers["User-Agent"] == "docsieve-test/1.0"
    assert "text/html" in headers["Accept"]


def test_one_fetcher_serves_many_threads(web: WebServer) -> None:
    for i in range(32):
        web.route(f"/p{i}", Reply(200, HTML | {"Set-Cookie": f"s={i}"}, f"<p>{i}</p>".encode()))
    results: dict[int, str | None] = {}
    with make_fetcher(web, fetch_concurrency=8) as fetcher:

        def work(i: int) -> None:
            results[i] = fetcher.fetch(web.url(f"/p{i}")).text

        threads = [threading.Thread(target=work, args=(i,)) for i in range(32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert results == {i: f"<p>{i}</p>" for i in range(32)}
    assert not any("Cookie" in r.headers for r in web.requests)  # no cookie carried between requests


def test_fetch_error_survives_pickling() -> None:
    error = pickle.loads(pickle.dumps(FetchError("HTTP 503", transient=True, status=503)))
    assert (str(error), error.transient, error.status) == ("HTTP 503", True, 503)


# --- SSRF ---


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/", "loopback"),
        ("http://localhost./", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://[fd00:ec2::254]/", "cloud metadata"),
        ("http://[::1]/", "loopback"),
        ("http://2130706433/", "loopback"),
        ("http://0177.0.0.1/", "loopback"),
        ("http://0x7f.1/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "IPv4-mapped address of 127.0.0.1"),
        ("http://[::127.0.0.1]/", "IPv4-compatible address of 127.0.0.1"),
        ("http://100.64.1.1/", "carrier-grade NAT"),
        ("http://[64:ff9b::a00:1]/", "NAT64 address of 10.0.0.1"),
        ("http://[64:ff9b:1::c0a8:101]/", "NAT64 address of 192.168.1.1"),
        ("http://[2002:c0a8:101::1]/", "6to4 address of 192.168.1.1"),
        ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "Teredo address of 192.0.2.45"),
        ("http://10.1.2.3/", "private"),
        ("http://172.16.0.1/", "private"),
        ("http://192.168.0.1:8080/", "private"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://[::]/", "unspecified"),
        ("http://[fe80::1]/", "link-local"),
        ("http://224.0.0.1/", "multicast"),
        ("http://255.255.255.255/", "broadcast"),
        ("http://240.0.0.1/", "reserved"),
        ("http://[fc00::1]/", "private"),
    ],
)
def test_internal_addresses_are_refused(url: str, reason: str, connections: list[tuple[str, int]]) -> None:
    with make_fetcher(robots=True, fetch_allow_hosts="") as fetcher:
        error = fetch_error(fetcher, url)
    assert str(error).startswith("refused") or "refused:" in str(error)
    assert reason in str(error) and not error.transient
    assert connections == []


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700::1111", "64:ff9b::808:808", "2002:808:808::1"])
def test_public_addresses_pass(address: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("target", ["localhost", "127.0.0.2", "[::1]"])
def test_redirect_from_the_allowed_host_to_another_internal_address_is_refused(
    web: WebServer, fetcher: Fetcher, target: str
) -> None:
    # Only "127.0.0.1" is allowed; "localhost" reaches the very same server, under a name that is not allowed.
    web.route("/go", Reply(302, {"Location": f"http://{target}:{web.port}/secret"}))
    web.route("/secret", Reply(200, HTML, b"<p>secret</p>"))
    error = fetch_error(fetcher, web.url("/go"))
    assert "refused" in str(error) and target.strip("[]") in str(error) and not error.transient
    assert not web.hits("/secret")


def test_allowed_host_name_reaches_the_local_server(web: WebServer) -> None:
    web.route("/page", Reply(200, HTML, b"<p>ok</p>"))
    with make_fetcher(fetch_allow_hosts=f"localhost:{web.port}") as fetcher:
        assert fetcher.fetch(web.url("/page", host="localhost")).text == "<p>ok</p>"
        assert "refused" in str(fetch_error(fetcher, web.url("/page")))  # 127.0.0.1 itself is not allowed now


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_an_allowed_host_is_allowed_on_its_port_only(web: WebServer, host: str) -> None:
    web.route("/page", Reply(200, HTML, b"<p>ok</p>"))
    with WebServer() as other:  # another service of the same host
        other.route("/secret", Reply(200, HTML, b"<p>secret</p>"))
        web.route("/go", Reply(302, {"Location": other.url("/secret", host=host)}))
        with make_fetcher(fetch_allow_hosts=f"{host}:{web.port}") as fetcher:
            assert fetcher.fetch(web.url("/page", host=host)).text == "<p>ok</p>"
            error = fetch_error(fetcher, web.url("/go", host=host))
        assert not other.hits("/secret")
    refused = "127.0.0.1 is" if host == "127.0.0.1" else "localhost resolves to (127.0.0.1|::1),"
    allowed = rf"\(DOCSIEVE_FETCH_ALLOW_HOSTS allows {host} on other ports, not on {other.port}\)"
    assert re.fullmatch(f"refused: {refused} a loopback address {allowed}", str(error)) and not error.transient


@pytest.mark.parametrize(
    ("value", "pairs"),
    [
        ("localhost:8080", {("localhost", 8080)}),
        ("intranet.example", {("intranet.example", 80), ("intranet.example", 443)}),  # a bare host: 80 and 443
        ("[::1]:8080, 10.0.0.5:9200", {("::1", 8080), ("10.0.0.5", 9200)}),
        ("::1,[0:0::2]", {("::1", 80), ("::1", 443), ("::2", 80), ("::2", 443)}),
        ("LocalHost.:81", {("localhost", 81)}),  # as URLs are canonicalized
    ],
)
def test_allowed_hosts_are_host_and_port(value: str, pairs: set[tuple[str, int]]) -> None:
    assert Settings(fetch_allow_hosts=value).allowed_internal_hosts == pairs


@pytest.mark.parametrize(
    "entry", ["localhost:http", "localhost:0", "localhost:65536", "http://localhost:80", "[::x]:80"]
)
def test_an_allowed_host_that_is_no_host_and_port_is_an_error(entry: str) -> None:
    with pytest.raises(SettingsError, match=rf"DOCSIEVE_FETCH_ALLOW_HOSTS: '{re.escape(entry)}' is not a host or"):
        Settings.from_env({"DOCSIEVE_FETCH_ALLOW_HOSTS": f"localhost:8080,{entry}"})


def fake_dns(monkeypatch: pytest.MonkeyPatch, name: str, *answers: str) -> list[str]:
    """getaddrinfo answers `name` with the answers in turn (the last one repeats); other names as usual.
    Returns the list of answers given, one per lookup of `name`."""
    real = socket.getaddrinfo
    given: list[str] = []
    queue = list(answers)

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != name:
            return real(host, port, *args, **kwargs)
        address = queue.pop(0) if len(queue) > 1 else queue[0]
        given.append(address)
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sockaddr = (address, port, 0, 0) if family == socket.AF_INET6 else (address, port)
        return [(family, socket.SOCK_STREAM, 6, "", sockaddr)]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return given


def test_name_resolving_to_an_internal_address_is_refused(
    monkeypatch: pytest.MonkeyPatch, fetcher: Fetcher, connections: list[tuple[str, int]]
) -> None:
    fake_dns(monkeypatch, "intranet.example", "10.0.0.5")
    error = fetch_error(fetcher, "http://intranet.example/")
    assert str(error) == "refused: intranet.example resolves to 10.0.0.5, a private address"
    assert connections == []


def test_dns_rebinding_cannot_reach_the_internal_address(
    monkeypatch: pytest.MonkeyPatch, web: WebServer, connections: list[tuple[str, int]]
) -> None:
    # The name answers a public address first, then the local server's: a fetcher that checked one answer and
    # connected by name again would reach the server. This one connects to what it checked (which the test
    # fixture refuses, no packet leaving the machine), and on the retry refuses the new, internal answer.
    web.route("/", Reply(200, HTML, b"<p>internal</p>"))
    given = fake_dns(monkeypatch, "rebind.example", "93.184.216.34", "127.0.0.1")
    with make_fetcher(web, fetch_retries=1) as fetcher:
        error = fetch_error(fetcher, f"http://rebind.example:{web.port}/")
    assert given == ["93.184.216.34", "127.0.0.1"]  # one lookup per connection
    assert connections == [("93.184.216.34", web.port)]  # connected to the checked address, and only there
    assert str(error) == "refused: rebind.example resolves to 127.0.0.1, a loopback address"
    assert web.requests == []


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A certificate for the name localhost (only), its key, and the test CA that signed it."""
    import trustme

    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    issued = ca.issue_cert("localhost")
    cert, key, authority = folder / "cert.pem", folder / "key.pem", folder / "ca.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(authority))
    return cert, key, authority


def test_https_checks_the_certificate_against_the_host_name(certificate: tuple[Path, Path, Path]) -> None:
    # The connection goes to the address the guard checked, yet TLS (SNI, verification) uses the name.
    cert, key, authority = certificate
    with (
        WebServer(tls=(cert, key)) as web,
        make_fetcher(fetch_allow_hosts=f"localhost:{web.port},127.0.0.1:{web.port}") as fetcher,
    ):
        web.route("/page", Reply(200, HTML, b"<p>secure</p>"))
        fetcher._session.verify = str(authority)  # trust the test CA instead of the public ones
        assert fetcher.fetch(web.url("/page", host="localhost")).text == "<p>secure</p>"
        error = fetch_error(fetcher, web.url("/page"))  # 127.0.0.1 is not the name in the certificate
        assert "does not verify" in str(error) and not error.transient


def test_canonical_url_is_what_is_reported(web: WebServer, fetcher: Fetcher) -> None:
    web.route("/a%20b", Reply(200, HTML, b"<p>x</p>"))
    got = fetcher.fetch(f"HTTP://127.0.0.1:{web.port}/./a%20b?fbclid=1#x")
    assert got.url == got.final_url == canonicalize(web.url("/a%20b"))


# --- found in review ---


def test_the_body_of_a_redirect_is_never_read(web: WebServer) -> None:
    """requests reads a redirect's whole body (to reuse the connection) unless told otherwise: a 64 MiB one
    would pass every size limit. Only what the socket buffers took may have been sent."""
    sent, done = [], threading.Event()

    def huge() -> Iterator[bytes]:
        try:
            for _ in range(1024):
                sent.append(1)
                yield bytes(64 * 1024)
        finally:
            done.set()

    web.route("/moved", Reply(302, {"Location": "/page", "Content-Length": str(64 * MiB)}, stream=huge))
    web.route("/page", Reply(200, HTML, b"<p>here</p>"))
    with make_fetcher(web, fetch_max_bytes=100_000) as fetcher:
        assert fetcher.fetch(web.url("/moved")).text == "<p>here</p>"
    assert done.wait(10)  # the server stopped sending: the client hung up
    assert len(sent) < 256  # of 1024 chunks; reading them all would have taken 64 MiB


def test_a_charset_that_is_no_text_encoding_falls_back_to_detection(web: WebServer, fetcher: Fetcher) -> None:
    body = "<html><body><p>مرحبا بالعالم، هذا نص عربي</p></body></html>".encode()
    web.route("/b64", Reply(200, {"Content-Type": "text/html; charset=base64"}, body))
    web.route("/hex", Reply(200, {"Content-Type": "text/html"}, b'<meta charset="hex">' + body))
    assert "مرحبا" in fetcher.fetch(web.url("/b64")).text
    assert "مرحبا" in fetcher.fetch(web.url("/hex")).text


def test_a_page_declaring_utf16_in_ascii_is_read_as_utf8(web: WebServer, fetcher: Fetcher) -> None:
    # A declaration that could be read as ASCII is not true of UTF-16 bytes: saved again as UTF-8, unchanged.
    body = b'<html><head><meta charset="utf-16"></head><body><p>Hello, world!</p></body></html>'
    assert len(body) % 2 == 0  # UTF-16 would decode it, into nonsense
    web.route("/page", Reply(200, {"Content-Type": "text/html"}, body))
    assert fetcher.fetch(web.url("/page")).text == body.decode()


# --- the deadline: it bounds the whole fetch, whatever the server does ---

DEADLINE = 1.0
# Thread wake-ups on a busy machine. Without the bound, each of these fetches takes 20 s or more (or succeeds).
MARGIN = 1.5


def stopped_at_the_deadline(fetcher: Fetcher, url: str) -> FetchError:
    started = time.monotonic()
    error = fetch_error(fetcher, url)
    elapsed = time.monotonic() - started
    assert elapsed < DEADLINE + MARGIN, f"{elapsed:.1f} s: {error}"
    assert str(error).startswith(f"too slow: fetching {url} took more than {DEADLINE:g} s") and error.transient
    return error


@pytest.mark.slow
def test_headers_trickled_a_byte_at_a_time_stop_at_the_deadline(web: WebServer) -> None:
    web.route("/page", Reply(200, HTML | {"X-Padding": "x" * 400}, b"<p>late</p>"))  # 500 bytes of head: 25 s
    with TrickleRelay(web.port, 0.05) as relay, make_fetcher(relay, fetch_deadline=DEADLINE) as fetcher:
        stopped_at_the_deadline(fetcher, relay.url("/page"))


@pytest.mark.slow
def test_a_body_in_one_byte_chunks_stops_at_the_deadline(web: WebServer) -> None:
    web.route("/page", Reply(200, HTML, stream=dribble(b"x" * 500, 0.05)))  # each read waits 0.05 s, 25 s in all
    with make_fetcher(web, fetch_deadline=DEADLINE) as fetcher:
        stopped_at_the_deadline(fetcher, web.url("/page"))


@pytest.mark.slow
def test_a_trickled_tls_handshake_stops_at_the_deadline(certificate: tuple[Path, Path, Path]) -> None:
    cert, key, authority = certificate
    with WebServer(tls=(cert, key)) as web, TrickleRelay(web.port, 0.02) as relay:
        web.route("/page", Reply(200, HTML, b"<p>secure</p>"))
        with make_fetcher(fetch_allow_hosts=f"localhost:{relay.port}", fetch_deadline=DEADLINE) as fetcher:
            fetcher._session.verify = str(authority)
            stopped_at_the_deadline(fetcher, relay.url("/page", host="localhost", scheme="https"))


@pytest.mark.slow
def test_a_trickled_robots_txt_stops_at_the_deadline(web: WebServer) -> None:
    web.route("/robots.txt", Reply(200, {"Content-Type": "text/plain"}, b"User-agent: *\nDisallow: /private\n"))
    web.route("/page", Reply(200, HTML, b"<p>news</p>"))
    with TrickleRelay(web.port, 0.05) as relay, make_fetcher(relay, robots=True, fetch_deadline=DEADLINE) as fetcher:
        started = time.monotonic()
        error = fetch_error(fetcher, relay.url("/page"))
        elapsed = time.monotonic() - started
    assert elapsed < DEADLINE + MARGIN, f"{elapsed:.1f} s: {error}"
    robots = relay.url("/robots.txt")
    page = relay.url("/page")
    assert str(error) == (
        f"disallowed for now: {robots} is unavailable "
        f"(too slow: fetching {page} took more than {DEADLINE:g} s, at {robots})"
    )
    assert error.transient and not web.hits("/page")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["redirects", "retries"])
def test_redirects_and_retries_count_against_one_deadline(web: WebServer, kind: str) -> None:
    # Every answer comes within the read timeout, after 0.3 s; ten of them take 3 s.
    for i in range(10):
        web.route(f"/r{i}", Reply(302, {"Location": f"/r{i + 1}"}, delay=0.3))
    web.route("/r10", Reply(200, HTML, b"<p>at last</p>"))
    web.route("/busy", Reply(503, {"Retry-After": "0"}, delay=0.3), Reply(503, {"Retry-After": "0"}, delay=0.3))
    with make_fetcher(web, fetch_deadline=DEADLINE, fetch_max_redirects=10, fetch_retries=10) as fetcher:
        stopped_at_the_deadline(fetcher, web.url("/r0" if kind == "redirects" else "/busy"))


@pytest.mark.slow
def test_waiting_for_the_host_s_turn_does_not_count_against_the_deadline(web: WebServer) -> None:
    class SlowTurn(MemoryRateLimiter):
        def wait(self, host: str) -> None:
            time.sleep(DEADLINE)  # other fetches of the host went first: this deployment's doing, not the server's

    web.route("/page", Reply(200, HTML, b"<p>ok</p>", delay=0.2))
    with make_fetcher(web, robots=True, limiter=SlowTurn(0), fetch_deadline=DEADLINE) as fetcher:
        assert fetcher.fetch(web.url("/page")).text == "<p>ok</p>"  # robots.txt and the page: two turns


# --- a name that does not exist ---


@pytest.mark.parametrize(
    ("errno", "reason"),
    [
        (socket.EAI_NONAME, "the name nowhere.invalid does not exist"),
        (socket.EAI_NODATA, "the name nowhere.invalid has no address"),
    ],
)
def test_a_name_that_does_not_exist_fails_at_once_for_good(
    monkeypatch: pytest.MonkeyPatch, errno: int, reason: str
) -> None:
    lookups = failing_dns(monkeypatch, "nowhere.invalid", errno)
    with make_fetcher(robots=True, fetch_retries=3) as fetcher:
        error = fetch_error(fetcher, "http://nowhere.invalid/news")  # robots.txt first: the same answer
        assert (str(error), error.transient, type(error)) == (reason, False, NoSuchName)
        page = fetch_page(fetcher, "http://nowhere.invalid/other")
    assert page.item == Rejection.of(page.url, f"fetch failed: {reason}", page.url)
    assert lookups == ["nowhere.invalid"]  # neither tried again nor looked up again: robots.txt keeps the answer


def test_a_resolver_that_cannot_answer_now_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    lookups = failing_dns(monkeypatch, "nowhere.invalid", socket.EAI_AGAIN)
    with make_fetcher(robots=True, fetch_retries=2) as fetcher, pytest.raises(Unreachable, match="Temporary failure"):
        fetch_page(fetcher, "http://nowhere.invalid/news")
    assert lookups == ["nowhere.invalid"] * 3


def test_example_invalid_with_the_resolver_of_this_machine() -> None:
    """End to end with the real resolver. A name under .invalid never resolves (RFC 6761), but a machine with no
    DNS server to ask answers EAI_AGAIN (it could not ask) rather than that the name does not exist: that is
    transient, as it must be, since the network may come back."""
    with pytest.raises(socket.gaierror) as lookup:
        socket.getaddrinfo("example.invalid", 80)
    with make_fetcher(robots=True, fetch_retries=1) as fetcher:
        if lookup.value.errno == socket.EAI_AGAIN:
            with pytest.raises(Unreachable):
                fetch_page(fetcher, "http://example.invalid/news")
            return
        page = fetch_page(fetcher, "http://example.invalid/news")
    assert page.item.reason == "fetch failed: the name example.invalid does not exist"


def failing_dns(monkeypatch: pytest.MonkeyPatch, name: str, errno: int) -> list[str]:
    """getaddrinfo fails for `name` with errno, as the system resolver does; returns the names looked up."""
    real, lookups = socket.getaddrinfo, []
    messages = {
        socket.EAI_NONAME: "Name or service not known",
        socket.EAI_NODATA: "No address associated with hostname",
    }

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host != name:
            return real(host, *args, **kwargs)
        lookups.append(host)
        raise socket.gaierror(errno, messages.get(errno, "Temporary failure in name resolution"))

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return lookups


@pytest.mark.slow
def test_a_page_out_of_time_on_another_site_s_robots_txt_leaves_that_site_usable(web: WebServer) -> None:
    """The page's deadline ran out while fetching robots.txt of the site it redirects to: that is the page's
    failure, not the site's, and the site's next page is fetched (not refused for a minute)."""
    with WebServer(host="localhost") as other:
        other.route("/robots.txt", Reply(200, {"Content-Type": "text/plain"}, b"User-agent: *\n", delay=0.6))
        other.route("/story", Reply(200, HTML, b"<p>news</p>"))
        web.route("/moved", Reply(302, {"Location": other.url("/story", host="localhost")}, delay=0.6))
        allow = f"127.0.0.1:{web.port},localhost:{other.port}"
        with make_fetcher(web, robots=True, fetch_deadline=1.0, fetch_allow_hosts=allow) as fetcher:
            error = fetch_error(fetcher, web.url("/moved"))
            assert error.transient and "too slow" in str(error)
            assert fetcher.fetch(other.url("/story", host="localhost")).text == "<p>news</p>"
