"""The ``docsieve`` command: a thin layer over the pipeline and the store."""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from worker.settings import Settings, SettingsError, StoreError, redacted

SHOW_AMBIGUOUS = 10  # ids listed when a prefix names several records

# The parts of a document a batch's JSON objects hold (readers.FieldMap): named here, not imported, so
# that every command's start-up does not load the readers.
MAPPED_FIELDS = ("text", "id", "title", "url", "published", "author", "language", "outlet")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.store == "":
        parser.error("--store must not be empty: a SQLAlchemy URL, or the path of a SQLite file")
    try:
        settings = Settings.from_env(store=args.store)
    except SettingsError as exc:
        print(f"docsieve: {exc}", file=sys.stderr)
        return 2
    try:
        return args.run(args, settings)
    except StoreError as exc:
        print(f"docsieve: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `docsieve export | head`
        return 0
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
    return f"the store {redacted(store)}: {_first_line(exc)}"


def _missing_paths(paths: Sequence[str]) -> str | None:
    """A path given on the command line that is not there: said at once, nothing read."""
    for path in paths:
        if path == "-" or _is_url(path):
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
    parser.add_argument("--version", action=_Version, help="show the version and exit")
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
        help="write every record (or story) as JSON Lines",
        description="One JSON object per record, in arrival order; with --stories, one per story: its canonical, "
        "title, first publication, and every member with its source, outlet, method and similarity to the canonical.",
    )
    export.add_argument("--format", choices=["jsonl"], default="jsonl")
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

    submit = sub.add_parser(
        "submit",
        parents=[common, fields],
        help="queue files, directories, stdin or URLs to a running deployment",
        description="Read the inputs here and queue them, in batches, to the deployment's workers (URLs go to "
        "the fetch workers); returns at once and prints what it queued, or with --wait follows the tasks to the end.",
    )
    submit.add_argument("paths", nargs="+", metavar="PATH", help="file, directory, URL, or - for stdin")
    submit.add_argument("--wait", action="store_true", help="follow progress until every task is done")
    submit.add_argument("--quiet", action="store_true", help="no progress bar")
    submit.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="with --wait: give up waiting after this long (the tasks go on); exit 3",
    )
    submit.set_defaults(run=_submit)

    worker = sub.add_parser(
        "worker",
        parents=[common],
        help="run a worker of the deployment",
        description="Start a Celery worker on the CPU queue (extract, fingerprint, decide, store) with a process "
        "pool, one process per core unless --concurrency says otherwise; with --io, a fetch worker on the I/O "
        "queue (fetching pages, polling sources) with a thread pool of DOCSIEVE_FETCH_CONCURRENCY threads.",
    )
    worker.add_argument("--io", action="store_true", help="serve the I/O queue (fetching) instead of the CPU queue")
    worker.add_argument(
        "--concurrency", "-c", type=int, help="worker processes (default: the number of cores), or threads with --io"
    )
    worker.add_argument("--loglevel", default="INFO")
    worker.add_argument(
        "--hostname",
        "-n",
        help="node name (default: the queue's name at this host, docsieve.cpu@HOST, with --io docsieve.io@HOST)",
    )
    worker.set_defaults(run=_worker)

    status = sub.add_parser(
        "status",
        parents=[common],
        help="queue depths, workers and fetchers online, records, failures, source polls",
        description="A look at a running deployment: queue depths, the CPU workers and the fetchers online, "
        "records by status, the failures not retried yet (by the ids `docsieve failures` and `retry` take), and "
        "the sources whose last poll failed or that are overdue. A part that cannot be read (the broker, the "
        "store, Redis) is said in one line, the others are still shown, and the exit code is 1.",
    )
    status.set_defaults(run=_status)

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

    retry = sub.add_parser(
        "retry",
        parents=[common],
        help="send failed tasks again",
        description="Queue the documents or URLs of failed tasks again, each failure as one task to the task that "
        "failed; a retried failure is marked as such (with the new task id) and not retried twice.",
    )
    retry.add_argument("ids", nargs="*", type=int, metavar="ID", help="failure ids (see `docsieve failures`)")
    retry.add_argument("--all", action="store_true", help="every failure not retried yet")
    retry.set_defaults(run=_retry)

    scheduler = sub.add_parser(
        "scheduler",
        parents=[common],
        help="poll the sources of the sources file on their schedule",
        description="Run the Celery beat scheduler of the deployment: every source of DOCSIEVE_SOURCES_FILE "
        "(TOML) is polled every `interval` seconds by the fetch workers. Edits of the file take effect "
        "without a restart; a second scheduler started by mistake sends nothing while the first runs.",
    )
    scheduler.add_argument("--loglevel", default="INFO")
    scheduler.set_defaults(run=_scheduler)

    reindex = sub.add_parser(
        "reindex",
        parents=[common],
        help="rebuild the shared candidate index from the store",
        description="Drop the Redis candidate index (DOCSIEVE_INDEX_URL) and rebuild it from the keys every "
        "record keeps in the store. Workers catch up by themselves after a crash or a Redis restart; run this "
        "when Redis lost part of its data, or after pointing DOCSIEVE_INDEX_URL at a new Redis.",
    )
    reindex.set_defaults(run=_reindex)

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
        "documents with their Jaccard and containment similarity.",
    )
    similar.add_argument("path", metavar="PATH")
    similar.add_argument("--limit", type=int, default=10, help="how many to list (default 10)")
    similar.set_defaults(run=_similar)
    return parser


