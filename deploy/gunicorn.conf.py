"""gunicorn settings for Stagegate's web processes: `gunicorn -c deploy/gunicorn.conf.py
config.wsgi`. Every value can be overridden from the environment (GUNICORN_*), as below."""

import os
import shutil

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
# Sync workers: downloads are sendfile (or nginx x-accel, or an S3 redirect), uploads stream.
workers = int(os.environ.get("GUNICORN_WORKERS") or 2 * (os.cpu_count() or 1) + 1)
# Above the largest upload a client streams in one request at the slowest expected rate.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "600"))
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then (bounded memory over months of uptime).
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "5000"))
max_requests_jitter = 500
accesslog = "-"
errorlog = "-"
# The request id (config/logs.py) in every access line, beside the usual fields.
access_log_format = ('%(h)s "%(r)s" %(s)s %(B)s %(M)sms request_id=%({x-request-id}o)s '
                     '"%(a)s"')
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1")


def on_starting(server):
    """prometheus_client's multiprocess mode needs an empty folder at each start."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder, exist_ok=True)


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
