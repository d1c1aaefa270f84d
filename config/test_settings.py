"""Settings for the test suite: the real services, never SQLite or an eager Celery.

PostgreSQL from TEST_DATABASE_URL (default: this machine's local server), Redis from
TEST_REDIS_URL, and a fresh STAGEGATE_DATA_DIR per run. The values are put in the environment
before the main settings are read, so a Celery worker process started by the tests inherits them.
"""

import os
import tempfile

os.environ["DATABASE_URL"] = os.environ.get(
    "TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
os.environ["CELERY_BROKER_URL"] = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("STAGEGATE_DATA_DIR", tempfile.mkdtemp(prefix="stagegate-test-"))
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
# Server threads and worker processes must not hold connections open past a request, or the
# test database could not be dropped at the end of the run.
os.environ["DB_CONN_MAX_AGE"] = "0"
# Short enough that a test can watch a lost eval run be claimed again.
os.environ.setdefault("STAGEGATE_EVAL_HEARTBEAT_STALE_SECONDS", "10")
# Files, so mail sent by a worker process can be read by the test that caused it.
os.environ["EMAIL_BACKEND"] = "django.core.mail.backends.filebased.EmailBackend"
os.environ.setdefault("EMAIL_FILE_PATH", os.path.join(os.environ["STAGEGATE_DATA_DIR"], "mail"))

from config.settings import *  # noqa: E402,F401,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEBUG = False
