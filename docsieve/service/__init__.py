"""The HTTP service (``docsieve serve``): the API under ``/v1`` with keys, health checks, OpenAPI at
``/openapi.json`` and its pages at ``/docs``. Needs ``pip install 'docsieve[api]'``.

    from docsieve.service import create_app
    app = create_app(Settings.from_env())  # any ASGI server runs it
"""

from __future__ import annotations

from docsieve.service._app import create_app
from docsieve.service._backends import Backend, Looking, Queued, store_problems

# The app, and what a backend of another package (the deployment's queue, worker/api.py) builds on.
__all__ = ["Backend", "Looking", "Queued", "create_app", "serve", "store_problems"]


def serve(settings, host: str = "127.0.0.1", port: int = 8000, log_json: bool = False) -> None:
    """Run the app on uvicorn until interrupted. One process: the embedded default decides in it."""
    import uvicorn

    from docsieve.logs import uvicorn_config

    uvicorn.run(create_app(settings), host=host, port=port, log_config=uvicorn_config(log_json), proxy_headers=True)
