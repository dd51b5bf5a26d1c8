"""The ``docsieve`` command end to end: in a subprocess on the repository's seeds/, and in this process
(``main``) for what its commands show of stories."""

import contextlib
import csv
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from unittest.mock import ANY

import pytest

from docsieve.cli import main
from docsieve.pipeline import Pipeline
from docsieve.readers import FieldMap
from docsieve.settings import Settings
from docsieve.store import Store
from tests.conftest import REPO, fixture_text
from tests.services import free_port
from tests.test_readers import SNN
from tests.test_stories import edit, ingest, merge, text, words

FIELDS = {
    "id",
    "source",
    "status",
    "duplicate_of",
    "similarity",
    "method",
    "content_hash",
    "language",
    "title",
    "text",
    "images",
    "reason",
}


def docsieve(
    *args: str, store: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """The command in a process of its own, on this store (and these further variables)."""
    env = {**os.environ, "DOCSIEVE_STORE": store, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "docsieve.cli", *args],
        cwd=REPO,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


def summary(stdout: str) -> dict[str, int]:
    line = stdout.splitlines()[0]
    return {
        k.strip().replace(" ", "_"): int(v)
        for v, k in [(m.group(2), m.group(1)) for m in re.finditer(r"([a-z ]+?) (\d+)", line)]
    }


@pytest.mark.slow
def test_ingest_seeds_then_export_show_similar(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'cli.db'}"
    first = docsieve("ingest", "seeds/", store=store)
    assert first.returncode == 0, first.stderr
    counts = summary(first.stdout)
    assert counts["read"] >= 10 and counts["new"] >= 3
    assert counts["exact_copies"] >= 1 and counts["near_copies"] >= 2
    assert counts["rejected"] == 0
    assert "docs/s" in first.stdout

    exported = docsieve("export", "--format", "jsonl", store=store)
    assert exported.returncode == 0
    records = [json.loads(line) for line in exported.stdout.splitlines()]
    assert len(records) == counts["read"]
    by_id = {r["id"]: r for r in records}
    for r in records:
        assert r.keys() >= FIELDS
        assert "![" not in (r["text"] or "")
        if r["status"] == "duplicate":
            assert by_id[r["duplicate_of"]]["status"] == "canonical"
            assert r["method"] in ("exact", "near", "containment", "rewrite") and 0 < r["similarity"] <= 1
        else:
            assert r["duplicate_of"] is None
    sample = next(r for r in records if r["source"].endswith("000_3b0ecb07abc01b42.txt"))
    assert sample["language"] == "ar" and sample["images"] and sample["status"] == "canonical"

    again = docsieve("ingest", "seeds/", store=store)
    assert summary(again.stdout)["already_stored"] == counts["read"]

    canonical = next(
        r for r in records if r["status"] == "canonical" and any(c["duplicate_of"] == r["id"] for c in records)
    )
    shown = docsieve("show", canonical["id"][:8], store=store)
    assert shown.returncode == 0 and canonical["id"] in shown.stdout and "cop" in shown.stdout

    similar = docsieve("similar", "seeds/000_3b0ecb07abc01b42.txt", store=store)
    assert similar.returncode == 0
    assert re.search(rf"{sample['id']}\s+jaccard 1\.000", similar.stdout)


@pytest.mark.slow
def test_stdin_and_exit_codes(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'cli.db'}"
    ok = docsieve("ingest", "-", store=store, stdin="مقال قصير يصل من الدخل القياسي للاختبار.")
    assert ok.returncode == 0 and summary(ok.stdout)["new"] == 1
    nothing = docsieve("ingest", "-", store=store, stdin="   ")
    assert nothing.returncode == 1 and summary(nothing.stdout)["rejected"] == 1
    missing = docsieve("show", "ffffffff", store=store)
    assert missing.returncode == 1 and "no record" in missing.stderr


def test_bad_setting_is_a_clear_error(tmp_path: Path) -> None:
    env = {**os.environ, "DOCSIEVE_NUM_PERM": "100"}
    result = subprocess.run(
        [sys.executable, "-m", "docsieve.cli", "export"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert result.returncode == 2 and "DOCSIEVE_NUM_PERM" in result.stderr


@pytest.mark.slow
def test_store_option_before_or_after_the_command(tmp_path: Path) -> None:
    before, after = tmp_path / "before.db", tmp_path / "after.db"
    for args in (["--store", f"sqlite:///{before}", "ingest", "-"], ["ingest", "-", "--store", f"sqlite:///{after}"]):
        result = subprocess.run(
            [sys.executable, "-m", "docsieve.cli", *args],
            cwd=tmp_path,
            input="نص للتجربة",
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert result.returncode == 0, result.stderr
    assert before.exists() and after.exists() and not (tmp_path / "docsieve.db").exists()


def test_version_looked_up_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The installed version is read (importlib.metadata, some 30 ms) by ``--version`` alone, not by every
    command's start."""
    import importlib.metadata

    asked: list[str] = []
    monkeypatch.setattr(importlib.metadata, "version", lambda name: asked.append(name) or "9.9.9")
    assert main(["--store", str(tmp_path / "v.db"), "migrate"]) == 0 and asked == []
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and out.getvalue() == "docsieve 9.9.9\n" and asked == ["docsieve"]


def test_only_the_commands_own_process_keeps_its_objects_from_the_collector(tmp_path: Path) -> None:
    """``docsieve ingest`` as its own process freezes what its start-up made (``gc.freeze``: no full collection walks
    it again); called in another program's process, it leaves that program's collector as it was."""
    import gc

    assert gc.get_freeze_count() == 0  # nothing in this process freezes: else the test could not tell
    args = ["--store", str(tmp_path / "g.db"), "ingest", str(REPO / "seeds" / "000_3b0ecb07abc01b42.txt")]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(args) == 0
    assert gc.get_freeze_count() == 0
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(args, own_process=True) == 0
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


@pytest.mark.slow
def test_help_everywhere() -> None:
    for command in (
        [],
        ["ingest"],
        ["export"],
        ["show"],
        ["similar"],
        ["submit"],
        ["worker"],
        ["status"],
        ["migrate"],
        ["reindex"],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "docsieve.cli", *command, "--help"], cwd=REPO, capture_output=True, text=True
        )
        assert result.returncode == 0 and "--store" in result.stdout


def test_printed_urls_hide_passwords() -> None:
    from docsieve.settings import redacted as _shown

    assert (
        _shown("postgresql+psycopg://docsieve:secret@db:5432/docsieve")
        == "postgresql+psycopg://docsieve:***@db:5432/docsieve"
    )
    assert _shown("amqp://guest:guest@127.0.0.1:5672//") == "amqp://guest:***@127.0.0.1:5672//"
    assert _shown("sqlite:///docsieve.db") == "sqlite:///docsieve.db"


@pytest.mark.slow
def test_read_commands_do_not_create_a_store(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'typo.db'}"
    for command in (["export"], ["show", "abc"], ["similar", "seeds/"]):
        result = docsieve(*command, store=store)
        assert result.returncode == 2 and "no docsieve store" in result.stderr
    assert not (tmp_path / "typo.db").exists()


def test_submit_imports_neither_the_store_nor_numpy() -> None:
    """`docsieve submit` only reads files and queues messages: the modules it loads say so (SQLAlchemy
    and numpy cost a quarter of a second of start-up on a machine that also runs the workers)."""
    code = (
        "import sys, docsieve.cli, worker.messages, docsieve.readers, worker.celery_app\n"
        "print(sorted(m for m in ('sqlalchemy', 'numpy') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.slow
def test_submit_with_the_broker_down_says_so_at_once(tmp_path: Path) -> None:
    port = free_port()  # a port nothing listens on
    url = f"redis://127.0.0.1:{port}/0"
    env = {**os.environ, "DOCSIEVE_BROKER_URL": url, "DOCSIEVE_RESULT_BACKEND": url, "DOCSIEVE_INDEX_URL": url}
    done = subprocess.run(
        [sys.executable, "-m", "docsieve.cli", "submit", "seeds/"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert f"cannot reach the broker at {url}" in done.stderr and "Traceback" not in done.stderr


def test_submit_says_how_far_it_got_when_the_payloads_cannot_be_written(redis_url: str, prefix: str) -> None:
    """The broker answers but the Redis for the documents does not (down, or full under noeviction)."""
    port = free_port()
    env = {
        **os.environ,
        "DOCSIEVE_BROKER_URL": redis_url,
        "DOCSIEVE_RESULT_BACKEND": redis_url,
        "DOCSIEVE_INDEX_URL": f"redis://127.0.0.1:{port}/0",
        "DOCSIEVE_QUEUE_PREFIX": prefix,
    }
    done = subprocess.run(
        [sys.executable, "-m", "docsieve.cli", "submit", "seeds/"],  # 39,000 characters: one payload
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "could not queue" in done.stderr and "(0 documents in 0 tasks were queued before)" in done.stderr


@pytest.mark.slow
def test_field_flags_on_the_command_line(tmp_path: Path) -> None:
    from docsieve.cli import MAPPED_FIELDS, _parser, field_map

    assert set(MAPPED_FIELDS) == set(FieldMap.__dataclass_fields__)
    for command in (["ingest", "x"], ["submit", "x"], ["similar", "x"]):
        args = _parser().parse_args([*command, "--text-field", "content", "--outlet-field", "publisher"])
        assert field_map(args) == FieldMap(text="content", outlet="publisher")
    (tmp_path / "day.json").write_text(json.dumps([SNN]), encoding="utf-8")
    env = {**os.environ, "DOCSIEVE_STORE": f"sqlite:///{tmp_path / 's.db'}"}
    run = [sys.executable, "-m", "docsieve.cli"]
    flags = ["--text-field", "content", "--published-field", "date_extracted"]
    done = subprocess.run([*run, "ingest", str(tmp_path / "day.json"), *flags], env=env, cwd=REPO, capture_output=True)
    assert done.returncode == 0, done.stderr
    exported = subprocess.run([*run, "export"], env=env, cwd=REPO, capture_output=True, text=True, check=True)
    (record,) = map(json.loads, exported.stdout.splitlines())
    assert (record["author"], record["published"], record["status"]) == (
        SNN["author"],
        SNN["date_extracted"],
        "canonical",
    )
    similar = subprocess.run(
        [*run, "similar", str(tmp_path / "day.json"), *flags], env=env, cwd=REPO, capture_output=True, text=True
    )
    assert f"{record['id']}  jaccard 1.000" in similar.stdout


# --- Stories as the commands show them (export --stories, show, status)


def test_export_stories_and_since(tmp_path, capsys) -> None:
    store = f"sqlite:///{tmp_path}/s.db"
    a = words(80, 200)
    batch = tmp_path / "batch.jsonl"
    rows = [
        {"id": "one", "text": text(a), "published": "2015-07-21T10:00:00Z", "source": "spa"},
        {"id": "two", "text": text(edit(a, 81, 0.04)), "published": "2015-07-21T09:00:00Z", "source": "okaz"},
        {"id": "three", "text": text(words(82, 200)), "source": "alriyadh"},
    ]
    batch.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    assert main(["--store", store, "ingest", "--quiet", str(batch)]) == 0
    capsys.readouterr()
    assert main(["--store", store, "export", "--stories"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2
    big = next(s for s in lines if s["records"] == 2)
    assert big["outlets"] == ["okaz", "spa"] and big["first_published"] == "2015-07-21T09:00:00+00:00"
    canonical = next(m for m in big["members"] if m["id"] == big["canonical"])
    assert canonical["outlet"] == "okaz"  # the earlier published, though stored second
    copy = next(m for m in big["members"] if m["id"] != big["canonical"])
    assert copy["method"] == "near" and copy["similarity"] == copy["jaccard"] > 0.5
    assert main(["--store", store, "export", "--since", "2199-01-01"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["--store", store, "export", "--stories", "--since", "2000-01-01T00:00:00Z"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert main(["--store", store, "export", "--since", "yesterday"]) == 2
    assert "not a time" in capsys.readouterr().err


def test_export_since_says_which_stories_were_merged_into_which(tmp_path, capsys) -> None:
    """A story merged into another (one story split in two) is a line of its own in ``export --stories --since``: its
    id and where its records went, that a consumer drops it; the flat formats give it a row with ``merged_into``."""
    store = f"sqlite:///{tmp_path}/s.db"
    batch = tmp_path / "batch.jsonl"
    rows = [{"id": name, "text": text(words(seed, 200)), "source": name} for name, seed in (("one", 83), ("two", 84))]
    batch.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    assert main(["--store", store, "ingest", "--quiet", str(batch)]) == 0
    opened = Store(store)
    found = {r.outlet: r for r in opened.iter_records()}
    merge(opened, Settings(store=store), found["one"], found["two"])
    opened.close()
    capsys.readouterr()
    assert main(["--store", store, "export", "--stories", "--since", "2000-01-01T00:00:00Z"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[-1] == {"id": found["two"].story_id, "merged_into": found["one"].story_id, "changed_at": ANY}
    assert [line["records"] for line in lines[:-1]] == [2]
    assert main(["--store", store, "export", "--stories", "--format", "csv", "--since", "2000-01-01"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["story_id"], r["merged_into"]) for r in table][-1] == (found["two"].story_id, found["one"].story_id)
    assert main(["--store", store, "export", "--stories"]) == 0  # a whole export: the stories there are
    assert len(capsys.readouterr().out.splitlines()) == 1


def test_show_prints_the_story_with_what_it_holds(tmp_path, capsys) -> None:
    store = f"sqlite:///{tmp_path}/s.db"
    x, y, z = words(140, 60), words(141, 60), words(142, 300)
    folder = tmp_path / "in"
    folder.mkdir()
    texts = {"x": text(x), "y": text(y), "x-copy": text(edit(x, 143, 0.03)), "roundup": text(x, z, y)}
    for n, (name, body) in enumerate(texts.items()):  # a folder is read in name order
        (folder / f"{n}-{name}.txt").write_text(f"عنوان {name}\n{body}", encoding="utf-8")
    assert main(["--store", store, "ingest", "--quiet", str(folder)]) == 0
    records = {Path(r.source).stem.split("-", 1)[1]: r for r in Store(store, readonly=True).iter_records()}
    capsys.readouterr()
    assert main(["--store", store, "show", records["x-copy"].id[:10]]) == 0
    shown = capsys.readouterr().out
    assert f"story {records['x'].story_id}: 2 records" in shown
    canonical_line = next(line for line in shown.splitlines() if line.strip().startswith(records["x"].id))
    assert "canonical" in canonical_line
    copy_line = next(line for line in shown.splitlines() if line.strip().startswith("*" + records["x-copy"].id))
    assert f"near {records['x-copy'].similarity}" in copy_line
    assert f"held in {records['roundup'].id}" in shown and "عنوان roundup" in shown
    assert main(["--store", store, "show", records["roundup"].id]) == 0
    shown = capsys.readouterr().out
    assert shown.count("holds story") == 2 and "عنوان x" in shown and "عنوان y" in shown
    assert f"holds story {records['x'].story_id} in {records['roundup'].id} (containment" in shown


def test_status_counts_stories_and_reads_a_store_from_before_them(tmp_path, capsys) -> None:
    from alembic import command

    from docsieve.cli import _records_and_failures
    from tests.test_store import alembic_config

    url = f"sqlite:///{tmp_path}/s.db"
    a = words(150, 200)
    store = Store(url)
    ingest(Pipeline(store, Settings(store=url)), ("a", text(a)), ("b", text(edit(a, 151, 0.04))))
    assert _records_and_failures(Settings(store=url))
    assert "stories: 1  with copies 1  roundups 0" in capsys.readouterr().out
    with store.engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0007")
    store.close()
    assert _records_and_failures(Settings(store=url))  # read as it is, without stories
    said = capsys.readouterr().out
    assert "records: canonical 1  duplicate 1" in said and "stories:" not in said


@pytest.mark.slow
def test_export_into_a_reader_that_leaves_early_ends_quietly(tmp_path: Path) -> None:
    """`docsieve export | head`: the reader closes the pipe; docsieve stops, exit 0, nothing on stderr."""
    store = f"sqlite:///{tmp_path / 's.db'}"
    assert docsieve("ingest", "seeds/", "--quiet", store=store).returncode == 0
    env = {**os.environ, "DOCSIEVE_STORE": store}
    export = subprocess.Popen(
        [sys.executable, "-m", "docsieve.cli", "export"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert export.stdout is not None and export.stdout.read(100)
    export.stdout.close()  # as head does once it has its lines
    _, stderr = export.communicate(timeout=60)
    assert export.returncode == 0 and stderr == b""


@pytest.mark.slow
def test_similar_searches_the_window_and_with_all_every_stored_record(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 's.db'}"
    old, new = words(81, 300), words(82, 300)
    batch = tmp_path / "batch.jsonl"
    batch.write_text(
        json.dumps({"id": "old", "text": text(old), "published": "2015-01-05T08:00:00Z"})
        + "\n"
        + json.dumps({"id": "new", "text": text(new), "published": "2015-07-21T08:00:00Z"})
        + "\n"
    )
    assert docsieve("ingest", str(batch), store=store).returncode == 0
    probe = tmp_path / "probe.txt"
    probe.write_text(text(edit(old, 83, 0.05)))
    windowed = docsieve("similar", str(probe), store=store)
    everything = docsieve("similar", str(probe), "--all", store=store)
    # The index forgot the January story (more than two 30-day windows before July's); the store did not.
    assert "no similar stored document" in windowed.stdout, windowed.stdout
    assert "batch.jsonl#old" in everything.stdout, everything.stdout
    assert "batch.jsonl#old" in docsieve("similar", str(probe), store=store, env={"DOCSIEVE_INDEX_WINDOW": "0"}).stdout


# --- API keys


def test_keys_are_made_once_listed_and_revoked(tmp_path: Path, capsys) -> None:
    store = f"sqlite:///{tmp_path / 'k.db'}"
    assert main(["--store", store, "keys", "create", "--scope", "submit", "--name", "crawler"]) == 0
    made = capsys.readouterr()
    key = made.out.strip()
    assert key.startswith("dsk_") and len(key.splitlines()) == 1  # only the key on standard output: scripts take it
    key_id = key.split("_")[1]
    assert f"key {key_id} (crawler, scope submit); it is shown only now" in made.err
    assert main(["--store", store, "keys", "list"]) == 0
    listed = capsys.readouterr().out
    assert f"{key_id}  submit" in listed and "crawler" in listed and key not in listed
    assert "1 keys, 1 in use" in listed
    assert main(["--store", store, "keys", "revoke", key_id]) == 0
    assert f"revoked {key_id} (crawler)" in capsys.readouterr().out
    assert main(["--store", store, "keys", "list"]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["--store", store, "keys", "revoke", "nope"]) == 1
    assert "no API key with the id 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--store", store, "keys", "create", "--scope", "everything"])


# ``docsieve`` that says on its last line of standard error how many processes it forked.
COUNTING_FORKS = """
import os, sys
from docsieve.cli import main
forks = []
fork = os.fork
def counted():
    pid = fork()
    if pid:
        forks.append(pid)
    return pid
os.fork = counted
code = main(sys.argv[1:])
print(f"forks {len(forks)}", file=sys.stderr)
sys.exit(code)
"""


def counting_forks(
    *args: str, store: str, env: dict[str, str], stdin: str | None = None
) -> tuple[subprocess.CompletedProcess, int]:
    done = subprocess.run(
        [sys.executable, "-c", COUNTING_FORKS, *args],
        cwd=REPO,
        env={**os.environ, "DOCSIEVE_STORE": store, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done, int(done.stderr.splitlines()[-1].removeprefix("forks "))


@pytest.mark.slow
def test_ingest_prepared_ahead_stores_what_one_process_stores(tmp_path: Path) -> None:
    """The preparing process changes nothing of the records: the seeds in batches of 3, so that most are
    prepared there."""
    runs = {}
    for ahead in ("on", "off"):
        store = f"sqlite:///{tmp_path / f'{ahead}.db'}"
        env = {"DOCSIEVE_BATCH_SIZE": "3", "DOCSIEVE_PREPARE_AHEAD": ahead}
        done, forks = counting_forks("ingest", "seeds/", store=store, env=env)
        assert done.returncode == 0, done.stderr
        assert forks == (1 if ahead == "on" else 0)
        exported = docsieve("export", "--format", "jsonl", store=store)
        records = [json.loads(line) for line in exported.stdout.splitlines()]
        for record in records:
            del record["created_at"], record["changed_at"]
        runs[ahead] = (summary(done.stdout), sorted(records, key=lambda r: r["id"]))
    assert runs["on"] == runs["off"]
    assert runs["on"][0]["read"] >= len(list((REPO / "seeds").iterdir())) and runs["on"][0]["near_copies"] >= 2


@pytest.mark.slow
def test_standard_input_after_the_first_batch_is_read_by_the_preparing_process(tmp_path: Path) -> None:
    """Files, then standard input (``-``), in batches of 8: the preparing process reads the input past the first
    batch, standard input included, and every document of it is stored."""
    folder = tmp_path / "files"
    folder.mkdir()
    for i in range(20):
        (folder / f"{i:02}.txt").write_text(f"{fixture_text('ar_other.txt')}\n\nfile {i}", encoding="utf-8")
    lines = "\n".join(
        json.dumps({"id": f"line-{i}", "text": f"{fixture_text('en_article.txt')}\n\nline {i}"}) for i in range(50)
    )
    db = tmp_path / "stdin.db"
    env = {"DOCSIEVE_BATCH_SIZE": "8", "DOCSIEVE_PREPARE_AHEAD": "on"}
    done, forks = counting_forks("ingest", str(folder), "-", store=f"sqlite:///{db}", env=env, stdin=lines)
    assert done.returncode == 0, done.stderr
    assert forks == 1
    assert summary(done.stdout)["read"] == 70 and summary(done.stdout)["rejected"] == 0
    assert _records_in(db) == 70


def _session_members(session: int) -> list[int]:
    """The processes of a session (field 6 of /proc/PID/stat)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[3]) == session:
            members.append(int(stat.parent.name))
    return members


@pytest.mark.slow
def test_ctrl_c_stops_the_ingest_after_the_batch_in_hand_and_the_next_run_goes_on(tmp_path: Path) -> None:
    folder = tmp_path / "articles"
    folder.mkdir()
    texts = [fixture_text(n) for n in ("ar_near_a.txt", "ar_other.txt", "en_article.txt", "ar_long_article.txt")]
    for i in range(1200):
        (folder / f"{i:05}.txt").write_text(f"{texts[i % 4]}\n\nitem {i}", encoding="utf-8")
    db = tmp_path / "stopped.db"
    env = {**os.environ, "DOCSIEVE_STORE": f"sqlite:///{db}", "DOCSIEVE_BATCH_SIZE": "20"}
    ingesting = subprocess.Popen(
        [sys.executable, "-m", "docsieve.cli", "ingest", str(folder), "--quiet"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a shell's foreground job: Ctrl-C reaches all of it
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not _records_in(db):
        time.sleep(0.02)
    os.killpg(ingesting.pid, signal.SIGINT)
    out, err = ingesting.communicate(timeout=60)
    assert ingesting.returncode == 130, err
    assert "stopping after the batch in hand" in err and "interrupted after the batch in hand" in err
    assert "Traceback" not in err
    first = summary(out)
    assert 0 < first["read"] < 1200 and first["read"] % 20 == 0
    assert _records_in(db) == first["read"]
    assert _session_members(ingesting.pid) == []  # the preparing process is gone too
    again = docsieve("ingest", str(folder), store=f"sqlite:///{db}", env={"DOCSIEVE_BATCH_SIZE": "20"})
    assert again.returncode == 0, again.stderr
    assert summary(again.stdout)["read"] == 1200 and summary(again.stdout)["already_stored"] == first["read"]
    assert _records_in(db) == 1200


def _records_in(db: Path) -> int:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
            return conn.execute("SELECT count(*) FROM records").fetchone()[0]
    except sqlite3.OperationalError:  # not made yet
        return 0
