"""Logs as one JSON object a line, for a log collector (``docsieve serve --log-json``, ``docsieve worker
--log-json``): time, level, logger, message, and the error's traceback where there is one."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def use_json(level: str | int = "INFO") -> None:
    """Every log record of this process, from now on, as JSON on standard error."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)  # a warning is a record too, not a line of its own


def uvicorn_config(as_json: bool) -> dict[str, Any]:
    """uvicorn's logging configuration: its own lines, or JSON."""
    from uvicorn.config import LOGGING_CONFIG

    if not as_json:
        config = dict(LOGGING_CONFIG)
        config["loggers"] = {**LOGGING_CONFIG["loggers"], "docsieve": {"handlers": ["default"], "level": "INFO"}}
        return config
    json_formatter = {"()": f"{__name__}.JsonFormatter"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": json_formatter},
        "handlers": {"json": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "loggers": {
            name: {"handlers": ["json"], "level": "INFO", "propagate": False}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "docsieve")
        },
    }
