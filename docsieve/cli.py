"""The ``docsieve`` command: a thin layer over the pipeline and the store."""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from docsieve.settings import Settings, SettingsError, StoreError, redacted

SHOW_AMBIGUOUS = 10  # ids listed when a prefix names several records

# The parts of a document a batch's JSON objects hold (readers.FieldMap): named here, not imported, so
# that every command's start-up does not load the readers.
MAPPED_FIELDS = ("text", "id", "title", "url", "published", "author", "language", "outlet")


# What `pip install 'docsieve[deploy]'` adds: a command that needs one of them says so.
DEPLOYMENT_LIBRARIES = ("celery", "kombu", "redis", "psycopg", "flower", "billiard")
EXTENSIONS = "docsieve.commands"  # entry points: functions that take a CommandLine and add to it

StatusPart = Callable[[Settings], bool]  # prints its lines; False when its part could not be read


@dataclass
class CommandLine:
    """What an installed extension adds to the ``docsieve`` command (the ``docsieve.commands`` entry points:
    the deployment's ``worker`` and ``scheduler`` packages, which the core never imports): subcommands, and
    parts of ``docsieve status`` around the store's."""

    sub: argparse._SubParsersAction
    common: argparse.ArgumentParser  # --store: a parent of every subcommand
    fields: argparse.ArgumentParser  # which JSON field holds what: a parent of commands that read batches
    status_first: list[StatusPart] = field(default_factory=list)  # before the records (queues, workers)
    status_last: list[StatusPart] = field(default_factory=list)  # after them (source polls)