class _Version(argparse.Action):
    """``--version``, looked up only when asked for: importing importlib.metadata and finding the
    distribution took 17 ms at the start of every command."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            shown = version("docsieve")
        except PackageNotFoundError:  # run from a source tree that was never installed
            shown = "(not installed)"
        parser.exit(message=f"{parser.prog} {shown}\n")


@contextmanager
def _few_collections() -> Iterator[None]:
    """A batch job with the garbage collector mostly out of the way (prepare.collect_less); restored after."""
    from worker.prepare import collect_less

    thresholds = collect_less()
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    import time

    from worker.prepare import prepare_ahead
    from worker.readers import read

    started = time.perf_counter()
    if missing := _missing_paths(args.paths):
        print(f"docsieve: {missing}; nothing was ingested", file=sys.stderr)
        return 2
    urls = [p for p in args.paths if _is_url(p)]
    items = read([p for p in args.paths if not _is_url(p)], settings.max_document_bytes, fields=_field_map(args))
    pages: list = []
    with _few_collections():
        # Files only: the first batches are read and prepared while this thread imports the storage code
        # and opens the store (a fifth of a short run's time). Pages need the store first, for the
        # validators of their conditional requests.
        batches = None if urls else prepare_ahead(items, settings)
        try:
            from worker.pipeline import Pipeline
            from worker.store import Store

            gc.freeze()  # what the storage code loaded is no garbage either (see prepare.collect_less)
            pipeline = Pipeline(Store(settings.store, fingerprints=settings.fingerprint_parameters), settings)
        except BaseException:
            if batches:
                batches.close()
            raise
        bar = None
        try:
            if urls:
                pages = _fetch_here(urls, pipeline.store, settings)
                items = itertools.chain(items, (page.item for page in pages if page.item is not None))
                batches = prepare_ahead(items, settings)
            if not args.quiet and sys.stderr.isatty():
                from tqdm import tqdm

                bar = tqdm(unit="doc", desc="ingest", file=sys.stderr, dynamic_ncols=True)
            assert batches is not None
            summary = pipeline.ingest_prepared(batches, progress=bar.update if bar is not None else None)
            if pages:  # only now, with the pages stored, may their next fetch be conditional
                from worker.web import save_validators

                save_validators(pipeline.store, (page.validators for page in pages))
        finally:
            if batches:
                batches.close()
            if bar is not None:  # not `if bar`: a bar without a total has no truth value (tqdm raises)
                bar.close()
            pipeline.close()
    print(
        f"read {summary.read}  new {summary.new}  exact copies {summary.exact}  near copies {summary.near}  "
        f"rejected {summary.rejected}  already stored {summary.unchanged}"
        + (f"  not modified {sum(page.item is None for page in pages)}" if pages else "")
    )
    summary.elapsed = time.perf_counter() - started  # the whole run: fetching pages included
    print(f"elapsed {summary.elapsed:.2f} s  {summary.docs_per_s:,.1f} docs/s  store {redacted(settings.store)}")
    for reason, n in sorted(summary.reasons.items(), key=lambda kv: -kv[1]):
        print(f"  rejected {n}: {reason}")
    if summary.read == 0:
        if pages:  # every page unchanged since its last fetch
            return 0
        print("docsieve: nothing to ingest", file=sys.stderr)
        return 1
    return 0 if summary.ingested else 1


def _field_map(args: argparse.Namespace):
    """The JSON field names the command line gave (``--text-field content``...), the others as default."""
    from worker.readers import FieldMap

    given = {name: getattr(args, f"{name}_field") for name in MAPPED_FIELDS}
    return FieldMap(**{name: field for name, field in given.items() if field is not None})


def _is_url(arg: str) -> bool:
    """Anything with a scheme is a URL (an unsupported scheme is then rejected as such, not as a path)."""
    scheme, sep, _ = arg.partition("://")
    return bool(sep) and scheme[:1].isalpha() and all(c.isalnum() or c in "+.-" for c in scheme)


def _fetch_here(urls: list[str], store, settings: Settings) -> list:
    """The embedded default fetches in this process, on a thread pool; a page that cannot be reached now
    is rejected with the reason (the deployment tries it again later instead)."""
    from worker.fetch import Fetcher
    from worker.models import Rejection
    from worker.web import Page, Unreachable, fetch_pages, known_validators

    fetcher = Fetcher(settings)
    try:
        known = known_validators(store, urls)
        return [
            Page(got.url, Rejection.of(got.url, f"unreachable: {got.reason}", got.url))
            if isinstance(got, Unreachable)
            else got
            for got in fetch_pages(fetcher, urls, known, settings.fetch_concurrency)
        ]
    finally:
        fetcher.close()


def _submit(args: argparse.Namespace, settings: Settings) -> int:
    from kombu.exceptions import OperationalError
    from redis.exceptions import RedisError

    from worker.celery_app import app, queue_names
    from worker.messages import FETCH_TASK, URLS_PER_TASK, message_batches, to_message
    from worker.models import batched
    from worker.payloads import Payloads, send_ingest
    from worker.readers import read

    if missing := _missing_paths(args.paths):
        print(f"docsieve: {missing}; nothing was queued", file=sys.stderr)
        return 2
    cpu_queue, io_queue = queue_names(settings)
    queued_tasks = []
    urls = [p for p in args.paths if _is_url(p)]
    documents = 0
    try:  # at once, rather than after Celery's own reconnection attempts (some 20 s)
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, interval_start=0.5)
    except OperationalError as exc:
        print(f"docsieve: cannot reach the broker at {redacted(settings.broker_url)}: {exc}", file=sys.stderr)
        return 1
    payloads = Payloads.of(settings)
    try:
        for chunk in batched(urls, URLS_PER_TASK):
            queued_tasks.append(app.send_task(FETCH_TASK, args=[chunk], queue=io_queue))
            documents += len(chunk)
        paths = [p for p in args.paths if not _is_url(p)]
        messages = (to_message(item) for item in read(paths, settings.max_document_bytes, fields=_field_map(args)))
        for batch in message_batches(messages, settings.submit_batch, settings.submit_max_chars):
            queued_tasks.append(send_ingest(app.send_task, batch, cpu_queue, payloads))
            documents += len(batch)
    except (OperationalError, RedisError) as exc:  # the broker or the payloads' Redis: down, or full
        print(
            f"docsieve: could not queue to {redacted(settings.broker_url)}: {exc} "
            f"({documents} documents in {len(queued_tasks)} tasks were queued before)",
            file=sys.stderr,
        )
        return 1
    finally:
        if payloads:
            payloads.close()
    print(f"queued {documents} documents in {len(queued_tasks)} tasks to {redacted(settings.broker_url)}")
    if not args.wait:
        return 0 if documents else 1
    return _follow(queued_tasks, documents, quiet=args.quiet, timeout=args.timeout)


def _follow(tasks, documents: int, quiet: bool, timeout: float | None = None) -> int:
    """Wait for every task (or until ``timeout``), with a progress bar on a terminal; print the totals.
    What goes wrong on the way is said as it happens, a line each on standard error (above the bar): a task
    that failed and will be retried, a URL that could not be fetched now and will be tried again later, a
    task that failed for good."""
    import time
    from collections import Counter

    from celery import states
    from celery.result import AsyncResult

    from worker.celery_app import Retrying

    deadline = time.monotonic() + timeout if timeout else None
    bar = None
    if not quiet and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=documents, unit="doc", desc="ingest", file=sys.stderr, dynamic_ncols=True)

    def say(line: str) -> None:
        if bar is not None:
            bar.write(line, file=sys.stderr)  # clears the bar, writes the line, draws the bar again below it
        else:
            print(line, file=sys.stderr)

    totals: Counter[str] = Counter()
    pending = list(tasks)
    failed = 0
    retried: dict[str, str] = {}  # what was said last of each task waiting for its retry
    while pending:
        still = []
        for task in pending:
            state = task.state  # one read of the result backend
            if state not in states.READY_STATES:
                # Which attempt failed and why (worker.tasks.IngestTask.on_retry), said once per attempt.
                info = task.info if state == states.RETRY else None
                if isinstance(info, Retrying) and retried.get(task.id) != str(info):
                    retried[task.id] = str(info)
                    say(f"retrying task {task.id}: {_first_line(info)}")
                still.append(task)
            elif state == states.SUCCESS:
                result = task.result
                totals.update({k: v for k, v in result.items() if isinstance(v, int)})
                # A fetch task hands its pages to ingest tasks (and unreachable URLs to a later fetch).
                still += [AsyncResult(task_id, app=task.app) for task_id in result.get("followups", [])]
                for url, reason in result.get("deferred", []):
                    say(f"unreachable for now, trying again later: {url}: {_first_line(reason)}")
                if bar is not None:
                    bar.update(result.get("received", 0) + result.get("not_modified", 0))
            else:
                failed += 1
                say(f"task {task.id} failed: {_first_line(_reason(task.info))} (see `docsieve failures`)")
        pending = still
        if pending and deadline and time.monotonic() > deadline:
            break
        if pending:
            time.sleep(0.05)  # the end is seen within 50 ms; a poll is one Redis read a pending task
    if bar is not None:
        bar.close()
    print(
        f"received {totals['received']}  new {totals['canonical']}  exact copies {totals['exact']}  "
        f"near copies {totals['near']}  rejected {totals['rejected']}  "
        f"already stored {totals['received'] - totals['stored']}  not modified {totals['not_modified']}  "
        f"failed tasks {failed}"
    )
    if pending:
        print(f"docsieve: stopped waiting with {len(pending)} tasks still queued or running", file=sys.stderr)
        return 3
    return 1 if failed else 0


def _reason(exc: object) -> str:
    """A task's error as the worker raised it: its type and message."""
    return f"{type(exc).__name__}: {exc}" if isinstance(exc, BaseException) else str(exc)


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    import os

    os.environ["DOCSIEVE_STORE"] = settings.store  # before the app reads its settings at import
    from worker.celery_app import app, queue_names

    cpu_queue, io_queue = queue_names(settings)
    queue = io_queue if args.io else cpu_queue
    if args.io:
        concurrency = args.concurrency or settings.fetch_concurrency
        argv = ["worker", "--queues", queue, "--pool", "threads", "--concurrency", str(concurrency)]
    else:
        argv = ["worker", "--queues", queue, "--pool", "prefork"]
        if args.concurrency:
            argv += ["--concurrency", str(args.concurrency)]
    # Named after its queue: a CPU worker and a fetcher on one host (or workers of two deployments sharing a
    # broker) are two nodes, not one `celery@HOST` twice, which Celery's control replies merge.
    argv += ["--loglevel", args.loglevel, "--hostname", args.hostname or f"{queue}@%h"]
    app.worker_main(argv)
    return 0


