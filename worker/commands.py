"""The deployment's subcommands of ``docsieve``: ``submit``, ``worker``, ``retry`` and ``reindex``, and the
queues and workers part of ``docsieve status``. Registered under the ``docsieve.commands`` entry points
(the core's CLI never imports this package); Celery, kombu and redis are imported only when a command
runs, so ``docsieve --help`` lists these commands without the deployment's packages installed."""

from __future__ import annotations

import argparse
import json
import sys

from docsieve.cli import CommandLine, field_map, first_line, is_url, missing_paths
from docsieve.settings import Settings, redacted


def add_commands(cli: CommandLine) -> None:
    submit = cli.sub.add_parser(
        "submit",
        parents=[cli.common, cli.fields],
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

    worker = cli.sub.add_parser(
        "worker",
        parents=[cli.common],
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
    worker.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve Prometheus metrics of every pool process on this port (default: DOCSIEVE_METRICS_PORT; 0: none)",
    )
    worker.add_argument("--log-json", action="store_true", help="log one JSON object a line")
    worker.set_defaults(run=_worker)

    retry = cli.sub.add_parser(
        "retry",
        parents=[cli.common],
        help="send failed tasks again",
        description="Queue the documents or URLs of failed tasks again, each failure as one task to the task that "
        "failed; a retried failure is marked as such (with the new task id) and not retried twice.",
    )
    retry.add_argument("ids", nargs="*", type=int, metavar="ID", help="failure ids (see `docsieve failures`)")
    retry.add_argument("--all", action="store_true", help="every failure not retried yet")
    retry.set_defaults(run=_retry)

    reindex = cli.sub.add_parser(
        "reindex",
        parents=[cli.common],
        help="rebuild the candidate index from the store",
        description="Drop the candidate index (the Redis one of DOCSIEVE_INDEX_URL, else the embedded files beside "
        "a SQLite store) and rebuild it from the keys every record keeps in the store. Both catch up by themselves "
        "after a crash or a Redis restart; run this when Redis lost part of its data, or after pointing "
        "DOCSIEVE_INDEX_URL at a new Redis.",
    )
    reindex.set_defaults(run=_reindex)
    cli.status_first.append(_queues_and_workers)


def _submit(args: argparse.Namespace, settings: Settings) -> int:
    from kombu.exceptions import OperationalError
    from redis.exceptions import RedisError

    from docsieve.models import batched
    from docsieve.readers import read
    from worker.celery_app import create_app, queue_names

    app = create_app(settings)
    from worker.messages import FETCH_TASK, URLS_PER_TASK, message_batches, to_message
    from worker.payloads import Payloads, send_ingest

    if missing := missing_paths(args.paths):
        print(f"docsieve: {missing}; nothing was queued", file=sys.stderr)
        return 2
    cpu_queue, io_queue = queue_names(settings)
    queued_tasks = []
    urls = [p for p in args.paths if is_url(p)]
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
        paths = [p for p in args.paths if not is_url(p)]
        messages = (to_message(item) for item in read(paths, settings.max_document_bytes, fields=field_map(args)))
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
                    say(f"retrying task {task.id}: {first_line(info)}")
                still.append(task)
            elif state == states.SUCCESS:
                result = task.result
                totals.update({k: v for k, v in result.items() if isinstance(v, int)})
                # A fetch task hands its pages to ingest tasks (and unreachable URLs to a later fetch).
                still += [AsyncResult(task_id, app=task.app) for task_id in result.get("followups", [])]
                for url, reason in result.get("deferred", []):
                    say(f"unreachable for now, trying again later: {url}: {first_line(reason)}")
                if bar is not None:
                    bar.update(result.get("received", 0) + result.get("not_modified", 0))
            else:
                failed += 1
                say(f"task {task.id} failed: {first_line(_reason(task.info))} (see `docsieve failures`)")
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
        f"failed tasks {failed}" + (f"  stories merged {totals['merged']}" if totals["merged"] else "")
    )
    if pending:
        print(f"docsieve: stopped waiting with {len(pending)} tasks still queued or running", file=sys.stderr)
        return 3
    return 1 if failed else 0


def _reason(exc: object) -> str:
    """A task's error as the worker raised it: its type and message."""
    return f"{type(exc).__name__}: {exc}" if isinstance(exc, BaseException) else str(exc)


def _worker(args: argparse.Namespace, settings: Settings) -> int:

    from worker.celery_app import create_app, queue_names

    app = create_app(settings)  # the store given on the command line included

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
    if args.log_json:
        from celery.signals import setup_logging

        from docsieve.logs import use_json

        use_json(args.loglevel.upper())  # from now on: warnings at start too
        # Celery configures logging only when nothing answers this signal: here, every record as JSON.
        setup_logging.connect(lambda **_: use_json(args.loglevel.upper()), weak=False)
        argv = ["--quiet", *argv]  # no banner: it is no log record
    port = settings.metrics_port if args.metrics_port is None else args.metrics_port
    if port:  # before the tasks are loaded: prometheus-client reads where to count when it is first imported
        from worker.metrics import serve

        serve(port)
    app.worker_main(argv)
    return 0


def _retry(args: argparse.Namespace, settings: Settings) -> int:
    from docsieve.store import Store
    from worker.celery_app import create_app, queue_names

    app = create_app(settings)
    from worker.messages import INGEST_TASK
    from worker.payloads import Payloads, send_ingest

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


def _queues_and_workers(settings: Settings) -> bool:
    from collections import Counter

    try:
        from kombu.exceptions import OperationalError

        from worker.celery_app import create_app, queue_names
    except ModuleNotFoundError:  # the embedded default alone: no queues to show, and nothing wrong
        print("queues: none (the deployment's packages are not installed: pip install 'docsieve[deploy]')")
        return True
    app = create_app(settings)

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


def _reindex(args: argparse.Namespace, settings: Settings) -> int:
    from docsieve.store import Store

    store = Store(settings.store, migrate=False)
    try:
        if not settings.index_url:
            from docsieve.index import SegmentIndex, open_index

            index = open_index(settings)
            if not isinstance(index, SegmentIndex) or index.directory is None:
                print(
                    "docsieve: no index to rebuild: this store's index lives in each process's memory", file=sys.stderr
                )
                return 1
            with store.writing() as txn:  # nobody decides while the files are rebuilt
                index.rebuild(txn)
            records, postings = index.size()
            shown = f"{redacted(settings.store)} in {index.directory}"
            print(f"index rebuilt from {shown}: {records} records, {postings} keys")
            return 0
        from worker.redis_index import RedisIndex

        shared = RedisIndex(
            settings.index_url,
            settings.queue_prefix,
            common=settings.common_key_records,
            window=settings.index_window,
        )
        with store.writing() as txn:  # no worker decides while the index is rebuilt
            removed = shared.clear()
            shared.catch_up(txn)
    finally:
        store.close()
    print(f"index rebuilt from {redacted(settings.store)}: {removed} old keys removed")
    return 0
