"""Fetching pages, feeds and sitemaps over http(s), safely and politely.

One `Fetcher` per worker process, shared by the threads of its pool. Every request, redirects included, goes
through the same checks: the URL's scheme, the address it connects to (no loopback, private, link-local, cloud
metadata, ... address: SSRF), robots.txt and the per-host rate limit. The address check is made when the
connection is made, on the very addresses it connects to (one DNS resolution), so a name that resolves to a
public address when checked and to an internal one a moment later (DNS rebinding) cannot get through.
"""

from __future__ import annotations

import codecs
import contextlib
import ipaddress
import re
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http.cookiejar import DefaultCookiePolicy
from types import TracebackType
from typing import Any, Self
from urllib.parse import urljoin, urlsplit

import charset_normalizer
import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, DecodeError, HTTPError, NameResolutionError, NewConnectionError
from urllib3.util.connection import allowed_gai_family
from urllib3.util.timeout import _DEFAULT_TIMEOUT

from docsieve.politeness import NotTheSites, RateLimiter, RobotsCache, make_limiter
from docsieve.settings import Settings
from docsieve.urls import canonicalize

PAGE_TYPES = frozenset({"text/html", "application/xhtml+xml", "text/plain"})
# Feeds and sitemaps. text/plain is accepted because misconfigured servers send feeds as such; text/html is not:
# an HTML page where a feed was expected is an error or login page, not a feed.
FEED_TYPES = frozenset(
    {"application/rss+xml", "application/atom+xml", "application/rdf+xml", "application/xml", "text/xml", "text/plain"}
)
ANY_TYPE: frozenset[str] = frozenset()  # robots.txt: whatever the server calls it

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
BACKOFF_BASE = 0.5  # seconds before the first retry, doubled for each one after
# Seconds one request may spend waiting between its attempts, Retry-After included: a server asking for more is
# given up on (a transient failure, for the task to retry later) rather than allowed to hold a worker thread.
RETRY_SLEEP_BUDGET = 30.0
_CHUNK = 64 * 1024
_POOL_HOSTS = 256  # connection pools (hosts) kept alive
DEFAULT_PORTS = {"http": 80, "https": 443}
# getaddrinfo's answers that a name does not exist, or has no address: asking again will not change them, unlike
# EAI_AGAIN (the resolver could not answer now), which stays transient.
_NO_SUCH_NAME = {socket.EAI_NONAME: "does not exist", socket.EAI_NODATA: "has no address"}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

CLOUD_METADATA = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
_CARRIER_GRADE_NAT = ipaddress.IPv4Network("100.64.0.0/10")
# Special-purpose ranges that Python 3.11's ipaddress counts as global.
_SPECIAL_PURPOSE = (
    ipaddress.IPv4Network("192.0.0.0/24"),  # IETF protocol assignments
    ipaddress.IPv4Network("192.88.99.0/24"),  # 6to4 relay anycast
    ipaddress.IPv6Network("fec0::/10"),  # site-local
    ipaddress.IPv6Network("3fff::/20"),  # documentation
)
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


@dataclass(frozen=True, slots=True)
class Fetched:
    url: str  # canonical form of the URL asked for
    final_url: str  # after redirects (canonicalized)
    status: int  # 200 (or other 2xx) or 304
    text: str | None  # decoded body; None when 304
    content_type: str  # e.g. "text/html"
    etag: str | None
    last_modified: str | None

    @property
    def not_modified(self) -> bool:
        return self.status == 304


class FetchError(Exception):
    """A fetch that failed. str(exc) is the reason; `transient` says whether trying again later may work;
    `status` is the HTTP status that made it fail, if one did."""

    def __init__(self, reason: str, transient: bool = False, status: int | None = None) -> None:
        super().__init__(reason)
        self.transient = transient
        self.status = status

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.transient, self.status))


class _OutOfTime(FetchError, NotTheSites):
    """A robots.txt fetch cut short by the deadline of the page it was fetched for: the page's, not the site's."""


class NoSuchName(FetchError):
    """The host's name does not exist: for every URL of the host, robots.txt included, and for good."""


class AddressRefused(Exception):
    """The host is, or resolves to, an address the fetcher must not connect to. Deliberately not an OSError:
    urllib3 and requests then neither retry it nor wrap it into a connection error."""


