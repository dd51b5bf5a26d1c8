"""The HTTP API: versioned routes under ``/v1``, each a thin call into the backend or the store."""

from __future__ import annotations

import base64
import binascii
import math
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from docsieve import keys
from docsieve.metrics import Metrics
from docsieve.models import RawDocument, Record, Rejection, Status, Story
from docsieve.pipeline import Match
from docsieve.published import parse_published
from docsieve.readers import DEFAULT_FIELDS, oversized, read_body
from docsieve.service import _pages, _problems
from docsieve.service._backends import Answer, Backend, Queued, open_backend, outcome_counts
from docsieve.service._limits import RateLimit, rate_limit
from docsieve.service._problems import Problem
from docsieve.settings import Settings

SOURCE = "api"  # the source of every document sent in a request: "api#<its id>", or "api" (located by its text)
BODY_TYPES = ("application/json", "application/x-ndjson", "application/jsonl", "application/json-seq", "text/plain")
# URLs a request may name: the embedded default fetches them in the request, a second apart on one host.
MAX_URLS = 100
MAX_URL_CHARS = 8192
_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key (`docsieve keys create`)")
_BEARER = HTTPBearer(auto_error=False, description="The same key as a bearer token")


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class SimilarQuery(BaseModel):
    text: str | None = Field(None, description="The article's text; or leave it out and give `url` to fetch it")
    title: str | None = None
    url: str | None = Field(
        None, max_length=MAX_URL_CHARS, description="Where it was published; fetched when `text` is not given"
    )
    published: str | None = None
    language: str | None = None
    limit: int = Field(10, ge=1, le=100)
    all: bool = Field(False, description="Search every stored record, not only the candidate window")


class UrlBatch(BaseModel):
    urls: list[Annotated[str, Field(max_length=MAX_URL_CHARS)]] = Field(..., min_length=1, max_length=MAX_URLS)


