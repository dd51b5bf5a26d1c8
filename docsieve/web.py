"""Web pages as documents: a URL becomes a raw HTML document, a rejection, or nothing (unchanged).

One URL per article: the URL is canonicalized before anything else, and a page's
``<link rel="canonical">`` names the record, so the same article reached under two URLs (tracking
parameters, another path) is one source. Validators (ETag, Last-Modified) of a fetch are saved only
after its document is stored (``save_validators``), so a 304 never hides a page that was not.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

from docsieve.fetch import Fetcher, FetchError
from docsieve.models import Format, RawDocument, Rejection
from docsieve.readers import Item
from docsieve.urls import canonical_link, canonicalize, url_key


@dataclass(frozen=True, slots=True)
class Validators:
    url: str  # the canonical URL fetched
    etag: str | None
    last_modified: str | None


@dataclass(frozen=True, slots=True)
class Page:
    """What one fetch gave: ``item`` is None when the page has not changed since the last fetch."""

    url: str
    item: Item | None
    validators: Validators | None = None


class Unreachable(Exception):
    """A fetch failed in a way that may pass (network, 5xx, 429 after retries): try the URL again later."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason


def fetch_page(fetcher: Fetcher, url: str, known: Validators | None = None) -> Page:
    """Fetch one URL (conditionally when ``known`` has validators); raises ``Unreachable`` for faults
    that may pass, and turns every other failure into a rejection with the reason."""
    try:
        canonical = canonicalize(url)
    except ValueError as exc:
        return Page(url, Rejection.of(url, f"not a URL docsieve fetches: {exc}", url))
    etag, modified = (known.etag, known.last_modified) if known else (None, None)
    try:
        fetched = fetcher.fetch(canonical, etag=etag, last_modified=modified)
    except FetchError as exc:
        if exc.transient:
            raise Unreachable(canonical, str(exc)) from exc
        return Page(canonical, Rejection.of(canonical, f"fetch failed: {exc}", canonical))
    if fetched.not_modified:
        return Page(canonical, None)
    text = fetched.text or ""
    if fetched.content_type == "text/plain":  # an article as plain text: paragraphs, no markup
        document = RawDocument(source=fetched.final_url, body=text, format=Format.SCRAPED, url=fetched.final_url)
    else:
        source = _same_site(canonical_link(text, fetched.final_url), fetched.final_url) or fetched.final_url
        document = RawDocument(source=source, body=text, format=Format.HTML, url=source)
    return Page(canonical, document, Validators(canonical, fetched.etag, fetched.last_modified))


def fetch_pages(
    fetcher: Fetcher, urls: Sequence[str], known: dict[str, Validators], threads: int
) -> Iterator[Page | Unreachable]:
    """Fetch many URLs on a thread pool (fetching waits on the network, not the CPU), in order."""

    def one(url: str) -> Page | Unreachable:
        try:
            return fetch_page(fetcher, url, known.get(url_key(url)))
        except Unreachable as exc:
            return exc

    with ThreadPoolExecutor(max(1, min(threads, len(urls)))) as pool:
        yield from pool.map(one, urls)


def fetch_here(
    urls: list[str], store, settings, conditional: bool = True, fetcher: Fetcher | None = None
) -> list[Page]:
    """The embedded default fetches in this process, on a thread pool; a page that cannot be reached now
    is rejected with the reason (the deployment tries it again later instead). ``conditional``: a URL
    fetched before is asked for only if it changed (else it is fetched whole). ``fetcher``: one that lives
    longer (a service's: its per-host pacing and robots.txt cache hold across requests), else one for now."""
    own = fetcher is None
    fetcher = fetcher or Fetcher(settings)
    try:
        known = known_validators(store, urls) if conditional else {}
        return [
            Page(got.url, Rejection.of(got.url, f"unreachable: {got.reason}", got.url))
            if isinstance(got, Unreachable)
            else got
            for got in fetch_pages(fetcher, urls, known, settings.fetch_concurrency)
        ]
    finally:
        if own:
            fetcher.close()


def known_validators(store, urls: Iterable[str]) -> dict[str, Validators]:
    """The validators of the last stored fetch of each URL, keyed by canonical URL."""
    found = {}
    for url in urls:
        canonical = url_key(url)
        etag, modified = store.fetch_validators(canonical)
        if etag or modified:
            found[canonical] = Validators(canonical, etag, modified)
    return found


def save_validators(store, validators: Iterable[Validators | None]) -> None:
    for v in validators:
        if v is not None and (v.etag or v.last_modified):
            store.save_fetch_validators(v.url, v.etag, v.last_modified)


def _same_site(canonical: str | None, final_url: str) -> str | None:
    """A page's canonical URL, taken only on its own site: any page can claim any URL, and a claim on
    another site's would make its text pass for that site's record."""
    if canonical is None:
        return None

    def site(url: str) -> str:
        return (urlsplit(url).hostname or "").removeprefix("www.")

    return canonical if site(canonical) == site(final_url) else None
