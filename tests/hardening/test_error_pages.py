"""Point 2: styled 403, 404 and 500 pages in production and development alike; the debug page
only under runserver with DEBUG=true set explicitly, and never showing a secret.

The attack of the issue: with the default settings the debug page was served under gunicorn
and showed the settings, DATABASE_URL included. Here a database URL with a password points at an
empty database (never migrated), so every page that reads a table fails with a 500."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import requests

from tests.webservers import ROOT, Gunicorn, ServerProcess

PASSWORD = "hunter2-not-a-real-password"
SECRET_KEY = "the-secret-key-that-must-never-show-0123456789"
EMPTY_DB = f"stagegate_unmigrated_{os.getpid()}"


@pytest.fixture(scope="module")
def broken_db():
    """A database URL with a password (the server's trust auth ignores it) to an empty
    database: the server starts, and every page that reads a table is a 500."""
    import psycopg
    from django.conf import settings

    database = settings.DATABASES["default"]
    admin = f"host={database['HOST']} port={database['PORT'] or 5432} user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {EMPTY_DB}")
        connection.execute(f"CREATE DATABASE {EMPTY_DB}")
    yield (f"postgres://postgres:{PASSWORD}@{database['HOST']}:{database['PORT'] or 5432}/"
           f"{EMPTY_DB}")
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {EMPTY_DB} WITH (FORCE)")


class Runserver(ServerProcess):
    name = "runserver"

    def command(self) -> list[str]:
        return [sys.executable, "manage.py", "runserver", "--noreload", "--nothreading", "--skip-checks",
                f"127.0.0.1:{self.port}"]


def _env(tmp_path: Path, database_url: str, **extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in {"DJANGO_SETTINGS_MODULE", "STAGEGATE_ENV", "DEBUG", "DATABASE_URL"}}
    env.update({"STAGEGATE_DATA_DIR": str(tmp_path), "DATABASE_URL": database_url,
                "SECRET_KEY": SECRET_KEY, "PYTHONPATH": str(ROOT), **extra})
    return env


def _assert_no_secret(text: str) -> None:
    assert PASSWORD not in text
    assert SECRET_KEY not in text


def _styled_500(response) -> None:
    assert response.status_code == 500
    assert "<title>500 Server error · Stagegate</title>" in response.text
    assert "Traceback" not in response.text and "ProgrammingError" not in response.text
    _assert_no_secret(response.text)


@pytest.mark.parametrize("debug", ["true", "false"])
def test_gunicorn_never_serves_the_debug_page(tmp_path, broken_db, debug):
    with Gunicorn(tmp_path) as server:
        server.start(env=_env(tmp_path, broken_db, DEBUG=debug))
        _styled_500(requests.get(server.url + "/models/"))
        missing = requests.get(server.url + "/no/such/page/at/all/")
        assert missing.status_code == 404
        assert "<title>404 Not found" in missing.text and "URLconf" not in missing.text


def test_runserver_without_debug_serves_the_styled_page(tmp_path, broken_db):
    with Runserver(tmp_path) as server:
        server.start(env=_env(tmp_path, broken_db))
        _styled_500(requests.get(server.url + "/models/"))


def test_runserver_with_debug_shows_the_traceback_but_no_secret(tmp_path, broken_db):
    with Runserver(tmp_path) as server:
        server.start(env=_env(tmp_path, broken_db, DEBUG="true",
                              EMAIL_HOST_PASSWORD="mail-password-value"))
        page = requests.get(server.url + "/models/")
        assert page.status_code == 500
        assert "ProgrammingError" in page.text  # the debug page, for the developer
        assert "does not exist" in page.text  # with the reason
        _assert_no_secret(page.text)
        assert "mail-password-value" not in page.text


def test_production_never_serves_the_debug_page(tmp_path, broken_db):
    with Runserver(tmp_path) as server:
        server.start(env=_env(tmp_path, broken_db, DEBUG="true", STAGEGATE_ENV="production",
                              ALLOWED_HOSTS="127.0.0.1", SECURE_SSL_REDIRECT="false"))
        _styled_500(requests.get(server.url + "/models/"))


@pytest.mark.django_db
def test_a_refusal_is_the_styled_403_page_with_its_reason(client, personas):
    client.force_login(personas.mallory)
    page = client.get("/audit/")
    assert page.status_code == 403
    text = page.content.decode()
    assert "<title>403 Not allowed" in text
    assert "reading the audit log needs a reviewer or release manager role" in text


@pytest.mark.django_db
def test_a_missing_page_is_the_styled_404_page(client, personas):
    client.force_login(personas.erin)
    page = client.get("/releases/999999/")
    assert page.status_code == 404
    assert "<title>404 Not found" in page.content.decode()