def create_app(settings: Settings, backend: Backend | None = None) -> FastAPI:
    """The app over ``backend`` (by default the one the settings name: the embedded default, or the
    deployment's queue with ``DOCSIEVE_API_QUEUE``), which it closes when it shuts down."""
    metrics = getattr(backend, "metrics", None) or Metrics()
    chosen = backend if backend is not None else open_backend(settings, metrics)
    limiter = rate_limit(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        chosen.close()

    app = FastAPI(
        title="docsieve",
        version="1",
        summary="Ingest news, keep one canonical record per story, link every copy to it.",
        lifespan=lifespan,
        default_response_class=JSON,
    )
    app.state.settings = settings
    app.state.backend = chosen
    _problems.install(app)
    app.add_middleware(_problems.BodyLimit, limit=settings.api_max_request_bytes)
    app.include_router(_routes(settings, chosen, limiter))
    _pages.install(app, settings, chosen.store)

    @app.get("/metrics", tags=["service"], response_class=Response)
    def prometheus() -> Response:
        """Prometheus metrics: documents by status and method, latencies, requests, what the store holds."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.middleware("http")
    async def count(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        metrics.requests.labels(path, request.method, str(response.status_code)).inc()
        metrics.request_seconds.labels(path).observe(time.perf_counter() - started)
        return response

    return app


def _routes(settings: Settings, backend: Backend, limiter: RateLimit) -> APIRouter:
    store = backend.store
    router = APIRouter()
    v1 = APIRouter(prefix="/v1")

    def require(scope: str) -> Callable[..., keys.ApiKey]:
        def check(
            request: Request,
            header: Annotated[str | None, Security(_HEADER)] = None,
            bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)] = None,
        ) -> keys.ApiKey:
            presented = header or (bearer.credentials if bearer else None)
            challenge = {"WWW-Authenticate": 'Bearer realm="docsieve"'}
            if not presented:
                raise Problem(401, "an API key is needed: send it in the X-API-Key header", headers=challenge)
            key = keys.verify(store, presented)
            if key is None:
                raise Problem(401, "this API key is not one of this service's", headers=challenge)
            if key.revoked_at is not None:
                raise Problem(401, f"this API key was revoked ({key.revoked_at:%Y-%m-%d %H:%M} UTC)", headers=challenge)
            if not key.allows(scope):
                raise Problem(403, f"this needs a key of scope {scope} or above; this key's scope is {key.scope}")
            if (wait := limiter.take(key.id)) > 0:
                retry = max(1, math.ceil(wait))
                raise Problem(
                    429,
                    f"too many requests with this key: at most {settings.api_rate:g} a second "
                    f"(and {settings.api_burst} at once); try again in {retry} s",
                    headers={"Retry-After": str(retry)},
                )
            return key

        return check

    reader = Depends(require("read"))
    reading = [reader]
    submitting = [Depends(require("submit"))]
    administering = [Depends(require("admin"))]

    @router.get("/healthz", tags=["service"])
    async def healthz() -> dict[str, str]:  # on the event loop: never behind requests waiting for a thread
        """The process is up."""
        return {"status": "ok"}

    @router.get("/readyz", tags=["service"])
    def readyz() -> Response:
        """The store, and in the deployment the broker and the shared index, can be reached."""
        problems = backend.problems()
        if problems:
            said = "; ".join(f"{part}: {why}" for part, why in problems.items())
            return _problems.response(503, f"not ready: {said}", parts=problems)
        return JSON({"status": "ready"})

    @v1.post(
        "/documents",
        dependencies=submitting,
        tags=["documents"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "description": "A JSON array of documents, or NDJSON (one object a line): `text` (required), "
                "`id`, `title`, `url`, `published`, `author`, `language`, `source` (the outlet)",
                "content": {
                    "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
                    "application/x-ndjson": {"schema": {"type": "string"}},
                },
            }
        },
    )
    async def post_documents(request: Request) -> Response:
        """Store documents: per document, its record (a new story, a copy linked to its story, rejected with
        the reason, or stored before). In the deployment: the tasks that carry them, to poll."""
        body = await _body(request)
        items = await run_in_threadpool(_documents, body, settings)
        done = await run_in_threadpool(backend.submit, items)
        return JSON(_submitted(done, len(items)))

    @v1.post("/urls", dependencies=submitting, tags=["documents"])
    def post_urls(batch: UrlBatch) -> Response:
        """Fetch URLs (robots.txt, per-host politeness, no internal addresses) and store their articles."""
        done = backend.submit_urls(batch.urls)
        return JSON(_submitted(done, len(batch.urls)))

    @v1.get("/records/{record_id}", dependencies=reading, tags=["records"])
    def get_record(record_id: str) -> Response:
        """One record, with its text, by its id (or a unique start of it)."""
        record = store.get(record_id)
        if record is None:
            raise Problem(404, f"no record with the id {record_id!r}")
        return JSON(record.to_json())

    @v1.get("/records", dependencies=reading, tags=["records"])
    def list_records(
        status: Status | None = None,
        language: str | None = None,
        source: str | None = None,
        outlet: str | None = None,
        since: str | None = Query(None, description="Stored or changed at or after (ISO 8601)"),
        cursor: str | None = Query(None, description="`next_cursor` of the page before"),
        limit: int = Query(100, ge=1, le=1000),
    ) -> Response:
        """Records in arrival order, a page at a time. `next_cursor` goes on from the last one, also later:
        records stored meanwhile come after it, never before."""
        after = _cursor_seq(cursor)
        page = store.page_records(after, limit, status, language, source, outlet, _since(since))
        last = page[-1][0] if page else after
        return JSON(
            {
                "records": [_record_json(record) for _, record in page],
                "next_cursor": _encode_cursor(f"r{last}"),
                "more": len(page) == limit,
            }
        )

    @v1.delete("/records/{record_id}", dependencies=administering, tags=["records"])
    def delete_record(record_id: str, reason: str | None = None) -> Response:
        """Take a record down: its text and fingerprints go, an audit row stays. Its whole id is needed."""
        if not backend.delete(record_id, reason):
            raise Problem(404, f"no record with the id {record_id!r} (a whole id is needed to delete)")
        return JSON({"deleted": record_id, "reason": reason})

    @v1.get("/stories/{story_id}", dependencies=reading, tags=["stories"])
    def get_story(story_id: str, request: Request) -> Response:
        """A story: its canonical record, every copy with how it was found and its similarity to the
        canonical, who published first, and the timeline of its copies."""
        story = store.story(story_id)
        if story is None:
            raise Problem(404, f"no story with the id {story_id!r}")
        if story.id != story_id:  # merged into this one: where it is now, for good
            return RedirectResponse(request.url_for("get_story", story_id=story.id).path, status_code=308)
        return JSON(_story_json(story))

    @v1.get("/stories", dependencies=reading, tags=["stories"])
    def list_stories(
        since: str | None = Query(None, description="Founded or changed at or after (ISO 8601)"),
        min_copies: int = Query(0, ge=0),
        q: str | None = Query(None, max_length=200, description="Words of the canonical's title"),
        cursor: str | None = None,
        limit: int = Query(50, ge=1, le=500),
    ) -> Response:
        """Stories in order of creation, a page at a time. With `since`, the first page also lists the stories merged
        into another since then (`merged`: each `id` and the story it is now, `merged_into`): drop them."""
        after, when = _cursor_story(cursor), _since(since)
        page = store.page_stories(limit, after, when, min_copies, q)
        following = after
        if page and page[-1].created_at:
            following = (datetime.fromisoformat(page[-1].created_at), page[-1].id)
        found: dict[str, Any] = {
            "stories": [_story_summary(s) for s in page],
            "next_cursor": _encode_cursor(f"s{following[0].isoformat()}|{following[1]}") if following else None,
            "more": len(page) == limit,
        }
        if when is not None and after is None:
            found["merged"] = [m.to_json() for m in store.merged_since(when)]
        return JSON(found)

    @v1.post("/similar", tags=["records"])
    def post_similar(query: SimilarQuery, key: keys.ApiKey = reader) -> Response:
        """The stored records closest to a text (or the article at a URL); nothing is stored. `all` (a pass
        over the whole store, not only the candidate window) needs an admin key."""
        if query.all and not key.allows("admin"):
            raise Problem(403, "`all` searches every stored record, a pass over the store: it needs an admin key")
        document = _query_document(query, backend, settings)
        found = backend.similar(document, query.limit, query.all)
        if isinstance(found, str):
            raise Problem(422, f"the text cannot be compared: {found}")
        return JSON({"matches": [_match_json(m) for m in found]})

    @v1.get("/tasks/{task_id}", dependencies=submitting, tags=["documents"])
    def get_task(task_id: str) -> Response:
        """A queued task: its state, and when done what it stored (the deployment only)."""
        found = backend.task(task_id)
        if found is None:
            where = "" if backend.queued else ": this service decides documents in the request, it queues none"
            raise Problem(404, f"no task with the id {task_id!r}{where}")
        return JSON(found)

    router.include_router(v1)
    return router


async def _body(request: Request) -> bytes:
    """The body of documents (its size held to DOCSIEVE_API_MAX_REQUEST_BYTES by ``_problems.BodyLimit``)."""
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if kind not in BODY_TYPES:
        raise Problem(415, f"a body of {kind} cannot hold documents: send {' or '.join(BODY_TYPES[:2])}")
    return await request.body()


def _documents(body: bytes, settings: Settings) -> list:
    """The documents of a body, or the problem with it as a whole: nothing in it, or too much."""
    if not body.lstrip(b"\xef\xbb\xbf \t\r\n").startswith((b"[", b"{")):
        raise Problem(400, "the body must be a JSON array of documents, or NDJSON: one JSON object a line")
    items = []
    for item in read_body(SOURCE, body, settings.max_document_bytes, DEFAULT_FIELDS):
        items.append(item)
        if len(items) > settings.api_max_documents:
            raise Problem(
                413,
                f"more than {settings.api_max_documents:,} documents in one request (DOCSIEVE_API_MAX_DOCUMENTS): "
                "send them in several",
            )
    if len(items) == 1 and isinstance(items[0], Rejection) and items[0].source == SOURCE:
        raise Problem(400, f"no document in the body: {items[0].reason}")  # the body as a whole, not one object
    large = [(n, item) for n, item in enumerate(items, 1) if isinstance(item, Rejection) and oversized(item)]
    if large:
        raise Problem(
            413,
            f"{len(large)} document{'s' if len(large) > 1 else ''} over the limit of {settings.max_document_bytes:,} "
            "bytes (DOCSIEVE_MAX_DOCUMENT_BYTES); nothing was stored",
            documents=[{"position": n, "source": item.source, "reason": item.reason} for n, item in large],
        )
    return items


def _submitted(done: list[Answer] | list[Answer | str] | Queued, received: int) -> dict:
    if isinstance(done, Queued):
        return {
            "received": received,
            "queued": True,
            "tasks": done.tasks,
            "documents": [{"position": n, "task": task} for n, task in enumerate(done.task_of, 1)],
        }
    answers = []
    for n, outcome in enumerate(done, 1):
        if isinstance(outcome, str):
            answers.append({"position": n, "stored": False, "outcome": outcome, "record": None})
        else:
            record = _record_json(outcome.record) if outcome.record is not None else None
            answers.append({"position": n, "stored": outcome.stored, "record": record})
    return {"received": received, "queued": False, **outcome_counts(done), "documents": answers}


def _record_json(record: Record) -> dict:
    """A record without its text (lists and replies; ``GET /v1/records/{id}`` gives the text)."""
    found = record.to_json()
    del found["text"]
    return found


def _story_summary(story: Story) -> dict:
    found = _story_json(story)
    found.pop("timeline")
    return found


def _story_json(story: Story) -> dict:
    found = story.to_json()
    found["copies"] = len(story.members)
    everyone = (story.canonical, *story.members)

    def moment(record: Record) -> str:
        return record.published_at.isoformat() if record.published_at else record.created_at or ""

    found["timeline"] = [
        {
            "record": r.id,
            "outlet": r.outlet,
            "published": r.published_at.isoformat() if r.published_at else None,
            "stored": r.created_at,
            "canonical": r.id == story.canonical.id,
        }
        for r in sorted(everyone, key=moment)
    ]
    return found


def _match_json(match: Match) -> dict:
    return {"record": _record_json(match.record), "jaccard": match.jaccard, "containment": match.containment}


def _query_document(query: SimilarQuery, backend: Backend, settings: Settings) -> RawDocument:
    if query.text is not None:
        if len(query.text.encode()) > settings.max_document_bytes:
            raise Problem(413, f"the text is over the limit of {settings.max_document_bytes:,} bytes")
        return RawDocument(
            "similar", query.text, title=query.title, url=query.url, published=query.published, language=query.language
        )
    if not query.url:
        raise Problem(422, "give the article's `text`, or a `url` to fetch it from")
    from docsieve.web import fetch_here

    shared = getattr(backend, "fetcher", None)  # the embedded default's: paced per host across requests
    page = fetch_here([query.url], backend.store, settings, conditional=False, fetcher=shared)[0]
    if isinstance(page.item, Rejection):
        raise Problem(422, f"{query.url}: {page.item.reason}")
    if page.item is None:  # never: without validators a page is never "not modified"
        raise Problem(502, f"{query.url} gave no page")
    return page.item


def _since(given: str | None) -> datetime | None:
    if given is None:
        return None
    moment = parse_published(given)
    if moment is None:
        raise Problem(400, f"since={given!r} is not a time (ISO 8601, e.g. 2026-12-04T10:00:00Z)")
    return moment


def _encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, kind: str) -> str:
    try:
        value = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        value = ""
    if not value.startswith(kind):
        raise Problem(400, f"cursor={cursor!r} is not a cursor this list gave")
    return value[1:]


def _cursor_seq(cursor: str | None) -> int:
    if cursor is None:
        return 0
    value = _decode_cursor(cursor, "r")
    if not value.isdigit() or int(value) >= 1 << 63:
        raise Problem(400, f"cursor={cursor!r} is not a cursor this list gave")
    return int(value)


def _cursor_story(cursor: str | None) -> tuple[datetime, str] | None:
    if cursor is None:
        return None
    moment, _, story_id = _decode_cursor(cursor, "s").partition("|")
    try:
        return datetime.fromisoformat(moment), story_id
    except ValueError:
        raise Problem(400, f"cursor={cursor!r} is not a cursor this list gave") from None