def blocked_reason(address: IPAddress) -> str | None:
    """Why the fetcher must not connect to `address`, as in "a loopback address"; None for a public address."""
    if address in CLOUD_METADATA:
        return "a cloud metadata address"
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            kind, ipv4s, translated = embedded
            for ipv4 in ipv4s:
                reason = blocked_reason(ipv4)
                if reason:
                    return f"{kind} of {ipv4}, {reason}"
            if translated:
                return None  # the packets go to the embedded (public) IPv4 address
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address == _BROADCAST:
        return "a broadcast address"
    if address in _CARRIER_GRADE_NAT:
        return "a carrier-grade NAT address"
    if address.is_reserved:
        return "a reserved address"
    if address.is_private:
        return "a private address"
    if not address.is_global or any(address in network for network in _SPECIAL_PURPOSE):
        return "a special-purpose address"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[str, tuple[ipaddress.IPv4Address, ...], bool] | None:
    """(what kind of address it is, the IPv4 addresses inside, whether traffic goes to them) for IPv6 addresses
    that carry an IPv4 address."""
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.ipv4_mapped is not None:
        return "an IPv4-mapped address", (address.ipv4_mapped,), True
    if address in _IPV4_TRANSLATED:
        return "an IPv4-translated address", (low32,), True
    if any(address in network for network in _NAT64):
        return "a NAT64 address", (low32,), True
    if address in _IPV4_COMPATIBLE and int(address) > 1:  # :: and ::1 are not IPv4-compatible addresses
        return "an IPv4-compatible address", (low32,), True
    if address.sixtofour is not None:
        return "a 6to4 address", (address.sixtofour,), False
    if address.teredo is not None:
        return "a Teredo address", address.teredo, False
    return None


class AddressGuard:
    """Which addresses may be connected to. The (host, port) pairs in `allowed` (tests, intranets) may be anything:
    only on that port, so that a redirect cannot take the fetcher to another service of an allowed host."""

    def __init__(self, allowed: frozenset[tuple[str, int]]) -> None:
        self._allowed = allowed
        self._allowed_hosts = frozenset(host for host, _ in allowed)

    def check_literal(self, host: str, port: int) -> None:
        """Refuse an IP-address host at once, before robots.txt or the rate limit; names are checked on connect."""
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return
        self._check(host, port, address)

    def resolve(self, host: str, port: int) -> list[tuple[Any, ...]]:
        """getaddrinfo's answers for host, every one checked: the caller connects only to these."""
        answers = socket.getaddrinfo(host, port, allowed_gai_family(), socket.SOCK_STREAM)
        for *_, sockaddr in answers:
            self._check(host, port, ipaddress.ip_address(sockaddr[0]))
        return answers

    def _check(self, host: str, port: int, address: IPAddress) -> None:
        host = host.strip("[]").lower()
        if (host, port) in self._allowed:
            return
        reason = blocked_reason(address)
        if reason is None:
            return
        message = f"refused: {host} resolves to {address}, {reason}"
        if host == str(address):
            message = f"refused: {address} is {reason}"
        if host in self._allowed_hosts:
            message += f" (DOCSIEVE_FETCH_ALLOW_HOSTS allows {host} on other ports, not on {port})"
        raise AddressRefused(message)


_current = threading.local()  # .deadline: the _Deadline of the fetch this thread is making, if any


