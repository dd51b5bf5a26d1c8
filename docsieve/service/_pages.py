"""The web page of stories, server-rendered (Jinja2, no front-end build): recent stories and a title search, and
a story's page with its canonical and each copy side by side, the passages that differ highlighted. Each
text is laid out in its own direction (Arabic right to left). A person logs in with an API key (a signed
cookie holds its id, checked again on every page, so a revoked key logs out); a program sends the key in
the X-API-Key header."""

from __future__ import annotations

import contextlib
import difflib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from itsdangerous import BadSignature, URLSafeTimedSerializer

from docsieve import keys
from docsieve.models import Record, Story
from docsieve.settings import Settings
from docsieve.store import Store

HERE = Path(__file__).parent
COOKIE = "docsieve_session"
SESSION_SECONDS = 12 * 3600
RIGHT_TO_LEFT = {"ar", "fa", "ur", "he", "ps", "ckb", "yi", "dv", "sd", "ug"}
PAGE = 50  # stories a page
SIDE_BY_SIDE = 10  # copies shown beside the canonical; the API lists every one
# Words of each text compared for the marks; past them the texts are shown as they are. Word-by-word
# comparison grows with the square of the length: 20,000 words took 20 s a page, 1,500 take milliseconds.
DIFF_WORDS = 1500
_WORD = re.compile(r"\S+\s*|\s+")


@dataclass(frozen=True, slots=True)
class Part:
    text: str
    changed: bool


def install(app: FastAPI, settings: Settings, store: Store) -> None:
    templates = Jinja2Templates(directory=HERE / "templates")
    signer = URLSafeTimedSerializer(settings.api_secret or secrets.token_hex(32), salt="docsieve-page")
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    router = APIRouter(include_in_schema=False)

    def signed_in(request: Request) -> keys.ApiKey | None:
        presented = request.headers.get("x-api-key")
        key = None
        if presented:
            key = keys.verify(store, presented)
        elif cookie := request.cookies.get(COOKIE):
            try:
                key_id = signer.loads(cookie, max_age=SESSION_SECONDS)
            except BadSignature:
                return None
            key = keys.by_id(store, key_id)
        if key is None or key.revoked_at is not None or not key.allows("read"):
            return None
        return key

    def to_login(request: Request) -> RedirectResponse:
        wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(wanted, safe='')}", status_code=303)

    @router.get("/", response_class=HTMLResponse, name="home")
    def home(request: Request, q: str | None = None, before: str | None = None) -> Response:
        key = signed_in(request)
        if key is None:
            return to_login(request)
        after = None
        if before and "|" in before:
            moment, story_id = before.split("|", 1)
            with contextlib.suppress(ValueError):
                after = (datetime.fromisoformat(moment), story_id)
        found = store.page_stories(PAGE, after, title=(q or "").strip() or None, newest_first=True)
        older = None
        if len(found) == PAGE and found[-1].created_at:
            older = "/?" + urlencode({**({"q": q} if q else {}), "before": f"{found[-1].created_at}|{found[-1].id}"})
        counts = store.counts()
        totals = {"stories": store.story_count(), "records": sum(counts.values())}
        rows = [_story_row(s) for s in found]
        context = {"key": key, "q": q, "stories": rows, "older": older, "totals": totals}
        return templates.TemplateResponse(request, "stories.html", context)

    @router.get("/stories/{story_id}", response_class=HTMLResponse, name="story_page")
    def story_page(request: Request, story_id: str) -> Response:
        key = signed_in(request)
        if key is None:
            return to_login(request)
        story = store.story(story_id)
        if story is None:
            missing: dict[str, Any] = {
                "key": key,
                "q": None,
                "stories": [],
                "older": None,
                "totals": {"stories": 0, "records": 0},
            }
            return templates.TemplateResponse(request, "stories.html", missing, status_code=404)
        if story.id != story_id:  # merged into this one: where it is now, for good
            return RedirectResponse(request.url_for("story_page", story_id=story.id).path, status_code=308)
        shown = story.members[:SIDE_BY_SIDE]
        with store.reading() as txn:
            texts = txn.records([story.canonical.id, *(m.id for m in shown)])
        canonical = texts.get(story.canonical.id, story.canonical)
        copies: list[dict[str, Any]] = []
        for member in shown:
            whole = texts.get(member.id, member)
            left, right = differences(canonical.text or "", whole.text or "")
            copies.append({"record": whole, "direction": direction(whole), "left": left, "right": right})
        everyone = [canonical, *story.members]
        timeline = sorted(
            (
                {
                    "when": _when(r),
                    "outlet": r.outlet,
                    "source": r.source,
                    "canonical": r.id == story.canonical.id,
                    "method": r.method,
                    "similarity": r.similarity,
                }
                for r in everyone
            ),
            key=lambda e: e["when"] or "~",
        )
        first = timeline[0]
        context: dict[str, Any] = {
            "key": key,
            "q": None,
            "story": story,
            "canonical": canonical,
            "canonical_dir": direction(canonical),
            "copies": copies,
            "more_copies": len(story.members) - len(shown),
            "timeline": timeline,
            "first": first,
        }
        return templates.TemplateResponse(request, "story.html", context)

    @router.get("/login", response_class=HTMLResponse, name="login_page")
    def login_page(request: Request, next: str = "/") -> Response:
        context = {"key": None, "q": None, "problem": None, "next_page": _local(next)}
        return templates.TemplateResponse(request, "login.html", context)

    @router.post("/login", response_class=HTMLResponse, name="login")
    def login(request: Request, key: str = Form(...), next: str = Form("/")) -> Response:
        if _foreign(request):
            return HTMLResponse("Log in from this site's own page.", status_code=403)
        found = keys.verify(store, key.strip())
        problem = None
        if found is None:
            problem = "That is not an API key of this service."
        elif found.revoked_at is not None:
            problem = "That key was revoked."
        if problem:
            context = {"key": None, "q": None, "problem": problem, "next_page": _local(next)}
            return templates.TemplateResponse(request, "login.html", context, status_code=401)
        assert found is not None
        response = RedirectResponse(_local(next), status_code=303)
        response.set_cookie(
            COOKIE,
            signer.dumps(found.id),
            max_age=SESSION_SECONDS,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )
        return response

    @router.post("/logout", name="logout")
    def logout(request: Request) -> Response:
        if _foreign(request):
            return HTMLResponse("Log out from this site's own page.", status_code=403)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    app.include_router(router)


