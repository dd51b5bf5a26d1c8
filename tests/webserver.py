"""A local HTTP server for tests: routes (paths) answered by canned replies or handlers, on 127.0.0.1 and a free
port, in daemon threads. Every request is recorded.

    with WebServer() as web:
        web.route("/page", Reply(200, {"Content-Type": "text/html"}, b"<p>hi</p>"))
        web.route("/flaky", Reply(503), Reply(200, body=b"ok"))          # one reply per request, the last repeats
        web.route("/etag", lambda request: Reply(304) if request.headers.get("If-None-Match") else Reply(200))
        web.route("/huge", Reply(200, stream=lambda: (b"x" * 65536 for _ in range(1000))))  # chunked, unbounded
        web.route("/slow", Reply(200, stream=dribble(b"x" * 1000, 0.1)))  # a 1-byte chunk every 0.1 s
        fetch(web.url("/page"))

    with WebServer() as web, TrickleRelay(web.port, 0.1) as relay:
        fetch(relay.url("/page"))  # the status line, the headers and the body: a byte every 0.1 s
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""  # sent with a Content-Length, unless the headers set one
    delay: float = 0.0  # seconds before the status line
    # Chunks sent with chunked transfer encoding (or as they are when the headers set a Content-Length),
    # made anew for each request: for bodies too large to hold, such as decompression bombs.
    stream: Callable[[], Iterable[bytes]] | None = None


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # with the query
    headers: Message
    at: float  # time.monotonic() on arrival


Handler = Reply | Callable[[Request], Reply]


class WebServer:
    def __init__(self, host: str = "127.0.0.1", tls: tuple[Path, Path] | None = None) -> None:
        """tls: (certificate, key) PEM files to serve https instead of http."""
        self._routes: dict[str, list[Handler]] = {}
        self._lock = threading.Lock()
        self.requests: list[Request] = []
        self._server = _Server((host, 0), _handler_class(self))
        self.scheme = "https" if tls else "http"
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        # A short poll interval: shutdown() waits for it.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def route(self, path: str, *handlers: Handler) -> None:
        """Answer requests for path (query ignored) with the handlers in turn; the last one answers the rest."""
        with self._lock:
            self._routes[path] = list(handlers)

    def hits(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if urlsplit(r.path).path == path]

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
            handlers = self._routes.get(urlsplit(request.path).path)
            if not handlers:
                return Reply(404, {"Content-Type": "text/plain"}, b"no such route")
            handler = handlers.pop(0) if len(handlers) > 1 else handlers[0]
        return handler if isinstance(handler, Reply) else handler(request)


def dribble(data: bytes, interval: float) -> Callable[[], Iterator[bytes]]:
    """A stream (for Reply) of data a byte at a time, `interval` seconds apart: each read of it waits only that long."""

    def stream() -> Iterator[bytes]:
        for byte in data:
            time.sleep(interval)
            yield bytes([byte])

    return stream


class TrickleRelay:
    """A TCP relay to a server on this machine that passes on what the server sends a byte at a time, `interval`
    seconds apart (what the client sends goes through at once): the TLS handshake, the status line, the headers and
    the body all trickle, each read of them well within any read timeout."""

    def __init__(self, upstream_port: int, interval: float) -> None:
        self._upstream_port = upstream_port
        self._interval = interval
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)  # accept() wakes up to see whether the relay is closed
        self.port: int = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def url(self, path: str = "/", host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._closed.set()
        self._thread.join()
        self._listener.close()
        for sock in self._sockets:
            _shut(sock)
            sock.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            client.settimeout(None)
            upstream = socket.create_connection(("127.0.0.1", self._upstream_port))
            self._sockets += (client, upstream)
            for source, target, interval in ((client, upstream, 0.0), (upstream, client, self._interval)):
                threading.Thread(target=self._pipe, args=(source, target, interval), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, interval: float) -> None:
        with contextlib.suppress(OSError):
            while not self._closed.is_set() and (data := source.recv(65536)):
                for piece in [data[i : i + 1] for i in range(len(data))] if interval else [data]:
                    if self._closed.is_set():
                        break
                    target.sendall(piece)
                    time.sleep(interval)
        _shut(source)  # one side is done (or the relay closed): so is the other
        _shut(target)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (it had read enough, or refused the certificate) is not an error of the server.
        if not isinstance(sys.exc_info()[1], ConnectionError | ssl.SSLError):
            super().handle_error(request, client_address)


def _handler_class(server: WebServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real servers do

        def do_GET(self) -> None:
            reply = server._answer(Request("GET", self.path, self.headers, time.monotonic()))
            if reply.delay:
                time.sleep(reply.delay)
            self._send(reply)

        def _send(self, reply: Reply) -> None:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            has_length = any(name.lower() == "content-length" for name in reply.headers)
            if reply.stream is None:
                if not has_length:
                    self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)
                return
            if has_length:
                self.end_headers()
                for chunk in reply.stream():
                    self.wfile.write(chunk)
                return
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for chunk in reply.stream():
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet: the tests assert on server.requests

    return Handler