class _Deadline:
    """When a fetch must be over, FETCH_DEADLINE seconds after it began (not counting the waits for the host's
    turn under the rate limit: those are this deployment's own doing), and the sockets of its current attempt.

    The sockets are shut down from a timer thread when the moment comes. requests and urllib3 bound each socket
    operation (connect, one read) with a timeout, never a series of them: status line and headers trickled a byte
    at a time, a body in 1-byte chunks, a TLS handshake (reads made inside OpenSSL) go on as long as the server
    likes, each read within the read timeout. Shorter timeouts as the deadline nears cannot reach the reads made
    inside http.client's readline or OpenSSL; shutting the socket down ends whatever read or write is blocked on it
    at once, in any layer, and the fetch then reports the deadline. What is shut down is a duplicate of the
    socket's descriptor: TLS detaches the socket object urllib3 made, and the descriptor of a socket urllib3 closed
    may already serve another connection. (A DNS lookup cannot be cut short: the system resolver's own timeouts
    bound it, and the deadline is checked after it.)"""

    def __init__(self, seconds: float, url: str) -> None:
        self.seconds = seconds
        self.url = url  # what the fetch is for
        self.fired = False  # the timer shut the sockets down: what they gave may be cut short
        self._end = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] | None = None  # while an attempt is watched

    def remaining(self) -> float:
        return self._end - time.monotonic()

    def exceeded(self, url: str, detail: str = "") -> FetchError:
        """The error of a fetch out of time while at url (a redirect, its robots.txt)."""
        where = f", at {url}" if url != self.url else ""
        reason = f"too slow: fetching {self.url} took more than {self.seconds:g} s{where}"
        return FetchError(reason + (f" ({detail})" if detail else ""), transient=True)

    @contextlib.contextmanager
    def not_counting(self) -> Iterator[None]:
        began = time.monotonic()
        try:
            yield
        finally:
            self._end += time.monotonic() - began

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """Sockets given to `watch` in the block are shut down if the deadline comes before the block ends. A
        timer thread per attempt (threading.Timer): simple, and cheap next to the fetch it watches."""
        with self._lock:
            self._sockets = []
        timer = threading.Timer(max(0.0, self.remaining()), self._fire)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
            with self._lock:
                sockets, self._sockets = self._sockets or [], None
            for duplicate in sockets:
                duplicate.close()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            if self._sockets is None:
                return
            try:
                duplicate = socket.fromfd(sock.fileno(), sock.family, sock.type, sock.proto)
            except OSError:  # closed already: nothing can block on it
                return
            self._sockets.append(duplicate)
            if self.fired:
                _shut(duplicate)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            for duplicate in self._sockets or ():
                _shut(duplicate)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # not connected (yet, or any more)
        sock.shutdown(socket.SHUT_RDWR)


def _watch(sock: socket.socket) -> None:
    """Have the deadline of this thread's fetch watch sock (urllib3 gives no way to pass it down)."""
    deadline = getattr(_current, "deadline", None)
    if deadline is not None:
        deadline.watch(sock)


def _connect(conn: HTTPConnection, guard: AddressGuard) -> socket.socket:
    """urllib3's HTTPConnection._new_conn, resolving once through the guard and connecting to a checked address.
    conn.host is left alone, so the Host header, TLS SNI and certificate verification use the host name."""
    try:
        answers = guard.resolve(conn.host, conn.port)
    except socket.gaierror as exc:
        raise NameResolutionError(conn.host, conn, exc) from exc
    failure: OSError = OSError(f"no address for {conn.host}")
    for family, kind, proto, _, sockaddr in answers:
        sock = socket.socket(family, kind, proto)
        _watch(sock)
        try:
            for option in conn.socket_options or ():
                sock.setsockopt(*option)
            if conn.timeout is not _DEFAULT_TIMEOUT:
                sock.settimeout(conn.timeout)
            if conn.source_address:
                sock.bind(conn.source_address)
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            failure = exc
            continue
        sys.audit("http.client.connect", conn, conn.host, conn.port)
        return sock
    if isinstance(failure, TimeoutError):
        message = f"Connection to {conn.host} timed out. (connect timeout={conn.timeout})"
        raise ConnectTimeoutError(conn, message) from failure
    raise NewConnectionError(conn, f"Failed to establish a new connection: {failure}") from failure


