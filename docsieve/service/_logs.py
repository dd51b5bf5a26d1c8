"""The service's logs: uvicorn's usual lines, or one JSON object a line (``docsieve serve --log-json``) for a
log collector."""

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


def log_config(as_json: bool) -> dict[str, Any]:
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
