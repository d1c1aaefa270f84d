"""The Celery application. Workers: `celery -A config worker -Q default,evals`."""

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("stagegate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (Queue("default"), Queue("evals"), Queue("gpu"))
app.autodiscover_tasks()
app.autodiscover_tasks(["config"], related_name="reconciler")

# Log lines of a task carry the id of the request that queued it (config/logs.py).
from config.logs import connect_celery_signals  # noqa: E402

connect_celery_signals()