class _WatchedConnection(HTTPConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        if self.sock is not None:  # a kept-alive connection, used again (a new one is watched from _connect)
            _watch(self.sock)
        super().request(*args, **kwargs)


def _guarded_pool_classes(guard: AddressGuard) -> dict[str, type[HTTPConnectionPool]]:
    class GuardedHTTPConnection(_WatchedConnection):
        def _new_conn(self) -> socket.socket:
            return _connect(self, guard)

    class GuardedHTTPSConnection(_WatchedConnection, HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            return _connect(self, guard)

    class GuardedHTTPConnectionPool(HTTPConnectionPool):
        ConnectionCls = GuardedHTTPConnection

    class GuardedHTTPSConnectionPool(HTTPSConnectionPool):
        ConnectionCls = GuardedHTTPSConnection

    return {"http": GuardedHTTPConnectionPool, "https": GuardedHTTPSConnectionPool}


class _GuardedAdapter(HTTPAdapter):
    """requests' adapter whose connections go through the address guard. Retries are the Fetcher's own."""

    def __init__(self, guard: AddressGuard, pool_maxsize: int) -> None:
        self._guard = guard  # before super().__init__, which builds the pool manager
        super().__init__(pool_connections=_POOL_HOSTS, pool_maxsize=pool_maxsize, max_retries=0)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = _guarded_pool_classes(self._guard)


class _Session(requests.Session):
    """Redirects are followed by the Fetcher, hop by hop. requests would still read the whole body of every
    redirect answer (to reuse the connection), past every size limit, even with allow_redirects=False."""

    def get_redirect_target(self, resp: requests.Response) -> None:
        return None


class _Retryable(Exception):
    """An attempt that failed in a way another attempt may not: connection trouble, 429, 5xx."""

    def __init__(self, reason: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes  # empty unless 2xx
    media_type: str
    charset: str | None


class Fetcher:
    """Fetches http(s) resources for one worker process; safe to share between its threads (the session's only
    mutable state, its cookie jar, accepts no cookies, and the pools of connections are thread-safe)."""

    def __init__(self, settings: Settings, limiter: RateLimiter | None = None, robots: bool = True) -> None:
        self._settings = settings
        self._limiter = limiter if limiter is not None else make_limiter(settings)
        self._guard = AddressGuard(settings.allowed_internal_hosts)
        self._timeout = (settings.fetch_connect_timeout, settings.fetch_read_timeout)
        self._session = self._new_session()
        self._robots = RobotsCache(self._robots_txt, settings.user_agent, settings.robots_ttl) if robots else None

    def fetch(
        self,
        url: str,
        etag: str | None = None,
        last_modified: str | None = None,
        accept: frozenset[str] = PAGE_TYPES,
    ) -> Fetched:
        """GET url (conditionally when a validator is given), following redirects; raises FetchError."""
        try:
            start = canonicalize(url)
        except ValueError as exc:
            raise FetchError(str(exc)) from None
        headers = {"Accept": ", ".join(sorted(accept)) or "*/*"}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        with self._deadline(start) as deadline:
            reply, final_url = self._follow(start, headers, accept, deadline, obey_robots=True)
        if reply.status == 304:
            if not (etag or last_modified):
                raise FetchError(f"HTTP 304 Not Modified from {final_url}, which was not asked for", status=304)
            return Fetched(
                url=start,
                final_url=final_url,
                status=304,
                text=None,
                content_type="",
                etag=reply.headers.get("ETag", etag),
                last_modified=reply.headers.get("Last-Modified", last_modified),
            )
        return Fetched(
            url=start,
            final_url=final_url,
            status=reply.status,
            text=decode_text(reply.body, reply.charset),
            content_type=reply.media_type,
            etag=reply.headers.get("ETag"),
            last_modified=reply.headers.get("Last-Modified"),
        )

    def get_text(self, url: str) -> str:
        """The decoded body of a feed or sitemap (its type must be one of FEED_TYPES)."""
        return self.fetch(url, accept=FEED_TYPES).text or ""

    def close(self) -> None:
        self._session.close()
        close = getattr(self._limiter, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    @contextlib.contextmanager
    def _deadline(self, url: str) -> Iterator[_Deadline]:
        """The deadline of the fetch this thread is making (a page's, for its robots.txt), or of one of url beginning
        now."""
        current = getattr(_current, "deadline", None)
        if current is not None:
            yield current
            return
        _current.deadline = _Deadline(self._settings.fetch_deadline, url)
        try:
            yield _current.deadline
        finally:
            _current.deadline = None

    def _new_session(self) -> requests.Session:
        session = _Session()
        session.trust_env = False  # no proxy from the environment: a proxy would connect past the address guard
        session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))  # no cookies, so nothing is shared
        session.headers["User-Agent"] = self._settings.user_agent
        adapter = _GuardedAdapter(self._guard, self._settings.fetch_concurrency)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    def _follow(
        self, url: str, headers: dict[str, str], accept: frozenset[str], deadline: _Deadline, obey_robots: bool
    ) -> tuple[_Reply, str]:
        """The first answer that is not a redirect, and the URL it came from. Redirects are followed here, not by
        requests, so that every hop is checked like the first."""
        first, seen = url, {url}
        for _ in range(self._settings.fetch_max_redirects + 1):
            reply = self._request(url, headers, accept, deadline, obey_robots)
            if reply.status not in REDIRECT_STATUSES:
                return reply, url
            url = _redirect_target(url, reply, seen)
            seen.add(url)
        raise FetchError(f"too many redirects: more than {self._settings.fetch_max_redirects} from {first}")

    def _request(
        self, url: str, headers: dict[str, str], accept: frozenset[str], deadline: _Deadline, obey_robots: bool
    ) -> _Reply:
        """One URL, with retries; a 2xx, 304 or redirect answer, or FetchError."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        try:
            self._guard.check_literal(host, parts.port or DEFAULT_PORTS[parts.scheme])
        except AddressRefused as exc:
            raise FetchError(str(exc)) from None
        if obey_robots and self._robots is not None and not self._robots.allowed(url):
            raise FetchError(f"disallowed by robots.txt: {url}")
        reply = self._attempts(url, host, headers, accept, deadline)
        if 200 <= reply.status < 300 or reply.status == 304 or reply.status in REDIRECT_STATUSES:
            return reply
        raise FetchError(f"HTTP {reply.status} {reply.reason} from {url}", status=reply.status)

    def _attempts(
        self, url: str, host: str, headers: dict[str, str], accept: frozenset[str], deadline: _Deadline
    ) -> _Reply:
        """_exchange until it works, with backoff (or as Retry-After says) within RETRY_SLEEP_BUDGET and the
        deadline."""
        attempt, slept = 0, 0.0
        while True:
            with deadline.not_counting():
                self._limiter.wait(host)  # every attempt counts against the host's rate
            try:
                return self._exchange(url, host, headers, accept, deadline)
            except _Retryable as exc:
                delay = exc.retry_after if exc.retry_after is not None else BACKOFF_BASE * 2**attempt
                if attempt >= self._settings.fetch_retries:
                    raise FetchError(f"{exc} (gave up after {_attempt_count(attempt + 1)})", True, exc.status) from None
                if slept + delay > RETRY_SLEEP_BUDGET:
                    raise FetchError(f"{exc} (not waiting {delay:g} s to try again)", True, exc.status) from None
                if delay >= deadline.remaining():
                    raise deadline.exceeded(url, f"{exc}; not waiting {delay:g} s to try again") from None
            time.sleep(delay)
            attempt, slept = attempt + 1, slept + delay

    def _exchange(
        self, url: str, host: str, headers: dict[str, str], accept: frozenset[str], deadline: _Deadline
    ) -> _Reply:
        """One attempt, within what is left of the deadline."""
        remaining = deadline.remaining()
        if remaining <= 0:
            raise deadline.exceeded(url)
        timeout = (min(self._timeout[0], remaining), min(self._timeout[1], remaining))
        with deadline.watching():
            try:
                reply = self._answer(url, host, headers, accept, timeout)
            except Exception:
                if deadline.fired or deadline.remaining() <= 0:  # whatever broke, the deadline broke it
                    raise deadline.exceeded(url) from None
                raise
            if deadline.fired:  # a body cut short when the socket was shut down may look complete
                raise deadline.exceeded(url)
        return reply

    def _answer(
        self, url: str, host: str, headers: dict[str, str], accept: frozenset[str], timeout: tuple[float, float]
    ) -> _Reply:
        """The answer, with the body of a 2xx of an accepted type read within the limits."""
        try:
            response = self._session.get(url, headers=headers, stream=True, allow_redirects=False, timeout=timeout)
        except AddressRefused as exc:
            raise FetchError(str(exc)) from None
        except requests.ConnectTimeout:
            raise _Retryable(f"could not connect to {host} within {self._timeout[0]:g} s") from None
        except requests.ReadTimeout:
            raise _Retryable(f"no answer from {host} within {self._timeout[1]:g} s") from None
        except requests.ConnectionError as exc:
            cause = _root_cause(exc)
            if isinstance(cause, ssl.SSLCertVerificationError):  # trying again will not make it verify
                raise FetchError(f"the TLS certificate of {host} does not verify: {cause}") from None
            if isinstance(cause, socket.gaierror) and cause.errno in _NO_SUCH_NAME:
                raise NoSuchName(f"the name {host} {_NO_SUCH_NAME[cause.errno]}") from None
            raise _Retryable(f"cannot connect to {host}: {cause}") from None
        except requests.RequestException as exc:
            raise FetchError(f"cannot fetch {url}: {exc}") from None
        with response:
            status = response.status_code
            if status == 429 or status >= 500:
                retry_after = _retry_after(response.headers.get("Retry-After"))
                raise _Retryable(f"HTTP {status} {response.reason} from {url}", status, retry_after)
            media_type, charset = _media_type(response.headers.get("Content-Type", ""))
            body = b""
            if 200 <= status < 300:
                if accept and media_type not in accept:
                    expected = ", ".join(sorted(accept))
                    raise FetchError(f"{url} is {media_type or 'of no stated type'}, not one of {expected}")
                body = self._read_body(response, url)
            return _Reply(status, response.reason or "", response.headers, body, media_type, charset)

    def _read_body(self, response: requests.Response, url: str) -> bytes:
        limit, decoded_limit = self._settings.fetch_max_bytes, self._settings.fetch_max_decoded_bytes
        declared = response.headers.get("Content-Length", "").strip()
        if declared.isdigit() and int(declared) > limit:
            raise FetchError(f"too large: {url} has a Content-Length of {int(declared)} bytes, over {limit}")
        raw = response.raw
        chunks: list[bytes] = []
        decoded = 0
        try:
            # read(amt) decompresses at most amt bytes a call (urllib3 >= 2.6): a bomb stops at the limit.
            while chunk := raw.read(_CHUNK, decode_content=True):
                if raw.tell() > limit:  # bytes received, before decompression
                    raise FetchError(f"too large: {url} sent more than {limit} bytes")
                decoded += len(chunk)
                if decoded > decoded_limit:
                    raise FetchError(f"too large: {url} decompresses to more than {decoded_limit} bytes")
                chunks.append(chunk)
        except DecodeError as exc:
            raise FetchError(f"cannot decompress {url}: {_root_cause(exc)}") from None
        except HTTPError as exc:  # a read timeout, a connection or TLS error
            raise _Retryable(f"{url} broke off: {_root_cause(exc)}") from None
        return b"".join(chunks)

    def _robots_txt(self, robots_url: str) -> str | None:
        """The text of a robots.txt for the RobotsCache; None when the site has none (4xx)."""
        borrowed = getattr(_current, "deadline", None)  # the page's, when fetched for a page
        try:
            with self._deadline(robots_url) as deadline:
                headers = {"Accept": "text/plain, */*"}
                reply, _ = self._follow(robots_url, headers, ANY_TYPE, deadline, obey_robots=False)
        except NoSuchName:
            raise  # about the host, not its robots.txt
        except FetchError as exc:
            if exc.transient:
                message = f"disallowed for now: {robots_url} is unavailable ({exc})"
                if borrowed is not None and borrowed.remaining() <= 0:  # the page's time ran out: not kept
                    raise _OutOfTime(message, transient=True, status=exc.status) from None
                raise FetchError(message, transient=True, status=exc.status) from None
            if exc.status is not None and 400 <= exc.status < 500:
                return None
            raise FetchError(f"{robots_url} cannot be used: {exc}", status=exc.status) from None
        return decode_text(reply.body, reply.charset)


def _redirect_target(url: str, reply: _Reply, seen: set[str]) -> str:
    location = reply.headers.get("Location")
    if not location:
        raise FetchError(f"HTTP {reply.status} from {url} without a Location", status=reply.status)
    with contextlib.suppress(UnicodeError):
        # http.client decodes header bytes as Latin-1; servers send UTF-8 (as requests assumes too).
        location = location.encode("latin-1").decode("utf-8")
    try:
        target = canonicalize(urljoin(url, location))
    except ValueError as exc:
        raise FetchError(f"{url} redirects to a URL that cannot be fetched: {exc}") from None
    if target in seen:
        raise FetchError(f"redirect loop: {url} leads back to {target}")
    return target


def _attempt_count(count: int) -> str:
    return "1 attempt" if count == 1 else f"{count} attempts"


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delay-seconds or HTTP date); None when absent or unreadable."""
    value = (value or "").strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _media_type(header: str) -> tuple[str, str | None]:
    """("text/html", "utf-8") from "text/html; charset=UTF-8"."""
    media_type, *parameters = header.split(";")
    charset = None
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip("\"'") or None
    return media_type.strip().lower(), charset


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost exception of a chain (requests and urllib3 wrap the socket error several times)."""
    for _ in range(10):
        inner = exc.__cause__ or exc.__context__
        if inner is None:
            break
        exc = inner
    return exc


# UTF-32 before UTF-16: the UTF-32-LE BOM starts with the UTF-16-LE one.
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_DECLARED_CHARSET = re.compile(
    rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-z0-9_.:-]+)|^\s*<\?xml[^>]+encoding\s*=\s*["']([a-z0-9_.:-]+)""",
    re.IGNORECASE,
)
_SNIFF_BYTES = 4096  # where a document's own charset declaration must be (1024 in the HTML standard)
_WIDE_CODECS = frozenset({"utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"})
_UNICODE_CODECS = _WIDE_CODECS | {"utf-8"}
# As browsers do (WHATWG Encoding): these labels mean windows-1252, which most such pages really are.
_AS_WINDOWS_1252 = frozenset({"iso8859-1", "ascii"})


def decode_text(body: bytes, header_charset: str | None) -> str:
    """The text of a body: by its BOM, else the charset in the HTTP header, else the one the document declares
    (``<meta charset>``, ``<meta http-equiv>``, ``<?xml encoding?>``), else UTF-8 if valid, else by detection. A
    declared charset the body does not decode in is passed over, and so is a legacy one when the body is valid UTF-8.

    The one decoder of the project, for pages fetched and HTML files read alike (``docsieve.readers``), so the
    same bytes give the same text either way. Kept over trafilatura's ``decode_file``, which only guesses (with
    charset-normalizer, or cchardet where installed, so its answer depends on what else is installed) and
    reads neither the header nor the page's own declaration; detection here is charset-normalizer's too."""
    for bom, encoding in _BOMS:
        if body.startswith(bom):
            return body.decode(encoding, "replace")
    match = _DECLARED_CHARSET.search(body[:_SNIFF_BYTES])
    declared = (match.group(1) or match.group(2)).decode("ascii") if match else None
    if declared and _codec(declared) in _WIDE_CODECS:
        # A declaration read as ASCII cannot be true of UTF-16 or UTF-32 bytes: such a page is UTF-8 (as the
        # HTML standard reads it), typically saved again without the declaration being changed.
        declared = "utf-8"
    for charset in (header_charset, declared):
        text = _decode_as(body, charset)
        if text is not None:
            return text
    with contextlib.suppress(UnicodeDecodeError):
        return body.decode("utf-8")  # as below: legacy-encoded text is practically never valid UTF-8
    best = charset_normalizer.from_bytes(body).best()
    return str(best) if best is not None else body.decode("utf-8", "replace")


def _codec(charset: str) -> str | None:
    try:
        return codecs.lookup(charset).name
    except LookupError:
        return None


def _decode_as(body: bytes, charset: str | None) -> str | None:
    if not charset:
        return None
    try:
        info = codecs.lookup(charset)
    except LookupError:
        return None
    if not info._is_text_encoding:  # base64, hex, rot13, zlib: codecs, but no charset a page can be in
        return None
    codec = info.name
    if codec not in _UNICODE_CODECS and not body.isascii():
        try:
            return body.decode("utf-8")  # legacy-encoded text is practically never valid UTF-8
        except UnicodeDecodeError:
            pass
    try:
        return body.decode("cp1252" if codec in _AS_WINDOWS_1252 else codec)
    except UnicodeDecodeError:
        return None
