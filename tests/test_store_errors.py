"""Stores and paths a person gets wrong: one line saying what is wrong, a non-zero exit, no traceback; and
the commands that only read never change a store."""

from __future__ import annotations

import hashlib
import os
import re
import resource
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.services import postgres_database


def docsieve(
    *args: str, cwd: Path = REPO, env: dict | None = None, wrapper: list[str] | None = None, **options
) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DOCSIEVE_")}
    return subprocess.run(
        [*(wrapper or []), sys.executable, "-m", "docsieve.cli", *args],
        cwd=cwd,
        env={**base, "PYTHONPATH": str(REPO), **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        **options,
    )


def one_line_error(run: subprocess.CompletedProcess, *expected: str) -> None:
    assert run.returncode != 0, run.stdout
    assert "Traceback" not in run.stderr, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("docsieve: "), run.stderr
    for text in expected:
        assert text in lines[0], (text, lines[0])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def seeded(tmp_path: Path) -> Path:
    store = tmp_path / "seeded.db"
    assert docsieve("--store", str(store), "ingest", "seeds/", "--quiet").returncode == 0
    return store


def test_the_store_can_be_a_plain_path_given_by_flag_or_variable(tmp_path: Path) -> None:
    by_flag = docsieve("--store", "flag.db", "ingest", str(REPO / "seeds"), "--quiet", cwd=tmp_path)
    assert by_flag.returncode == 0, by_flag.stderr
    assert "store sqlite:///flag.db" in by_flag.stdout and (tmp_path / "flag.db").exists()
    by_variable = docsieve("export", cwd=tmp_path, env={"DOCSIEVE_STORE": str(tmp_path / "flag.db")})
    assert by_variable.returncode == 0 and len(by_variable.stdout.splitlines()) == 25
    empty = docsieve("--store", "", "export", cwd=tmp_path)
    assert empty.returncode == 2 and "--store must not be empty" in empty.stderr and "DOCSIEVE_" not in empty.stderr


def test_version() -> None:
    shown = docsieve("--version")
    assert shown.returncode == 0 and re.fullmatch(r"docsieve \d+\.\d+\.\d+\S*\n", shown.stdout), shown.stdout


def test_show_tells_not_found_from_an_ambiguous_prefix(seeded: Path) -> None:
    ids = [line.split('"id": "')[1][:20] for line in docsieve("--store", str(seeded), "export").stdout.splitlines()]
    prefix = next(p for p in (i[:1] for i in ids) if sum(i.startswith(p) for i in ids) > 1)
    ambiguous = docsieve("--store", str(seeded), "show", prefix)
    assert ambiguous.returncode == 1 and "is the start of several ids" in ambiguous.stderr
    listed = re.findall(r"^  ([0-9a-f]{20}) ", ambiguous.stderr, re.M)
    assert sorted(listed) == sorted(i for i in ids if i.startswith(prefix))[:10]
    missing = docsieve("--store", str(seeded), "show", "zz")
    assert missing.returncode == 1 and "no record with an id starting 'zz'" in missing.stderr
    whole = docsieve("--store", str(seeded), "show", listed[0])
    assert whole.returncode == 0 and whole.stdout.startswith(listed[0])


def test_a_path_that_is_not_there_is_a_command_line_error(tmp_path: Path) -> None:
    store = tmp_path / "paths.db"
    for command in ("ingest", "submit"):
        empty = docsieve("--store", str(store), command, "", cwd=tmp_path)
        one_line_error(empty, "'' is not a path")
        assert empty.returncode == 2
        missing = docsieve("--store", str(store), command, str(REPO / "seeds"), "no/such/folder", cwd=tmp_path)
        one_line_error(missing, "no such file or folder: no/such/folder")
    one_line_error(docsieve("--store", str(store), "similar", "nowhere.txt"), "no such file or folder: nowhere.txt")
    assert not store.exists()  # nothing was stored, not even a rejected record


def test_what_is_not_a_store_is_said_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "notes.db").write_text("shopping list: milk, bread\n")
    (tmp_path / "folder.db").mkdir()
    for store, said in (("notes.db", "is not a SQLite database"), ("folder.db", "is a folder, not a store file")):
        for command in (["ingest", str(REPO / "seeds")], ["export"], ["show", "ab"]):
            one_line_error(docsieve("--store", store, *command, cwd=tmp_path), said)
    one_line_error(
        docsieve("--store", "missing/dir/x.db", "ingest", str(REPO / "seeds"), cwd=tmp_path), "does not exist"
    )
    one_line_error(docsieve("--store", "never.db", "export", cwd=tmp_path), "no docsieve store at sqlite:///never.db")
    assert not (tmp_path / "never.db").exists()
    unknown = docsieve("--store", "nosuchdriver://x/y", "export", cwd=tmp_path)
    one_line_error(unknown, "nosuchdriver://x/y")


