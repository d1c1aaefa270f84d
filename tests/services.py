"""The suite runs on real PostgreSQL and Redis. Unreachable services fail the run loudly."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

import pytest
from django.conf import settings


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port),
                                      timeout=3):
            return True
    except OSError:
        return False


def assert_services_reachable() -> None:
    database = settings.DATABASES["default"]
    if database["ENGINE"] != "django.db.backends.postgresql":
        pytest.exit(f"tests need PostgreSQL, got {database['ENGINE']}", returncode=3)
    checks = {
        "PostgreSQL": (os.environ["DATABASE_URL"], 5432),
        "Redis": (settings.CELERY_BROKER_URL, 6379),
    }
    missing = [f"{name} at {url}" for name, (url, port) in checks.items() if not _reachable(url, port)]
    if missing:
        pytest.exit("not reachable: " + ", ".join(missing) +
                    " — start them (scripts/services.sh) or set TEST_DATABASE_URL / TEST_REDIS_URL",
                    returncode=3)
