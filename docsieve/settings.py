"""All settings in one place: environment variables with the ``DOCSIEVE_`` prefix, validated at start-up.

Defaults for the fingerprint and decision parameters were chosen with ``bench/quality.py`` on the
labeled sets in the shared corpus (see ``docs/benchmarks.md``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

PREFIX = "DOCSIEVE_"
CANONICAL_POLICIES = ("earliest-published", "first-seen")
# How the rewrite stage's words are stemmed (docsieve/fingerprint.py): clitics off the front only (the stores made
# before 2026-12-05 count their words so), or pronouns off the end too. The last is the default.
WORD_STEMS = ("prefixes", "affixes")
# Bump when the normalization rules change: fingerprints made before would no longer match.
NORMALIZATION_VERSION = 2


# host:port, [IPv6]:port, or either without the port.
_HOST_PORT = re.compile(r"(?:\[(?P<ipv6>[0-9a-fA-F:.]+)\]|(?P<host>[^\s:/@\[\]]+))(?::(?P<port>[0-9]{1,5}))?")


def _host_and_port(entry: str) -> tuple[str, int | None]:
    """("localhost", 8080) from "localhost:8080", ("::1", None) from "[::1]" or "::1"; IP addresses in the
    form URLs are canonicalized to (docsieve/urls.py)."""
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(entry)), None  # a bare IPv6 address: its colons are no port
    match = _HOST_PORT.fullmatch(entry)
    port = int(match["port"]) if match and match["port"] else None
    if match and (port is None or 0 < port < 65536):
        if match["host"] and match["host"].strip("."):
            return match["host"].lower().rstrip("."), port
        with contextlib.suppress(ValueError):
            return str(ipaddress.ip_address(match["ipv6"])), port
    raise SettingsError(f"{PREFIX}FETCH_ALLOW_HOSTS: {entry!r} is not a host or host:port (IPv6 as [::1]:8080)")


class SettingsError(ValueError):
    """A setting has a value that cannot work; the message names the variable."""


class StoreError(RuntimeError):
    """The store cannot be used as asked (none at that URL, made with other settings); the message says
    why. Here rather than in docsieve/store.py so that commands catch it without importing SQLAlchemy."""


# The settings are plain frozen dataclasses parsed by hand (from_env, 20 lines) rather than pydantic-settings:
# importing it took 150 ms at the start of every command (measured), an eighth of a 5,000-article ingest.
# Five sections, one class each with its own checks; ``Settings`` is all of them, read and checked once
# at start. A part of the program may ask only for its section (the fetcher for ``FetchSettings``).


@dataclass(frozen=True)
class CoreSettings:
    """Fingerprints, decisions, batches: what makes the records and stories."""

    # Fingerprints: word n-grams over the normalized text, num_perm one-permutation MinHash bins.
    shingle_size: int = 3
    num_perm: int = 128
    seed: int = 1
    # LSH banding: bands * rows must equal num_perm. (32, 4) catches a pair at J=0.5 87% of the time
    # and at J=0.7 99.9%; the containment index (winnowed shingles) is the second net below that.
    lsh_bands: int = 32
    lsh_rows: int = 4
    # The containment index keeps the smallest shingle of every run of `winnow_window` (winnowing): a
    # copied passage of that many shingles (18 words) is always found, about 2 keys per 17 shingles.
    winnow_window: int = 16
    # Decision thresholds, verified on exact shingle sets.
    jaccard_threshold: float = 0.5
    containment_threshold: float = 0.55
    # The smaller text must have at least this many shingles for containment to count, so that a
    # one-line quote inside a long article is not called a copy of it.
    min_containment_shingles: int = 12
    # A copy of a story's member joins the story only while this close to its canonical (docsieve/stories.py),
    # so a story never drifts along copies of copies.
    jaccard_floor: float = 0.3
    containment_floor: float = 0.45
    # Template boilerplate (docsieve/templates.py): a shingle held by more different texts than this counts
    # less (this / count) when deciding whether two texts are copies.
    boilerplate_texts: int = 3
    # ... but a copy by its shingles' containment stays one while the weights leave it at least this share of that
    # containment: what the two share is their own text, and the boilerplate in it only tipped them under the
    # threshold. A much-copied release counts as a template too (each cut of it is a different text), so a
    # borderline copy of it lost its story by a few percent (bench/labels/natural-ar-extra-e.md). 1: off.
    template_light_share: float = 0.85
    # ... and so does one whose words (the rewrite score, by rarity) the other text holds at least this share of: the
    # cuts of one statement of a daily series share the series' wording and the day's words too (casualties, places,
    # names), while two items of a template differ in the words that make them two. 0: off.
    template_same_words: float = 0.92
    # ... and only once texts published on two different days hold it (more of other days' ids in its bucket than
    # the mean of a bucket, docsieve/templates.py): the cuts of one release come out on its day, a template's items
    # day after day. Undated texts count as of different days (the rule without days).
    template_across_days: bool = True
    # The rewrite stage (docsieve/rewrites.py): a document the shingles place in no story joins the story of a
    # candidate whose canonical holds at least ``rewrite_threshold`` of its words (the shorter text's words,
    # weighted by how rare they are in the store), when their shingle containment is at least
    # ``rewrite_floor``: the same release reworded or condensed. Off: shingles alone.
    rewrites: bool = True
    rewrite_threshold: float = 0.83
    rewrite_floor: float = 0.3
    # A strong copy (beyond template boilerplate) of a member that joined by the rewrite stage joins that story at
    # this rewrite score against its canonical: the chain floor of the stage, as the shingles' containment floor
    # relaxes theirs (0.45 / 0.55 of 0.83). Outlets copy one outlet's rewrite of a release, and that copy of the
    # rewrite keeps less of the canonical's words than the rewrite did (bench/labels/natural-ar-extra-d.md).
    rewrite_chain_floor: float = 0.68
    # ... and not when, with template boilerplate weighed (docsieve/templates.py), less than this share of their
    # shingle containment is left: what they share is a template's wording (0: no such test).
    rewrite_template_share: float = 0.4
    # How the stage's words are stemmed (WORD_STEMS): a store keeps the stems its word counts were made with, so
    # this chooses for a new store only (docsieve/store.py, Store.word_stems).
    word_stems: str = WORD_STEMS[-1]
    # Two texts that name different weekdays in the same words (docsieve/dates.py: "the ministry recorded today,
    # Saturday" against "today, Friday") are items of a template on different days, never copies of each other.
    weekday_check: bool = True
    # Two texts that put different figures in the same words (docsieve/figures.py: one company's dividend notice
    # against another's, a gold report of the morning against the evening's) are different items of one frame.
    figure_check: bool = True
    # Two stories found to be one split in two by the order its copies came in (docsieve/stories.py,
    # ``Book._merge_bridged``: a copy short of the thresholds or refused by the weights founded a story of its own, and
    # a later copy of both shows it) become one: the one whose canonical ranks first takes the other's records, and
    # the other's id says where they went (``merged_into``). Off: they stay two, holding each other.
    merge_split_stories: bool = True
    # Which record of a story is its canonical: the earliest published (else the earliest arrived), or
    # the first stored.
    canonical: str = "earliest-published"
    max_candidates: int = 32
    # The candidate window, in days (docsieve/index.py): a stored record is a candidate for a document only if
    # their times (publication, else arrival) are at most this far apart, and the index forgets records two
    # windows older than its newest. News is copied within days (Google News clusters within 30); 0: no window.
    index_window: float = 30.0
    # A key more records hold than this is boilerplate: lookups skip it (docsieve/index.py).
    common_key_records: int = 1000
    # Megabytes of stored records' shingles a process keeps, so that most verifications read nothing.
    sketch_cache_mb: int = 256
    # Documents larger than this (bytes) are rejected.
    max_document_bytes: int = 10_000_000
    # HTML extraction's bounds: characters of a page (the fetch's download limit, FETCH_MAX_BYTES, by
    # default), and seconds (real article pages take a tenth of one).
    max_html_chars: int = 5_000_000
    extract_timeout: float = 10.0
    # Documents processed together (vectorized fingerprints, one store round trip per batch).
    batch_size: int = 512
    # ``ingest`` of files reads, extracts and fingerprints the next batch in a second process while it decides
    # and stores one (docsieve/prepare.py): auto (where there are two CPUs or more), on, or off (all in one process).
    prepare_ahead: str = "auto"
    # Processes of one machine that decide and store batches at once for one store (docsieve/deciders.py); the others
    # prepare their next batches meanwhile. 0: one a core, the cores this process may use.
    deciders: int = 0
    # Where their slots are (files locked): the processes that share this folder share the slots. Empty: the user's
    # runtime folder, else one in the machine's temporary folder (``deciders.default_folder``); containers on one
    # machine need a folder they share (docker-compose.yml mounts one).
    deciders_folder: str = ""

    def _check_core(self) -> None:
        _at_least_one(
            self,
            "shingle_size",
            "num_perm",
            "lsh_bands",
            "lsh_rows",
            "winnow_window",
            "boilerplate_texts",
            "max_candidates",
            "common_key_records",
            "max_document_bytes",
            "max_html_chars",
            "batch_size",
        )
        if self.lsh_bands * self.lsh_rows != self.num_perm:
            raise SettingsError(
                f"{PREFIX}LSH_BANDS * {PREFIX}LSH_ROWS must equal {PREFIX}NUM_PERM "
                f"({self.lsh_bands} * {self.lsh_rows} != {self.num_perm})"
            )
        if self.num_perm & (self.num_perm - 1) or self.num_perm > 1024:
            raise SettingsError(f"{PREFIX}NUM_PERM must be a power of two up to 1024, got {self.num_perm}")
        for name in (
            "jaccard_threshold",
            "containment_threshold",
            "jaccard_floor",
            "containment_floor",
            "rewrite_threshold",
            "rewrite_floor",
            "rewrite_chain_floor",
            "template_light_share",
        ):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise SettingsError(f"{PREFIX}{name.upper()} must be in (0, 1], got {value}")
        if self.jaccard_floor > self.jaccard_threshold or self.containment_floor > self.containment_threshold:
            raise SettingsError(
                f"{PREFIX}JACCARD_FLOOR and {PREFIX}CONTAINMENT_FLOOR must not exceed the thresholds they relax"
            )
        if self.rewrite_chain_floor > self.rewrite_threshold:
            raise SettingsError(
                f"{PREFIX}REWRITE_CHAIN_FLOOR must not exceed {PREFIX}REWRITE_THRESHOLD, which it relaxes"
            )
        if not 0 <= self.template_same_words <= 1:
            raise SettingsError(f"{PREFIX}TEMPLATE_SAME_WORDS must be in [0, 1], got {self.template_same_words}")
        if not 0 <= self.rewrite_template_share <= 1:
            raise SettingsError(f"{PREFIX}REWRITE_TEMPLATE_SHARE must be in [0, 1], got {self.rewrite_template_share}")
        if self.rewrite_floor > self.containment_threshold:
            raise SettingsError(
                f"{PREFIX}REWRITE_FLOOR must not exceed {PREFIX}CONTAINMENT_THRESHOLD: the rewrite stage looks at the "
                "pairs the shingles leave below it"
            )
        if self.word_stems not in WORD_STEMS:
            raise SettingsError(f"{PREFIX}WORD_STEMS must be one of {', '.join(WORD_STEMS)}, got {self.word_stems!r}")
        if self.canonical not in CANONICAL_POLICIES:
            raise SettingsError(
                f"{PREFIX}CANONICAL must be one of {', '.join(CANONICAL_POLICIES)}, got {self.canonical!r}"
            )
        if not 0 <= self.index_window < 100 * 365:
            raise SettingsError(
                f"{PREFIX}INDEX_WINDOW is days, from 0 (no window) up to a century; got {self.index_window}"
            )
        if self.prepare_ahead not in ("auto", "on", "off"):
            raise SettingsError(f"{PREFIX}PREPARE_AHEAD must be auto, on or off, got {self.prepare_ahead!r}")
        if self.deciders < 0:
            raise SettingsError(f"{PREFIX}DECIDERS must not be negative (0: one a core), got {self.deciders}")
        if self.sketch_cache_mb < 0:
            raise SettingsError(f"{PREFIX}SKETCH_CACHE_MB must not be negative, got {self.sketch_cache_mb}")
        if not self.extract_timeout > 0:
            raise SettingsError(f"{PREFIX}EXTRACT_TIMEOUT must be above 0, got {self.extract_timeout}")

    @property
    def fingerprint_parameters(self) -> str:
        """Everything that shapes stored fingerprints (thresholds do not: they only read them)."""
        return (
            f"normalization {NORMALIZATION_VERSION}, word {self.shingle_size}-grams, {self.num_perm} bins, "
            f"seed {self.seed}, {self.lsh_bands}x{self.lsh_rows} bands, window-{self.winnow_window} winnowing"
        )


@dataclass(frozen=True)
class StoreSettings:
    # Where records live: a SQLAlchemy URL, or a plain path for a SQLite file. SQLite file by default,
    # PostgreSQL for the deployment.
    store: str = "sqlite:///docsieve.db"

    def _check_store(self) -> None:
        if not self.store.strip():
            raise SettingsError(f"{PREFIX}STORE must not be empty: a SQLAlchemy URL, or the path of a SQLite file")
        if "://" not in self.store:  # a plain path is a SQLite file (relative to the working directory)
            object.__setattr__(self, "store", f"sqlite:///{self.store}")


@dataclass(frozen=True)
class FetchSettings:
    """The web: fetching pages under limits, and the sources polled on a schedule."""

    user_agent: str = "docsieve/0.1 (+https://github.com/docsieve/docsieve; news deduplication)"
    fetch_connect_timeout: float = 5.0
    fetch_read_timeout: float = 20.0
    fetch_deadline: float = 120.0  # seconds for a whole download, however the server trickles it
    fetch_retries: int = 3  # on connection errors, 429 and 5xx, with backoff (Retry-After honoured)
    fetch_max_bytes: int = 5_000_000  # bytes on the wire, counted while streaming
    fetch_max_decoded_bytes: int = 20_000_000  # after gzip/deflate/brotli: a bomb is cut off here
    fetch_max_redirects: int = 5
    # Hosts that may resolve to internal addresses, each on one port (comma-separated host:port, [::1]:8080 for
    # IPv6; a bare host means ports 80 and 443); for tests and intranets. Everything else that resolves to
    # loopback, private, link-local, ... is refused.
    fetch_allow_hosts: str = ""
    host_interval: float = 1.0  # seconds between two requests to one host, across all workers
    robots_ttl: int = 3600  # seconds a host's robots.txt is kept
    fetch_concurrency: int = 64  # threads of an I/O worker
    # The sources polled on a schedule (TOML); see scheduler/.
    sources_file: str = "sources.toml"
    # New entries a poll enqueues at most (a sitemap index can list millions); the rest wait for later polls.
    max_entries_per_poll: int = 10_000

    def _check_fetch(self) -> None:
        _at_least_one(self, "fetch_max_bytes", "fetch_max_decoded_bytes", "robots_ttl", "fetch_concurrency")
        _at_least_one(self, "max_entries_per_poll")
        for name in ("fetch_connect_timeout", "fetch_read_timeout", "fetch_deadline"):
            if not getattr(self, name) > 0:
                raise SettingsError(f"{PREFIX}{name.upper()} must be above 0, got {getattr(self, name)}")
        for name in ("fetch_retries", "fetch_max_redirects", "host_interval"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{PREFIX}{name.upper()} must not be negative, got {getattr(self, name)}")
        self.allowed_internal_hosts  # noqa: B018 (validates DOCSIEVE_FETCH_ALLOW_HOSTS)

    @property
    def allowed_internal_hosts(self) -> frozenset[tuple[str, int]]:
        """(host, port) pairs from FETCH_ALLOW_HOSTS; a bare host stands for its ports 80 and 443."""
        pairs: set[tuple[str, int]] = set()
        for entry in filter(None, (e.strip() for e in self.fetch_allow_hosts.split(","))):
            host, port = _host_and_port(entry)
            pairs.update((host, p) for p in ((port,) if port else (80, 443)))
        return frozenset(pairs)


@dataclass(frozen=True)
class DeploySettings:
    """The deployment: Celery over Redis (an amqp:// broker works too), a shared index, PostgreSQL."""

    broker_url: str = "redis://127.0.0.1:6379/0"
    result_backend: str = "redis://127.0.0.1:6379/0"
    # The candidate index shared by all workers (redis://...); empty: each process keeps its own in memory.
    index_url: str = ""
    # What workers coordinate through (the per-host rate limit, the scheduler's locks, the poll log): a
    # redis:// URL in the deployment; empty, in-process (the embedded default).
    coordination_url: str = ""
    # Queue and index key names start with this, so several deployments (or test runs) can share one broker.
    queue_prefix: str = "docsieve"
    # Documents per task message from `docsieve submit`, and the characters of text past which a message
    # is sent (a single larger document travels alone; documents are limited by max_document_bytes).
    submit_batch: int = 512
    submit_max_chars: int = 1_000_000
    # Seconds. Redis redelivers a message unacknowledged this long; it must exceed the longest task run,
    # retry delay and countdown (see worker/celery_app.py).
    visibility_timeout: int = 7200
    # Seconds the documents of a queued ingest task wait in the shared Redis (worker/payloads.py), from
    # when they are queued or last taken: longer than the longest backlog, and above the visibility
    # timeout, so that a message delivered again still finds them.
    payload_ttl: int = 7 * 24 * 3600
    # A worker serves Prometheus metrics of its pool on this port (0: none); `docsieve worker --metrics-port`.
    metrics_port: int = 0
    task_soft_time_limit: int = 600
    task_time_limit: int = 660
    retry_backoff_max: int = 300
    max_retries: int = 12

    def _check_deploy(self) -> None:
        _at_least_one(
            self,
            "submit_batch",
            "submit_max_chars",
            "visibility_timeout",
            "task_soft_time_limit",
            "task_time_limit",
            "retry_backoff_max",
        )
        if not self.task_soft_time_limit < self.task_time_limit:
            raise SettingsError(f"{PREFIX}TASK_SOFT_TIME_LIMIT must be below {PREFIX}TASK_TIME_LIMIT")
        # A retried message stays unacknowledged through its countdown and then its whole run.
        longest = self.task_time_limit + self.retry_backoff_max
        if self.visibility_timeout <= longest:
            # A message unacknowledged past the visibility timeout is delivered again (kombu#337).
            raise SettingsError(
                f"{PREFIX}VISIBILITY_TIMEOUT ({self.visibility_timeout}) must exceed the task "
                f"time limit plus the longest retry delay ({longest})"
            )
        if self.payload_ttl <= self.visibility_timeout:
            raise SettingsError(
                f"{PREFIX}PAYLOAD_TTL ({self.payload_ttl}) must exceed {PREFIX}VISIBILITY_TIMEOUT "
                f"({self.visibility_timeout}): a message delivered again must still find its documents"
            )


@dataclass(frozen=True)
class ApiSettings:
    """The HTTP service (``docsieve serve``)."""

    # Requests a second each API key may make on average, and how many more it may make at once (a burst);
    # 0: no limit. Counted in the coordination Redis when there is one (all API processes), else per process.
    api_rate: float = 20.0
    api_burst: int = 40
    # Bytes of one request's body, and documents in one request: more is answered 413.
    api_max_request_bytes: int = 64_000_000
    api_max_documents: int = 10_000
    # Queue submitted documents and URLs to the workers (the deployment) rather than decide them in the request.
    api_queue: bool = False
    # Signs the web page's login cookie. Empty: a random secret per process (a restart logs everyone out).
    api_secret: str = ""

    def _check_api(self) -> None:
        _at_least_one(self, "api_max_request_bytes", "api_max_documents")
        if self.api_rate < 0 or self.api_burst < 0:
            raise SettingsError(f"{PREFIX}API_RATE and {PREFIX}API_BURST must not be negative")


@dataclass(frozen=True)
class Settings(ApiSettings, DeploySettings, FetchSettings, StoreSettings, CoreSettings):
    """Every setting, from ``DOCSIEVE_`` variables (``from_env``), each section checked as it is made."""

    def __post_init__(self) -> None:
        self._check_core()
        self._check_store()
        self._check_fetch()
        self._check_deploy()
        self._check_api()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``DOCSIEVE_*`` variables; explicit overrides (CLI flags) win over the environment."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(PREFIX + f.name.upper())
            if raw is None:
                continue
            kind: type = type(f.default)
            try:
                values[f.name] = _boolean(raw) if kind is bool else kind(raw)
            except ValueError:
                raise SettingsError(f"{PREFIX}{f.name.upper()}={raw!r} is not a valid {kind.__name__}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def _boolean(raw: str) -> bool:
    spelled = raw.strip().lower()
    if spelled in ("1", "true", "yes", "on"):
        return True
    if spelled in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(raw)


def _at_least_one(section: object, *names: str) -> None:
    for name in names:
        if getattr(section, name) < 1:
            raise SettingsError(f"{PREFIX}{name.upper()} must be at least 1, got {getattr(section, name)}")


def url_list(urls: str) -> list[str]:
    """The URLs of a comma-separated list (the shared index's instances); a comma counts only before another
    URL's scheme, so one in a password does not split it."""
    return [u.strip() for u in _NEXT_URL.split(urls) if u.strip()]


_NEXT_URL = re.compile(r",\s*(?=[a-z][a-z0-9+.-]*://)", re.IGNORECASE)


def redacted(url: str) -> str:
    """A URL as shown to a person or written to a log: without its password (each of a comma-separated list's)."""
    listed = url_list(url)
    if len(listed) > 1:  # the shared index's instances
        return ",".join(redacted(part) for part in listed)
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL at all: nothing to hide
        return url
    if not password:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
