"""The commands that draw a progress bar, run in a pseudo-terminal as a person runs them. Piped (as every
other test runs them) they draw nothing, which is how a crash of the bar went unseen."""

from __future__ import annotations

import os
import re
from pathlib import Path

from tests.terminal import run_in_terminal
from tests.test_deployment import deployment, workers  # noqa: F401 (a fixture)


def _env(store: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCSIEVE_")}
    return env | {"DOCSIEVE_STORE": store}


def test_ingest_in_a_terminal_draws_its_bar_and_stores_the_seeds(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'tty.db'}"
    shown = run_in_terminal("ingest", "seeds/", env=_env(store))
    assert shown.returncode == 0, shown.output
    assert "Traceback" not in shown.output
    assert "\ringest: 25doc [" in shown.output, shown.output  # the bar, drawn over itself, at its last count
    summary = re.search(r"read (\d+)\s+new (\d+)", shown.output)
    assert summary and int(summary.group(1)) == 25 and int(summary.group(2)) > 0, shown.output
    again = run_in_terminal("ingest", "seeds/", env=_env(store))
    assert again.returncode == 0 and "already stored 25" in again.output, again.output


def test_standard_input_typed_at_a_terminal_ends_at_one_ctrl_d(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'typed.db'}"
    line = '{"id": "x", "text": "خبر عاجل من الرياض حول اجتماع مجلس الوزراء اليوم.", "source": "spa"}'
    shown = run_in_terminal("ingest", "-", env=_env(store), typed=line.encode() + b"\n\x04", timeout=30)
    assert shown.returncode == 0, shown.output
    assert re.search(r"read 1\s+new 1", shown.output), shown.output


def test_commands_that_draw_nothing_work_in_a_terminal_too(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'tty.db'}"
    assert run_in_terminal("ingest", "seeds/", "--quiet", env=_env(store)).returncode == 0
    for args in (("export", "--status", "canonical"), ("similar", "seeds/010_rafale_original.txt")):
        shown = run_in_terminal(*args, env=_env(store))
        assert shown.returncode == 0 and "Traceback" not in shown.output, (args, shown.output)
        assert shown.output.strip(), args


def test_submit_wait_in_a_terminal_follows_the_tasks_with_its_bar(deployment: dict) -> None:  # noqa: F811
    with workers(deployment, concurrency=1):
        shown = run_in_terminal("submit", "seeds/", "--wait", env=deployment)
    assert shown.returncode == 0, shown.output
    assert "Traceback" not in shown.output
    assert "\ringest: 100%" in shown.output and "25/25" in shown.output, shown.output
    assert re.search(r"received 25\s+new 13", shown.output), shown.output