def _failures(args: argparse.Namespace, settings: Settings) -> int:
    from worker.store import Store

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


def _retry(args: argparse.Namespace, settings: Settings) -> int:
    from worker.celery_app import app, queue_names
    from worker.messages import INGEST_TASK
    from worker.payloads import Payloads, send_ingest
    from worker.store import Store

    if not args.ids and not args.all:
        print("docsieve: name the failures to retry (ids from `docsieve failures`) or give --all", file=sys.stderr)
        return 2
    store = Store(settings.store, migrate=False)
    payloads = Payloads.of(settings)
    try:
        found = store.failures_to_retry(None if args.all else args.ids)
        for failure in found:
            # Routed by task name, as the first time (fetching to the I/O queue, the rest to the CPU queue).
            messages = json.loads(failure["payload"])
            if failure["task"] != INGEST_TASK:
                sent = app.send_task(failure["task"], args=[messages])
            elif isinstance(messages, dict):  # documents still in their payload: its key and sources again
                sent = app.send_task(INGEST_TASK, kwargs=messages, queue=queue_names(settings)[0])
            else:
                sent = send_ingest(app.send_task, messages, queue_names(settings)[0], payloads)
            store.mark_retried(failure["id"], sent.id)
            print(f"retried {failure['id']} ({failure['task']}) as task {sent.id}")
    finally:
        store.close()
        if payloads:
            payloads.close()
    missing = set(args.ids) - {f["id"] for f in found}
    for failure_id in sorted(missing):
        print(f"docsieve: no failure {failure_id} waiting to be retried", file=sys.stderr)
    return 1 if missing else 0


