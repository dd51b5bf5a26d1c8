"""The scheduler's subcommand of ``docsieve`` (``scheduler``) and the source polls part of ``docsieve
status``, registered under the ``docsieve.commands`` entry points (the core's CLI never imports this
package)."""

from __future__ import annotations

import argparse
import sys

from docsieve.cli import CommandLine, first_line
from docsieve.settings import Settings, redacted


def add_commands(cli: CommandLine) -> None:
    scheduler = cli.sub.add_parser(
        "scheduler",
        parents=[cli.common],
        help="poll the sources of the sources file on their schedule",
        description="Run the Celery beat scheduler of the deployment: every source of DOCSIEVE_SOURCES_FILE "
        "(TOML) is polled every `interval` seconds by the fetch workers. Edits of the file take effect "
        "without a restart; a second scheduler started by mistake sends nothing while the first runs.",
    )
    scheduler.add_argument("--loglevel", default="INFO")
    scheduler.set_defaults(run=_scheduler)
    cli.status_last.append(_source_polls)


def _scheduler(args: argparse.Namespace, settings: Settings) -> int:
    from scheduler.beat import run_scheduler

    run_scheduler(settings, loglevel=args.loglevel)
    return 0


def _source_polls(settings: Settings) -> bool:
    import time

    if not settings.coordination_url:
        print("sources: polls are recorded only with DOCSIEVE_COORDINATION_URL")
        return True
    from redis.exceptions import RedisError

    from scheduler.polls import PollLog

    log = PollLog(settings.coordination_url, settings.queue_prefix)
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
            f"{first_line(poll.error)}"
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