def direction(record: Record) -> str:
    return "rtl" if (record.language or "").split("-")[0].lower() in RIGHT_TO_LEFT else "ltr"


def differences(left: str, right: str, words: int = DIFF_WORDS) -> tuple[list[Part], list[Part]]:
    """Both texts in parts, by words: those only one of them has are marked changed. Only the first
    ``words`` of each are compared; the rest of each follows unmarked."""
    a, b = _WORD.findall(left), _WORD.findall(right)
    rest_a, rest_b = "".join(a[words:]), "".join(b[words:])
    a, b = a[:words], b[:words]
    matcher = difflib.SequenceMatcher(None, [w.strip() for w in a], [w.strip() for w in b])
    ours: list[Part] = []
    theirs: list[Part] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        same = tag == "equal"
        if i2 > i1:
            _append(ours, "".join(a[i1:i2]), not same)
        if j2 > j1:
            _append(theirs, "".join(b[j1:j2]), not same)
    if rest_a:
        _append(ours, rest_a, False)
    if rest_b:
        _append(theirs, rest_b, False)
    return ours, theirs


def _append(parts: list[Part], text: str, changed: bool) -> None:
    if parts and parts[-1].changed == changed:
        parts[-1] = Part(parts[-1].text + text, changed)
    else:
        parts.append(Part(text, changed))


def _story_row(story: Story) -> dict:
    first = story.first_published
    return {
        "id": story.id,
        "title": story.canonical.title,
        "direction": direction(story.canonical),
        "copies": len(story.members),
        "outlets": sorted({r.outlet for r in (story.canonical, *story.members) if r.outlet}),
        "first": first.strftime("%Y-%m-%d %H:%M UTC") if first else _when(story.canonical),
    }


def _when(record: Record) -> str | None:
    if record.published_at:
        return record.published_at.strftime("%Y-%m-%d %H:%M UTC")
    return f"{record.created_at[:16].replace('T', ' ')} UTC (stored)" if record.created_at else None


def _foreign(request: Request) -> bool:
    """A form sent from another site's page (cross-site request forgery: logging a browser in with someone
    else's key, or out): browsers say where a POST comes from in its Origin header."""
    origin = request.headers.get("origin")
    if origin is None:  # not a browser's cross-site form (those always send it), or an old browser
        return False
    return urlsplit(origin).netloc.lower() != (request.headers.get("host") or "").lower()


def _local(target: str) -> str:
    """Only a path of this site: never another site's address (an open redirect)."""
    return target if target.startswith("/") and not target.startswith(("//", "/\\")) else "/"