def _scheduler(args: argparse.Namespace, settings: Settings) -> int:
    from scheduler import run_scheduler

    run_scheduler(settings, loglevel=args.loglevel)
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    """Each part of the deployment that answers is shown; one that does not is said in one line on standard
    error (and the exit code is 1), and the others are still shown."""
    answered = [_queues_and_workers(settings), _records_and_failures(settings), _source_polls(settings)]
    return 0 if all(answered) else 1


def _queues_and_workers(settings: Settings) -> bool:
    from collections import Counter

    from kombu.exceptions import OperationalError

    from worker.celery_app import app, queue_names

    queues = queue_names(settings)
    try:
        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0.5)  # at once, not after minutes of retries
            for queue in queues:
                try:
                    depth = conn.default_channel.queue_declare(queue=queue, passive=True).message_count
                except Exception:  # a queue nobody declared yet is empty
                    depth = 0
                print(f"queue {queue}: {depth} waiting")
        # Each reply apart ({node: queues}): two workers under one name would otherwise count as one.
        replies = app.control.broadcast("active_queues", reply=True, timeout=1.0)
    except OperationalError as exc:
        print(f"docsieve: cannot reach the broker at {redacted(settings.broker_url)}: {exc}", file=sys.stderr)
        return False
    answers = Counter(node for reply in replies for node in reply)
    consuming = {node: consumed for reply in replies for node, consumed in reply.items()}
    # Only the workers of this deployment, told apart by the queue they consume (a broker may serve several).
    for label, queue in zip(("workers", "fetchers"), queues, strict=True):
        nodes = sorted(node for node, consumed in consuming.items() if any(q.get("name") == queue for q in consumed))
        print(f"{label} online: {len(nodes)}" + (f" ({', '.join(nodes)})" if nodes else ""))
        for node in nodes:
            if answers[node] > 1:
                print(
                    f"docsieve: {answers[node]} workers answer as {node}, counted as one: give each its own --hostname",
                    file=sys.stderr,
                )
    return True


