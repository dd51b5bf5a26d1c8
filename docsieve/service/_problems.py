"""Errors as RFC 9457 problem details (``application/problem+json``), never a traceback."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("docsieve.service")


class Problem(Exception):
    """An answer that is an error: its status, a short title, what went wrong here (``detail``), and any
    members of its own (``extra``, e.g. the documents too large)."""

    def __init__(
        self, status: int, detail: str, title: str | None = None, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title or HTTPStatus(status).phrase
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


def response(status: int, detail: str, title: str | None = None, headers: dict[str, str] | None = None, **extra: Any):
    body = {"type": "about:blank", "title": title or HTTPStatus(status).phrase, "status": status, "detail": detail}
    body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=MEDIA_TYPE)


def install(app: FastAPI) -> None:
    """Every error the app can answer, as a problem."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem):
        return response(exc.status, exc.detail, exc.title, exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errors = [
            {"where": ".".join(str(part) for part in e.get("loc", ())), "problem": e.get("msg", "")}
            for e in exc.errors()
        ]
        said = "; ".join(f"{e['where']}: {e['problem']}" for e in errors[:5])
        return response(422, f"the request is not valid: {said}", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such path: {request.url.path}"
        return response(exc.status_code, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("%s %s failed", request.method, request.url.path)
        return response(500, f"the server failed on this request ({type(exc).__name__}); it is in the server's log")


class BodyLimit:
    """Every request's body held to ``limit`` bytes, as declared (Content-Length, refused before it is read) and
    as it streams in (chunked): 413 as a problem. (FastAPI's own limit answers in plain text.)"""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    def _too_large(self, size: int, at_least: bool) -> Problem:
        more = "more than " if at_least else ""
        return Problem(
            413,
            f"the body is {more}{size:,} bytes; a request may hold {self.limit:,} (DOCSIEVE_API_MAX_REQUEST_BYTES): "
            "send it in several requests",
        )

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            refused = self._too_large(int(declared), at_least=False)
            await response(refused.status, refused.detail)(scope, receive, send)
            return
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise self._too_large(received, at_least=True)  # inside the route: answered as a problem
            return message

        await self.app(scope, counted, send)