def main(argv: Sequence[str] | None = None, *, own_process: bool = False) -> int:
    """Run one command. ``own_process``: the process is this command's (the console script), so its start-up's
    objects may be kept out of the garbage collector for good; an in-process caller's collector is left as it was."""
    parser = _parser()
    args = parser.parse_args(argv)
    args.own_process = own_process
    if args.store == "":
        parser.error("--store must not be empty: a SQLAlchemy URL, or the path of a SQLite file")
    try:
        settings = Settings.from_env(store=args.store)
    except SettingsError as exc:
        print(f"docsieve: {exc}", file=sys.stderr)
        return 2
    try:
        return args.run(args, settings)
    except (StoreError, SettingsError) as exc:
        print(f"docsieve: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `docsieve export | head`
        return 0
    except KeyboardInterrupt:  # Ctrl-C: every batch is one transaction, so only the one in hand is lost
        what = " (the batches stored before stay; ingesting again skips them)" if args.command == "ingest" else ""
        print(f"\ndocsieve: interrupted{what}", file=sys.stderr)
        return 130
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in DEPLOYMENT_LIBRARIES:
            raise
        print(
            f"docsieve: {args.command} needs the deployment's packages: pip install 'docsieve[deploy]' ({exc})",
            file=sys.stderr,
        )
        return 2
    except Exception as exc:
        problem = _store_failure(exc, settings.store)
        if problem is None:
            raise
        if args.command == "ingest":
            problem += " (the batch in hand was rolled back; what was stored before stays, ingesting again skips it)"
        print(f"docsieve: {problem}", file=sys.stderr)
        return 1


def _store_failure(exc: Exception, store: str) -> str | None:
    """One line for a store that cannot be reached or failed under a command (disk full, gone read-only);
    None for any other error, a bug, which keeps its traceback."""
    if not type(exc).__module__.startswith("sqlalchemy"):
        return None
    import sqlalchemy.exc

    if not (isinstance(exc, sqlalchemy.exc.OperationalError) or type(exc) is sqlalchemy.exc.DatabaseError):
        return None
    return f"the store {redacted(store)}: {first_line(exc)}"


def missing_paths(paths: Sequence[str]) -> str | None:
    """A path given on the command line that is not there: said at once, nothing read."""
    for path in paths:
        if path == "-" or is_url(path):
            continue
        if not path.strip():
            return f"{path!r} is not a path (an empty argument)"
        if not os.path.lexists(path):
            return f"no such file or folder: {path}"
    return None


def _parser() -> argparse.ArgumentParser:
    store_help = "SQLAlchemy URL of the store, or the path of a SQLite file (default: $DOCSIEVE_STORE or docsieve.db)"
    # --store is accepted before and after the command; SUPPRESS keeps a subcommand from resetting it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store", metavar="URL", default=argparse.SUPPRESS, help=store_help)
    fields = argparse.ArgumentParser(add_help=False)
    mapping = fields.add_argument_group(
        "JSON batches",
        "the field of each object that holds a part of the document: by default the part's own name "
        "(`text`, `id`...), and `source` for the outlet (the publisher)",
    )
    for name in MAPPED_FIELDS:
        mapping.add_argument(f"--{name}-field", metavar="NAME")
    parser = argparse.ArgumentParser(
        prog="docsieve",
        description="Ingest articles, keep one canonical record per story and link every copy to it.",
    )
    parser.add_argument("--store", metavar="URL", default=None, help=store_help)
    parser.add_argument("--version", action=_ShowVersion)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ingest = sub.add_parser(
        "ingest",
        parents=[common, fields],
        help="read, fingerprint, deduplicate and store articles",
        description="Ingest files (.txt/.md scraped articles, .html pages, .json/.jsonl "
        "batches), directories (recursively), - for standard input, or http(s) URLs of article pages.",
    )
    ingest.add_argument("paths", nargs="+", metavar="PATH", help="file, directory, URL, or - for stdin")
    ingest.add_argument("--quiet", action="store_true", help="no progress bar")
    ingest.set_defaults(run=_ingest)

    export = sub.add_parser(
        "export",
        parents=[common],
        help="write every record (or story) as JSON Lines, CSV or Parquet",
        description="One JSON object per record, in arrival order; with --stories, one per story: its canonical, "
        "title, first publication, and every member with its source, outlet, method and similarity to the canonical.",
    )
    export.add_argument(
        "--format",
        choices=["jsonl", "csv", "parquet"],
        default="jsonl",
        help="jsonl (default): one JSON object a line, a story's members nested; csv and parquet: flat, one row "
        "per record or, with --stories, one per member of a story (parquet needs pip install 'docsieve[parquet]')",
    )
    export.add_argument("--status", choices=["canonical", "duplicate", "rejected"], help="only these records")
    export.add_argument("--stories", action="store_true", help="one line per story instead of per record")
    export.add_argument(
        "--since",
        metavar="TIME",
        help="only records (stories) stored or changed at or after TIME (ISO 8601; without a zone, UTC)",
    )
    export.add_argument("--output", "-o", metavar="FILE", help="write here instead of standard output")
    export.set_defaults(run=_export)

    show = sub.add_parser(
        "show",
        parents=[common],
        help="a record and its story",
        description="Show a record (by id or a unique prefix of it) and its story: the canonical record, "
        "every copy with how it was found and its similarity to the canonical, and what a roundup holds.",
    )
    show.add_argument("id")
    show.set_defaults(run=_show)

    delete = sub.add_parser(
        "delete",
        parents=[common],
        help="take records down",
        description="Remove records' text, fingerprints and index keys (a takedown); a small audit row stays "
        "(id, when, reason). A canonical record's place goes to the next copy by the canonical policy.",
    )
    delete.add_argument("ids", nargs="+", metavar="ID", help="record ids (whole, or a unique prefix)")
    delete.add_argument("--reason", help="why, kept in the audit row")
    delete.set_defaults(run=_delete)

    status = sub.add_parser(
        "status",
        parents=[common],
        help="queue depths, workers and fetchers online, records, failures, source polls",
        description="A look at a running deployment: queue depths, the CPU workers and the fetchers online, "
        "records by status, the failures not retried yet (by the ids `docsieve failures` and `retry` take), and "
        "the sources whose last poll failed or that are overdue. A part that cannot be read (the broker, the "
        "store, Redis) is said in one line, the others are still shown, and the exit code is 1.",
    )

    failures = sub.add_parser(
        "failures",
        parents=[common],
        help="tasks that failed for good, with their error",
        description="List the deployment's dead letters: tasks that failed for good (after their retries, or at "
        "once for an error that retrying cannot fix), with the error and the documents or URLs they carried. "
        "`docsieve retry` sends them again.",
    )
    failures.add_argument("--all", action="store_true", help="also those already retried")
    failures.add_argument("--limit", type=int, default=50, help="at most this many, newest first (default 50)")
    failures.set_defaults(run=_failures)

    migrate = sub.add_parser(
        "migrate",
        parents=[common],
        help="bring the store's schema up to date",
        description="Apply the Alembic migrations to the store (the deployment's one-shot "
        "migration service runs this).",
    )
    migrate.set_defaults(run=_migrate)

    similar = sub.add_parser(
        "similar",
        parents=[common, fields],
        help="the stored documents closest to a file",
        description="Fingerprint PATH (nothing is stored) and list the closest stored "
        "documents with their Jaccard and containment similarity. The candidate index answers: the records of "
        "the last two windows (DOCSIEVE_INDEX_WINDOW days); --all searches every stored record.",
    )
    similar.add_argument("path", metavar="PATH")
    similar.add_argument("--limit", type=int, default=10, help="how many to list (default 10)")
    similar.add_argument(
        "--all",
        action="store_true",
        help="search every stored record, not only the index's window (a pass over the store)",
    )
    similar.set_defaults(run=_similar)

    serve = sub.add_parser(
        "serve",
        parents=[common],
        help="the HTTP API and the web page of stories",
        description="Serve the HTTP API (/v1, OpenAPI at /openapi.json, its pages at /docs) and the web page of "
        "stories. Every /v1 route needs an API key (`docsieve keys create`). On the embedded default documents "
        "are decided in the request; with DOCSIEVE_API_QUEUE=on they are queued to the deployment's workers. "
        "Needs pip install 'docsieve[api]'.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    serve.add_argument("--log-json", action="store_true", help="log one JSON object a line")
    serve.set_defaults(run=_serve)

    api_keys = sub.add_parser(
        "keys",
        parents=[common],
        help="API keys: create, list, revoke",
        description="API keys for `docsieve serve`. A key is shown once, when it is made; only its hash is kept. "
        "Scopes: read (records, stories, similar), submit (also send documents and URLs), admin (also delete).",
    )
    key_commands = api_keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = key_commands.add_parser("create", parents=[common], help="make a key and print it (once)")
    create.add_argument("--scope", required=True, choices=["read", "submit", "admin"])
    create.add_argument("--name", default="", help="who or what it is for (default: its id)")
    create.set_defaults(run=_keys_create)
    listing = key_commands.add_parser("list", parents=[common], help="every key: id, name, scope, made, revoked")
    listing.set_defaults(run=_keys_list)
    revoke = key_commands.add_parser("revoke", parents=[common], help="revoke a key by its id")
    revoke.add_argument("id", help="the key's id (as `keys list` shows it), or the key itself")
    revoke.set_defaults(run=_keys_revoke)

    extended = CommandLine(sub, common, fields)
    _load_extensions(extended)
    status.set_defaults(run=lambda args, settings: _status(extended, settings))
    return parser


def _load_extensions(cli: CommandLine) -> None:
    from importlib.metadata import entry_points

    for entry in sorted(entry_points(group=EXTENSIONS), key=lambda e: e.name):
        try:
            add = entry.load()
        except ImportError as exc:  # a broken extension costs its own commands, not the others
            print(f"docsieve: the {entry.name} commands are not available: {exc}", file=sys.stderr)
            continue
        add(cli)


class _ShowVersion(argparse._VersionAction):
    """argparse's ``--version`` (its printing too, which a closed or broken standard output does not fail), with the
    installed version looked up only when asked: importlib.metadata took 30 ms of every command's start."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        self.version = f"%(prog)s {_version()}"
        super().__call__(parser, *args)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("docsieve")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    import time

    from docsieve.prepare import Preparing, ahead_by_default
    from docsieve.readers import read

    started = time.perf_counter()
    if missing := missing_paths(args.paths):
        print(f"docsieve: {missing}; nothing was ingested", file=sys.stderr)
        return 2
    urls = [p for p in args.paths if is_url(p)]
    items = read([p for p in args.paths if not is_url(p)], settings.max_document_bytes, fields=field_map(args))
    # Files start being prepared (extracted, fingerprinted) now, while the store opens; fetched pages are
    # read after it (their conditional requests need the validators the store keeps).
    preparing = None if urls else Preparing(items, settings, ahead=ahead_by_default(settings))
    pages: list = []
    bar = None
    try:
        from docsieve.index import open_index
        from docsieve.pipeline import Pipeline
        from docsieve.store import Store

        index = open_index(settings)
        pipeline = Pipeline(Store(settings.store, fingerprints=settings.fingerprint_parameters), settings, index)
        failed = True  # until the ingest is done: then the index's last batches are written to its files at close
        try:
            if urls:
                from docsieve.web import fetch_here

                pages = fetch_here(urls, pipeline.store, settings)
                items = itertools.chain(items, (page.item for page in pages if page.item is not None))
            if not args.quiet and sys.stderr.isatty():
                from tqdm import tqdm

                bar = tqdm(unit="doc", desc="ingest", file=sys.stderr, dynamic_ncols=True)
            with _stopping_at_ctrl_c() as stopped:
                preparing = preparing or Preparing(items, settings, ahead=ahead_by_default(settings))
                progress = bar.update if bar is not None else None
                if args.own_process:
                    # What the start-up made (the modules, the open store) lives as long as this process: kept out
                    # of the collector's full collections, which walked it all again and again (docs/benchmarks.md).
                    gc.freeze()
                summary = pipeline.ingest(preparing, progress=progress, stop=stopped.is_set)
            if pages and not stopped.is_set():  # only now, with the pages stored, may their next fetch be conditional
                from docsieve.web import save_validators

                save_validators(pipeline.store, (page.validators for page in pages))
            failed = False
        finally:
            if bar is not None:  # not `if bar`: a bar without a total has no truth value (tqdm raises)
                bar.close()
            pipeline.close(flush=not failed)
    finally:
        if preparing is not None:  # closed by the ingest, unless something failed before it began
            preparing.close()
    print(
        f"read {summary.read}  new {summary.new}  exact copies {summary.exact}  near copies {summary.near}  "
        f"rejected {summary.rejected}  already stored {summary.unchanged}"
        + (f"  not modified {sum(page.item is None for page in pages)}" if pages else "")
        + (f"  stories merged {summary.merged}" if summary.merged else "")
    )
    summary.elapsed = time.perf_counter() - started  # the whole run: fetching pages included
    print(f"elapsed {summary.elapsed:.2f} s  {summary.docs_per_s:,.1f} docs/s  store {redacted(settings.store)}")
    for reason, n in sorted(summary.reasons.items(), key=lambda kv: -kv[1]):
        print(f"  rejected {n}: {reason}")
    if stopped.is_set():
        print("docsieve: interrupted after the batch in hand; ingesting again goes on from there", file=sys.stderr)
        return 130
    if summary.read == 0:
        if pages:  # every page unchanged since its last fetch
            return 0
        print("docsieve: nothing to ingest", file=sys.stderr)
        return 1
    return 0 if summary.ingested else 1


@contextlib.contextmanager
def _stopping_at_ctrl_c() -> Iterator[threading.Event]:
    """The first Ctrl-C asks the ingest to stop after the batch in hand (whose transaction it would
    otherwise cut short); a second one stops it at once."""
    stopped = threading.Event()
    if threading.current_thread() is not threading.main_thread():  # only the main thread hears signals
        yield stopped
        return

    def interrupted(signum: int, frame: object) -> None:
        if stopped.is_set():
            raise KeyboardInterrupt
        stopped.set()
        print("\ndocsieve: stopping after the batch in hand (Ctrl-C again to stop at once)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        yield stopped
    finally:
        signal.signal(signal.SIGINT, previous)


def field_map(args: argparse.Namespace):
    """The JSON field names the command line gave (``--text-field content``...), the others as default."""
    from docsieve.readers import FieldMap

    given = {name: getattr(args, f"{name}_field") for name in MAPPED_FIELDS}
    return FieldMap(**{name: field for name, field in given.items() if field is not None})


def is_url(arg: str) -> bool:
    """Anything with a scheme is a URL (an unsupported scheme is then rejected as such, not as a path)."""
    scheme, sep, _ = arg.partition("://")
    return bool(sep) and scheme[:1].isalpha() and all(c.isalnum() or c in "+.-" for c in scheme)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    try:
        from docsieve.service import serve
    except ModuleNotFoundError as exc:
        print(f"docsieve: serve needs the API's packages: pip install 'docsieve[api]' ({exc})", file=sys.stderr)
        return 2
    serve(settings, args.host, args.port, log_json=args.log_json)
    return 0


def _keys_create(args: argparse.Namespace, settings: Settings) -> int:
    from docsieve import keys
    from docsieve.store import Store

    store = Store(settings.store, fingerprints=settings.fingerprint_parameters)
    try:
        made, key = keys.create(store, args.scope, args.name)
    finally:
        store.close()
    print(key)
    print(f"docsieve: key {made.id} ({made.name}, scope {made.scope}); it is shown only now", file=sys.stderr)
    return 0


def _keys_list(args: argparse.Namespace, settings: Settings) -> int:
    from docsieve import keys
    from docsieve.store import Store

    store = Store(settings.store, readonly=True)
    try:
        found = keys.all_keys(store)
    finally:
        store.close()
    for key in found:
        revoked = f"  revoked {key.revoked_at:%Y-%m-%d %H:%M:%S}" if key.revoked_at else ""
        made = f"{key.created_at:%Y-%m-%d %H:%M:%S}" if key.created_at else ""
        print(f"{key.id}  {key.scope:<6}  {made}  {key.name}{revoked}")
    print(f"{len(found)} keys, {sum(k.revoked_at is None for k in found)} in use")
    return 0


def _keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from docsieve import keys
    from docsieve.store import Store

    store = Store(settings.store, fingerprints=settings.fingerprint_parameters)
    try:
        key = keys.revoke(store, args.id)
    except keys.KeyProblem as exc:
        print(f"docsieve: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"revoked {key.id} ({key.name}) at {key.revoked_at:%Y-%m-%d %H:%M:%S}")
    return 0


def _failures(args: argparse.Namespace, settings: Settings) -> int:
    from docsieve.store import Store

    store = Store(settings.store, readonly=True)
    try:
        found = store.recent_failures(limit=args.limit, include_retried=args.all)
    finally:
        store.close()
    for failure in found:
        sources = json.loads(failure["sources"])
        shown = ", ".join(str(s) for s in sources[:3]) + (f" and {len(sources) - 3} more" if len(sources) > 3 else "")
        retried = f"  retried {failure['retried_at']} as {failure['retry_task_id']}" if failure["retried_at"] else ""
        print(f"{failure['id']}  {failure['failed_at']}  {failure['task']}  {len(sources)} items{retried}")
        print(f"    error: {failure['error']}")
        print(f"    items: {shown}")
    print(f"{len(found)} failures" + ("" if args.all else " not retried yet"))
    return 0


def _status(cli: CommandLine, settings: Settings) -> int:
    """Each part of the deployment that answers is shown; one that does not is said in one line on standard
    error (and the exit code is 1), and the others are still shown."""
    parts = [*cli.status_first, _records_and_failures, *cli.status_last]
    answered = [part(settings) for part in parts]
    return 0 if all(answered) else 1


def _records_and_failures(settings: Settings) -> bool:
    from sqlalchemy.exc import SQLAlchemyError

    from docsieve.store import Store

    try:
        store = Store(settings.store, readonly=True)
        try:
            counts = store.counts()
            stories = store.story_counts() if store.schema_has_stories else None
            waiting, retried = store.failure_counts()
            recent = store.recent_failures(include_retried=False)
        finally:
            store.close()
    except StoreError as exc:  # its message names the store without its password
        print(f"docsieve: {exc}", file=sys.stderr)
        return False
    except SQLAlchemyError as exc:
        print(f"docsieve: the store {redacted(settings.store)}: {first_line(exc)}", file=sys.stderr)
        return False
    print("records: " + "  ".join(f"{s} {counts.get(s, 0)}" for s in ("canonical", "duplicate", "rejected")))
    if stories is not None:
        print(f"stories: {stories[0]}  with copies {stories[1]}  roundups {stories[2]}")
    hint = "  (`docsieve failures` lists them)" if waiting else ""
    print(f"failures: {waiting} not retried yet, {retried} retried{hint}")
    for failure in recent:  # by the ids `docsieve failures` and `docsieve retry` take
        when, error = f"{failure['failed_at']:%Y-%m-%d %H:%M:%S}", first_line(failure["error"])
        print(f"  {failure['id']}  {when}  {failure['task']}  {error}")
    return True


def first_line(said: object) -> str:
    """An error in one line: a database driver's message (not SQLAlchemy's wrapping of it), its first line."""
    said = getattr(said, "orig", None) or said
    lines = str(said).strip().splitlines()
    return lines[0] if lines else type(said).__name__


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from docsieve.store import SCHEMA_REVISION, Store

    Store(settings.store).close()
    print(f"store {redacted(settings.store)} at schema revision {SCHEMA_REVISION}")
    return 0


def _export(args: argparse.Namespace, settings: Settings) -> int:
    import io

    from docsieve import exports
    from docsieve.models import Status
    from docsieve.published import parse_published
    from docsieve.store import Store

    since = None
    if args.since:
        since = parse_published(args.since)
        if since is None:
            print(
                f"docsieve: --since {args.since!r} is not a time (ISO 8601, e.g. 2026-12-03T10:00:00Z)", file=sys.stderr
            )
            return 2
    if args.format == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ModuleNotFoundError:
            print("docsieve: --format parquet needs pyarrow: pip install 'docsieve[parquet]'", file=sys.stderr)
            return 2
        if not args.output and sys.stdout.isatty():
            print("docsieve: Parquet is binary: give --output FILE, or send it into a pipe or file", file=sys.stderr)
            return 2
    store = Store(settings.store, readonly=True)
    try:
        items = (
            store.iter_stories(since)
            if args.stories
            else store.iter_records(Status(args.status) if args.status else None, since)
        )

        def write(out: IO[bytes]) -> None:
            if args.format == "parquet":
                exports.write_parquet(*_flat(items, args.stories), out)
                return
            text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=False)
            try:
                if args.format == "csv":
                    exports.write_csv(*_flat(items, args.stories), text)
                else:
                    exports.write_jsonl(items, text)
            finally:
                text.flush()
                text.detach()

        if not args.output:
            write(sys.stdout.buffer)
            return 0
        try:
            _write_whole(args.output, write)
        except OSError as exc:
            print(f"docsieve: cannot write {args.output}: {exc.strerror or exc} (nothing was written)", file=sys.stderr)
            return 1
    finally:
        store.close()
    return 0


def _flat(items, stories: bool) -> tuple[Iterator[dict], tuple[str, ...]]:
    """Rows for a flat format: one per record, or one per member of each story."""
    from docsieve import exports

    if stories:
        return (row for story in items for row in exports.member_rows(story)), exports.MEMBER_COLUMNS
    return (exports.record_row(record) for record in items), exports.RECORD_COLUMNS


def _delete(args: argparse.Namespace, settings: Settings) -> int:
    from docsieve.store import Store

    store = Store(settings.store, fingerprints=settings.fingerprint_parameters)
    try:
        ids, failed = [], False
        for given in args.ids:
            found = store.matching(given, limit=2)
            if len(found) != 1 and not (found and found[0].id == given):
                print(
                    f"docsieve: {given!r}: {'no record' if not found else 'several records'} with that id",
                    file=sys.stderr,
                )
                failed = True
                continue
            ids.append(found[0].id)
        keys = store.index_keys(ids)
        removed = store.delete(ids, args.reason, settings)
        if settings.index_url and removed:  # the shared index forgets them too (the embedded one at its next start)
            from docsieve.index import open_index

            index = open_index(settings)
            try:
                for record_id in removed:
                    if record_id in keys:
                        index.remove(record_id, keys[record_id])
            finally:
                index.close()
        for record_id in removed:
            print(f"deleted {record_id}")
    finally:
        store.close()
    return 1 if failed else 0


def _write_whole(path: str, write: Callable[[IO[bytes]], None]) -> None:
    """Write a file whole or not at all: into a temporary file beside it, renamed over it at the end, so a
    failure (disk full, the store failing midway) leaves no partial file, and an older file as it was. A
    path that is not a regular file (``/dev/stdout``, a pipe), or a file in a folder that cannot be
    written, is written to directly."""
    import tempfile

    target = os.path.realpath(path)  # a link's target is replaced, not the link
    folder, name = os.path.split(target)
    if (os.path.exists(target) and not os.path.isfile(target)) or not os.access(folder, os.W_OK):
        # Not a regular file, or a file in a folder where no other can be made: written in place.
        with open(path, "wb") as out:
            write(out)
        return
    fd, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # as open() would have made it, not mkstemp's 0600
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _show(args: argparse.Namespace, settings: Settings) -> int:
    from docsieve.store import Store

    store = Store(settings.store, readonly=True)
    try:
        found = store.matching(args.id, limit=SHOW_AMBIGUOUS + 1)
        if not found:
            print(f"docsieve: no record with an id starting {args.id!r}", file=sys.stderr)
            return 1
        if len(found) > 1 and found[0].id != args.id:
            more = " and more" if len(found) > SHOW_AMBIGUOUS else ""
            print(
                f"docsieve: {args.id!r} is the start of several ids{more}; give more of the one you mean:",
                file=sys.stderr,
            )
            for record in found[:SHOW_AMBIGUOUS]:
                print(f"  {record.id}  {record.status}  {record.title or ''}  ({record.source})", file=sys.stderr)
            return 1
        record = found[0]
        print(_describe(record))
        story = store.story(record.story_id) if record.story_id else None
        if story is not None:
            _print_story(store, story, record.id)
        if record.text:
            print()
            print(record.text)
    finally:
        store.close()
    return 0


def _print_story(store, story, shown: str) -> None:
    first = story.first_published
    print(
        f"  story {story.id}: {1 + len(story.members)} record{'s' if story.members else ''}"
        + (f", first published {first.isoformat()}" if first else "")
    )
    for r in (story.canonical, *story.members):
        mark = "*" if r.id == shown else " "
        how = "canonical" if r.id == story.canonical.id else f"{r.method} {r.similarity}"
        when = r.published_at.isoformat() if r.published_at else "undated"
        print(f"   {mark}{r.id}  {how:<19} {when:<25} {r.outlet or ''}  {r.source}")
    for story_id, containment, record_id in story.contains:
        held = store.story(story_id)
        title = f"  {held.canonical.title}" if held and held.canonical.title else ""
        print(f"  holds story {story_id} in {record_id} (containment {containment}){title}")
    for record_id, containment in story.contained_in:
        holder = store.get(record_id)
        title = f"  {holder.title}" if holder and holder.title else ""
        print(f"  held in {record_id} (containment {containment}){title}")


def _describe(record) -> str:
    lines = [f"{record.id}  {record.status}  {record.source}"]
    for label, value in (
        ("title", record.title),
        ("language", record.language),
        ("url", record.url),
        ("published", record.published),
        ("author", record.author),
        ("outlet", record.outlet),
        ("images", ", ".join(record.images)),
        ("reason", record.reason),
        ("content_hash", record.content_hash),
        ("stored", record.created_at),
    ):
        if value:
            lines.append(f"  {label}: {value}")
    return "\n".join(lines)


def _similar(args: argparse.Namespace, settings: Settings) -> int:
    from docsieve.index import open_index
    from docsieve.pipeline import Pipeline
    from docsieve.readers import read
    from docsieve.store import Store

    if missing := missing_paths([args.path]):
        print(f"docsieve: {missing}", file=sys.stderr)
        return 2
    index = open_index(settings)
    pipeline = Pipeline(Store(settings.store, readonly=True), settings, index)
    try:
        found_any = False
        items = read([args.path], settings.max_document_bytes, fields=field_map(args))
        for source, matches in pipeline.similar(items, args.limit, everything=args.all):
            found_any = True
            print(source)
            if isinstance(matches, str):
                print(f"  rejected: {matches}")
                continue
            if not matches:
                print("  no similar stored document")
            for match in matches:
                print(
                    f"  {match.record.id}  jaccard {match.jaccard:.3f}  containment {match.containment:.3f}  "
                    f"{match.record.status}  {match.record.title or ''}  ({match.record.source})"
                )
        return 0 if found_any else 1
    finally:
        pipeline.close()


def console() -> None:
    """The ``docsieve`` console command."""
    sys.exit(main(own_process=True))


if __name__ == "__main__":
    console()
