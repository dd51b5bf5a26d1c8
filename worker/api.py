"""The deployment behind the HTTP service (``DOCSIEVE_API_QUEUE=on``): documents go to the workers' queue as
``docsieve submit`` sends them, URLs to the fetchers, and each request is answered with the tasks that carry
them (``GET /v1/tasks/{id}`` follows one). Reads go to the shared store; ``similar`` looks in the shared
index. Registered as the ``docsieve.queues`` entry point: the core never imports it."""

from __future__ import annotations

from typing import Any

from docsieve.metrics import Metrics
from docsieve.models import batched
from docsieve.readers import Item
from docsieve.service import Looking, Queued, store_problems
from docsieve.settings import Settings
from docsieve.store import Store
from worker.celery_app import create_app, queue_names
from worker.messages import FETCH_TASK, URLS_PER_TASK, message_batches, to_message
from worker.payloads import Payloads, send_ingest


class QueueBackend(Looking):
    queued = True

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        # The deployment's migrate service made the schema.
        super().__init__(settings, Store(settings.store, migrate=False), metrics)
        self.app = create_app(settings)
        self.cpu_queue, self.io_queue = queue_names(settings)
        self.payloads = Payloads.of(settings)
        self.watch(_Depths(self))

    def submit(self, items: list[Item]) -> Queued:
        messages = [to_message(item) for item in items]
        tasks: list[str] = []
        task_of: list[str] = []
        for batch in message_batches(messages, self.settings.submit_batch, self.settings.submit_max_chars):
            task = send_ingest(self.app.send_task, batch, self.cpu_queue, self.payloads)
            tasks.append(task.id)
            task_of += [task.id] * len(batch)
        return Queued(tasks, task_of)

    def submit_urls(self, urls: list[str]) -> Queued:
        tasks: list[str] = []
        task_of: list[str] = []
        for chunk in batched(urls, URLS_PER_TASK):
            task = self.app.send_task(FETCH_TASK, args=[chunk], queue=self.io_queue)
            tasks.append(task.id)
            task_of += [task.id] * len(chunk)
        return Queued(tasks, task_of)

    def delete(self, record_id: str, reason: str | None) -> bool:
        keys = self.store.index_keys([record_id])
        removed = self.store.delete([record_id], reason, self.settings)
        if removed and record_id in keys:
            with self._lock:
                self.pipeline.index.remove(record_id, keys[record_id])
        return bool(removed)

    def task(self, task_id: str) -> dict[str, Any] | None:
        """A task's state (Celery cannot tell a task it never saw from one waiting: both are PENDING)."""
        from celery import states
        from celery.result import AsyncResult

        found = AsyncResult(task_id, app=self.app)
        state = found.state
        answer: dict[str, Any] = {"id": task_id, "state": state, "done": state in states.READY_STATES}
        if state == states.SUCCESS and isinstance(found.result, dict):
            answer["result"] = found.result
        elif state in (states.FAILURE, states.RETRY):
            answer["error"] = f"{type(found.result).__name__}: {found.result}"
        return answer

    def problems(self) -> dict[str, str]:
        found = store_problems(self.store)
        try:
            with self.app.connection_for_read() as connection:
                connection.ensure_connection(max_retries=1, interval_start=0.2)
        except Exception as exc:  # kombu raises its own and the transport's errors
            found["broker"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        ping = getattr(self.pipeline.index, "ping", None)
        if ping is not None:
            try:
                ping()
            except Exception as exc:
                found["index"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return found

    def close(self) -> None:
        super().close()
        if self.payloads:
            self.payloads.close()


class _Depths:
    def __init__(self, backend: QueueBackend) -> None:
        self.backend = backend

    def depths(self) -> dict[str, int]:
        found: dict[str, int] = {}
        with self.backend.app.connection_for_read() as connection:
            for queue in (self.backend.cpu_queue, self.backend.io_queue):
                try:
                    found[queue] = connection.default_channel.queue_declare(queue=queue, passive=True).message_count
                except Exception:  # a queue nobody declared yet is empty
                    found[queue] = 0
        return found