def _records_and_failures(settings: Settings) -> bool:
    from sqlalchemy.exc import SQLAlchemyError

    from worker.store import Store

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
        print(f"docsieve: the store {redacted(settings.store)}: {_first_line(exc)}", file=sys.stderr)
        return False
    print("records: " + "  ".join(f"{s} {counts.get(s, 0)}" for s in ("canonical", "duplicate", "rejected")))
    if stories is not None:
        print(f"stories: {stories[0]}  with copies {stories[1]}  roundups {stories[2]}")
    hint = "  (`docsieve failures` lists them)" if waiting else ""
    print(f"failures: {waiting} not retried yet, {retried} retried{hint}")
    for failure in recent:  # by the ids `docsieve failures` and `docsieve retry` take
        when, error = f"{failure['failed_at']:%Y-%m-%d %H:%M:%S}", _first_line(failure["error"])
        print(f"  {failure['id']}  {when}  {failure['task']}  {error}")
    return True


def _source_polls(settings: Settings) -> bool:
    import time

    from redis.exceptions import RedisError

    from scheduler.polls import PollLog

    log = PollLog.of(settings)
    if log is None:
        print("sources: polls are recorded only with DOCSIEVE_COORDINATION_URL")
        return True
    try:
        polls = log.all()
    except RedisError as exc:
        print(f"docsieve: cannot read the polls at {redacted(settings.coordination_url)}: {exc}", file=sys.stderr)
        return False
    finally:
        log.close()
    now = time.time()
    failing = [p for p in polls if p.error is not None]
    overdue = [p for p in polls if p.error is None and p.overdue(now)]
    print(f"sources: {len(polls)} polled, {len(failing)} failing, {len(overdue)} overdue")
    for poll in failing:
        in_a_row = f"{poll.failures} failed poll{'s' if poll.failures != 1 else ''} in a row"
        print(
            f"  {poll.source}: failing since {_when(poll.failing_since)} ({in_a_row}, last {_when(poll.at)}): "
            f"{_first_line(poll.error)}"
        )
    for poll in overdue:
        print(
            f"  {poll.source}: last polled {_when(poll.at)}, due every {poll.interval:g} s (no fetcher polls it, "
            f"or it left the sources file)"
        )
    return True


