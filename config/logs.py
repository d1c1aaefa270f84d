"""Structured logs: one JSON object per line (STAGEGATE_LOG_FORMAT=json), each carrying the id
of the request it belongs to; the id follows the request into the Celery tasks it queues, so a
submission's web log lines and its scan and eval lines share one id.

The id is the client's X-Request-ID when it sends a sane one (a proxy's), else a new one; the
response carries it back.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import uuid
from datetime import datetime, timezone

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("stagegate_request_id",
                                                                 default="")
HEADER = "stagegate_request_id"  # the Celery message header that carries it
SANE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        given = request.headers.get("X-Request-ID", "")
        token = request_id.set(given if SANE.match(given) else uuid.uuid4().hex)
        try:
            response = self.get_response(request)
            response["X-Request-ID"] = request_id.get()
            return response
        finally:
            request_id.reset(token)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": datetime.fromtimestamp(record.created, timezone.utc)
                 .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                 "level": record.levelname, "logger": record.name,
                 "message": record.getMessage(),
                 "request_id": getattr(record, "request_id", "") or request_id.get()}
        task = getattr(record, "task_id", None) or _current_task_id()
        if task:
            entry["task_id"] = task
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def _current_task_id() -> str | None:
    try:
        from celery import current_task
    except ImportError:
        return None
    task = current_task
    return getattr(getattr(task, "request", None), "id", None) if task else None


def connect_celery_signals() -> None:
    """The request id travels in each queued task's headers and is set while it runs."""
    from celery.signals import before_task_publish, task_postrun, task_prerun

    tokens: dict[str, contextvars.Token] = {}

    @before_task_publish.connect(weak=False)
    def carry(headers=None, **kwargs):
        if headers is not None and request_id.get():
            headers.setdefault(HEADER, request_id.get())

    @task_prerun.connect(weak=False)
    def adopt(task_id=None, task=None, **kwargs):
        carried = getattr(task.request, HEADER, None) if task is not None else None
        if carried is None and task is not None:
            carried = (getattr(task.request, "headers", None) or {}).get(HEADER)
        tokens[task_id] = request_id.set(carried or f"task-{task_id}")

    @task_postrun.connect(weak=False)
    def forget(task_id=None, **kwargs):
        token = tokens.pop(task_id, None)
        if token is not None:
            request_id.reset(token)
