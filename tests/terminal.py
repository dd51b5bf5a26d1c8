"""Running the ``docsieve`` command as a person does, in a terminal: a pseudo-terminal for its standard
input, output and error, so that it draws what it draws only there (the progress bar)."""

from __future__ import annotations

import errno
import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO


@dataclass(frozen=True)
class Terminal:
    returncode: int
    output: str  # everything the command wrote to the terminal, stdout and stderr together, as drawn


def run_in_terminal(
    *args: str, env: dict[str, str], cwd: Path = REPO, timeout: float = 300, columns: int = 100, typed: bytes = b""
) -> Terminal:
    """``python -m docsieve.cli ARGS`` with a pseudo-terminal of ``columns`` columns as its terminal, and
    ``typed`` typed at it (b"\x04" is Ctrl-D: the end of input)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "docsieve.cli", *args],
        cwd=cwd,
        env={**env, "TERM": "xterm-256color", "COLUMNS": str(columns)},
        stdin=follower,
        stdout=follower,
        stderr=follower,
        start_new_session=True,  # the terminal becomes its controlling terminal, as in a shell
        close_fds=True,
    )
    os.close(follower)
    if typed:
        os.write(leader, typed)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                process.kill()
                raise TimeoutError(f"docsieve {' '.join(args)} still running after {timeout} s")
            ready, _, _ = select.select([leader], [], [], 0.1)
            if not ready:
                if process.poll() is not None and not _pending(leader):
                    break
                continue
            try:
                data = os.read(leader, 65536)
            except OSError as exc:  # EIO: every writer of the terminal has closed it
                if exc.errno != errno.EIO:
                    raise
                break
            if not data:
                break
            chunks.append(data)
        returncode = process.wait(timeout=30)
    finally:
        os.close(leader)
    return Terminal(returncode, b"".join(chunks).decode("utf-8", "replace"))


def _pending(fd: int) -> bool:
    ready, _, _ = select.select([fd], [], [], 0)
    return bool(ready)