def _when(epoch: float | None) -> str:
    from datetime import UTC, datetime

    return "?" if epoch is None else datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _first_line(said: object) -> str:
    """An error in one line: a database driver's message (not SQLAlchemy's wrapping of it), its first line."""
    said = getattr(said, "orig", None) or said
    lines = str(said).strip().splitlines()
    return lines[0] if lines else type(said).__name__


def _reindex(args: argparse.Namespace, settings: Settings) -> int:
    from worker.index import RedisIndex
    from worker.store import Store

    if not settings.index_url:
        print(
            "docsieve: no shared index to rebuild (DOCSIEVE_INDEX_URL is not set; the embedded index is "
            "rebuilt from the store at every start)",
            file=sys.stderr,
        )
        return 1
    index = RedisIndex(settings.index_url, settings.queue_prefix)
    store = Store(settings.store, migrate=False)
    try:
        with store.writing() as txn:  # no worker decides while the index is rebuilt
            removed = index.clear()
            index.catch_up(txn)
    finally:
        store.close()
    print(f"index rebuilt from {redacted(settings.store)}: {removed} old keys removed")
    return 0


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from worker.store import SCHEMA_REVISION, Store

    Store(settings.store).close()
    print(f"store {redacted(settings.store)} at schema revision {SCHEMA_REVISION}")
    return 0


def _export(args: argparse.Namespace, settings: Settings) -> int:
    from worker.models import Status
    from worker.published import parse_published
    from worker.store import Store

    since = None
    if args.since:
        since = parse_published(args.since)
        if since is None:
            print(
                f"docsieve: --since {args.since!r} is not a time (ISO 8601, e.g. 2026-12-03T10:00:00Z)", file=sys.stderr
            )
            return 2
    store = Store(settings.store, readonly=True)
    try:
        items = (
            store.iter_stories(since)
            if args.stories
            else store.iter_records(Status(args.status) if args.status else None, since)
        )
        lines = (json.dumps(item.to_json(), ensure_ascii=False) + "\n" for item in items)
        if not args.output:
            sys.stdout.writelines(lines)
            return 0
        try:
            _write_whole(args.output, lines)
        except OSError as exc:
            print(f"docsieve: cannot write {args.output}: {exc.strerror or exc} (nothing was written)", file=sys.stderr)
            return 1
    finally:
        store.close()
    return 0


def _delete(args: argparse.Namespace, settings: Settings) -> int:
    from worker.store import Store

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
            from worker.index import RedisIndex

            index = RedisIndex(settings.index_url, settings.queue_prefix)
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


def _write_whole(path: str, lines: Iterator[str]) -> None:
    """Write a file whole or not at all: into a temporary file beside it, renamed over it at the end, so a
    failure (disk full, the store failing midway) leaves no partial file, and an older file as it was. A
    path that is not a regular file (``/dev/stdout``, a pipe), or a file in a folder that cannot be
    written, is written to directly."""
    import tempfile

    target = os.path.realpath(path)  # a link's target is replaced, not the link
    folder, name = os.path.split(target)
    if (os.path.exists(target) and not os.path.isfile(target)) or not os.access(folder, os.W_OK):
        # Not a regular file, or a file in a folder where no other can be made: written in place.
        with open(path, "w", encoding="utf-8") as out:
            out.writelines(lines)
        return
    fd, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.writelines(lines)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # as open() would have made it, not mkstemp's 0600
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _show(args: argparse.Namespace, settings: Settings) -> int:
    from worker.store import Store

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
    for story_id, containment in story.contains:
        held = store.story(story_id)
        title = f"  {held.canonical.title}" if held and held.canonical.title else ""
        print(f"  holds story {story_id} (containment {containment}){title}")
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
    from worker.pipeline import Pipeline
    from worker.readers import read
    from worker.store import Store

    if missing := _missing_paths([args.path]):
        print(f"docsieve: {missing}", file=sys.stderr)
        return 2
    pipeline = Pipeline(Store(settings.store, readonly=True), settings)
    try:
        found_any = False
        items = read([args.path], settings.max_document_bytes, fields=_field_map(args))
        for source, matches in pipeline.similar(items, args.limit):
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
    """The ``docsieve`` console command. It leaves without tearing the interpreter down: every command
    has closed its store (and so made everything durable) when ``main`` returns, and freeing a large
    ingest's objects one by one took 60-70 ms of a 5,000-article run."""
    code = main()
    logging.shutdown()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # `docsieve export | head`
        pass
    os._exit(code)


if __name__ == "__main__":
    console()
