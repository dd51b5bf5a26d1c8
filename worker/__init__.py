"""The deployment's Celery side of docsieve: the app (``worker.celery_app``), the tasks, their messages and
payloads, the shared Redis index, and the deployment's subcommands of ``docsieve``. It calls the core
(``docsieve``); the core never imports it.

``celery -A worker`` finds the app as ``worker.app``, made from the DOCSIEVE_ settings when first asked for.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name in ("app", "celery"):
        from worker.celery_app import default_app

        return default_app()
    raise AttributeError(f"module 'worker' has no attribute {name!r}")