def test_another_programs_database_is_read_by_nothing_and_changed_by_nothing(tmp_path: Path) -> None:
    foreign = tmp_path / "app.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE customers (name TEXT)")
        conn.execute("INSERT INTO customers VALUES ('Noor')")
    conn.close()
    before = sha256(foreign)
    one_line_error(docsieve("--store", str(foreign), "export"), "database of another program (tables customers)")
    one_line_error(docsieve("--store", str(foreign), "show", "ab"), "not a docsieve store")
    one_line_error(docsieve("--store", str(foreign), "ingest", "seeds/"), "another program", "give a new file")
    assert sha256(foreign) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db"]
    with sqlite3.connect(foreign) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    conn.close()


def test_another_programs_postgresql_database_is_refused(postgres_server_url: str) -> None:
    import sqlalchemy as sa

    with postgres_database(postgres_server_url) as url:
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE invoices (n int)"))
        one_line_error(docsieve("--store", url, "ingest", "seeds/"), "another program (tables invoices)")
        with engine.connect() as conn:
            assert sa.inspect(conn).get_table_names() == ["invoices"]
        engine.dispose()


def test_reading_commands_never_change_the_store(seeded: Path) -> None:
    """The database file stays as it was. (Reading a store in WAL mode may leave its empty ``-wal`` and
    ``-shm`` files, which SQLite makes for readers where it can.)"""
    before = sha256(seeded)
    some_id = docsieve("--store", str(seeded), "export").stdout.split('"id": "')[1][:20]
    for command in (
        ["export"],
        ["export", "--status", "canonical"],
        ["show", some_id],
        ["show", some_id[:1]],
        ["similar", "seeds/010_rafale_original.txt"],
    ):
        assert "Traceback" not in docsieve("--store", str(seeded), *command).stderr, command
    assert sha256(seeded) == before
    wal = seeded.with_name(seeded.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0


@pytest.fixture
def read_only_store(seeded: Path) -> Iterator[tuple[Path, dict]]:
    """The seeded store in a folder this test's commands cannot write: as another user when the tests run as
    root (whom permissions do not stop), else by permissions alone."""
    folder = Path(tempfile.mkdtemp(prefix="docsieve-ro-"))
    store = folder / "ro.db"
    store.write_bytes(seeded.read_bytes())
    store.chmod(0o444)
    folder.chmod(0o555)
    # Root writes whatever the permissions say; in a user namespace of its own it is an unprivileged user to
    # the files outside it (util-linux's unshare), and the permissions hold.
    unprivileged = ["unshare", "--user"] if os.geteuid() == 0 else []
    try:
        yield store, unprivileged
    finally:
        folder.chmod(0o755)
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()


def test_a_read_only_store_can_be_exported_and_refuses_ingest_in_one_line(read_only_store) -> None:
    store, wrapper = read_only_store
    before = sha256(store)
    env = {"XDG_CACHE_HOME": str(store.parent), "HOME": str(store.parent)}
    exported = docsieve("--store", str(store), "export", env=env, wrapper=wrapper)
    assert exported.returncode == 0, exported.stderr
    assert len(exported.stdout.splitlines()) == 25
    shown = docsieve("--store", str(store), "show", exported.stdout.split('"id": "')[1][:20], env=env, wrapper=wrapper)
    assert shown.returncode == 0, shown.stderr
    one_line_error(docsieve("--store", str(store), "ingest", "seeds/", env=env, wrapper=wrapper), "read-only")
    assert sha256(store) == before and sorted(p.name for p in store.parent.iterdir()) == ["ro.db"]


def _file_size_limit(limit: int):
    def apply() -> None:  # in the child: its writes past `limit` bytes fail (EFBIG), as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_store_that_cannot_be_written_midway_is_one_line(tmp_path: Path) -> None:
    full = docsieve(
        "--store",
        "full.db",
        "ingest",
        str(REPO / "seeds"),
        str(REPO / "tests" / "fixtures"),
        "--quiet",
        cwd=tmp_path,
        preexec_fn=_file_size_limit(150_000),
    )
    one_line_error(full, "the store sqlite:///full.db: ", "rolled back")
    assert full.returncode == 1


def test_export_to_a_file_leaves_no_partial_file(seeded: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text("the export of yesterday\n")
    failed = docsieve("--store", str(seeded), "export", "-o", str(out), preexec_fn=_file_size_limit(60_000))
    one_line_error(failed, f"cannot write {out}", "nothing was written")
    assert out.read_text() == "the export of yesterday\n"
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")]
    done = docsieve("--store", str(seeded), "export", "-o", str(out))
    assert done.returncode == 0 and len(out.read_text().splitlines()) == 25
    assert oct(out.stat().st_mode & 0o777) != oct(0o600)  # made as open() makes a file, not as a temporary
    one_line_error(docsieve("--store", str(seeded), "export", "-o", str(tmp_path / "no" / "x.jsonl")), "cannot write")


def test_another_programs_alembic_database_is_not_taken_for_a_store(tmp_path: Path) -> None:
    foreign = tmp_path / "app.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        conn.execute("INSERT INTO alembic_version VALUES ('0005')")  # a revision docsieve also has
        conn.execute("CREATE TABLE orders (n INTEGER)")
    conn.close()
    for command in (["export"], ["ingest", "seeds/"]):
        one_line_error(docsieve("--store", str(foreign), *command), "not a docsieve store", "'0005'")


def test_a_read_only_store_with_records_in_its_log_is_refused_not_read_short(seeded: Path) -> None:
    """In a folder that cannot be written, a store whose -shm file is gone can only be read as immutable,
    which would not see what its write-ahead log holds: refused in one line instead of exported short."""
    folder = Path(tempfile.mkdtemp(prefix="docsieve-ro-"))
    store = folder / "log.db"
    writer = sqlite3.connect(seeded)
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("UPDATE records SET title = 'edited'")  # committed, in the log only
    writer.commit()
    store.write_bytes(seeded.read_bytes())
    Path(f"{store}-wal").write_bytes(Path(f"{seeded}-wal").read_bytes())
    writer.close()
    store.chmod(0o444)
    folder.chmod(0o555)
    try:
        wrapper = ["unshare", "--user"] if os.geteuid() == 0 else []
        env = {"XDG_CACHE_HOME": str(folder), "HOME": str(folder)}
        one_line_error(docsieve("--store", str(store), "export", env=env, wrapper=wrapper), "write-ahead log")
    finally:
        folder.chmod(0o755)
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()


def test_export_through_a_link_replaces_its_target(seeded: Path, tmp_path: Path) -> None:
    target = tmp_path / "exports" / "latest.jsonl"
    target.parent.mkdir()
    target.write_text("old\n")
    link = tmp_path / "latest.jsonl"
    link.symlink_to(target)
    assert docsieve("--store", str(seeded), "export", "-o", str(link)).returncode == 0
    assert link.is_symlink() and len(target.read_text().splitlines()) == 25
