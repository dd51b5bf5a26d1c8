"""A worker's metrics (``docsieve worker --metrics-port``): the tasks of every pool process counted in files
of one folder (prometheus-client's multiprocess mode), which the worker's main process serves over HTTP."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported when first counted: after ``serve`` has said where (see FOLDER)
    from docsieve.metrics import Metrics

FOLDER = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus-client when it is first imported: set before that


def serve(port: int, host: str = "0.0.0.0") -> str:
    """Count into a fresh folder from now on (this process and the pool processes it forks), and serve the
    sum of all of them on ``port``; returns the folder."""
    folder = tempfile.mkdtemp(prefix="docsieve-metrics-")
    os.environ[FOLDER] = folder
    # Gone with this process (not with a pool process it forks, which inherits the handler): a worker started again
    # counts afresh, and the folders of stopped workers do not pile up in the temporary directory.
    atexit.register(_remove, folder, os.getpid())
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=folder)
    start_http_server(port, addr=host, registry=registry)
    return folder


def _remove(folder: str, owner: int) -> None:
    if os.getpid() == owner:
        shutil.rmtree(folder, ignore_errors=True)


@cache
def task_metrics() -> Metrics:
    """This process's counters (written to the folder when ``serve`` set one up, else kept in memory)."""
    from docsieve.metrics import Metrics

    return Metrics()
