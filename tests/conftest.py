"""Fixtures shared by the whole suite: personas, API clients, the state snapshot that proves
"nothing left behind", a live server on a real socket and a real Celery worker process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.conf import settings

from tests.services import assert_services_reachable

pytest_plugins = ["tests.live", "tests.browser", "tests.s3"]


def pytest_configure(config):
    # With CI=true a missing PostgreSQL or Redis fails the run; it is never skipped.
    assert_services_reachable()


PERSONA_ROLES = {
    "alice": ["researchers"],
    "bob": ["safety"],
    "carol": ["policy"],
    "dave": ["release_managers"],
    "erin": [],
    "mallory": [],
}


def make_persona(username: str):
    from django.contrib.auth.models import Group, User

    user, _ = User.objects.get_or_create(username=username,
                                         defaults={"email": f"{username}@example.org"})
    user.set_password(f"{username}-pw")
    user.save()
    for role in PERSONA_ROLES.get(username, []):
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


@pytest.fixture
def personas(db):
    class Personas(dict):
        def __getattr__(self, name):
            return self[name]

    return Personas({name: make_persona(name) for name in PERSONA_ROLES})


@pytest.fixture
def alice(personas):
    return personas.alice


def token_for(user, scope: str = "all") -> str:
    from accounts.services import create_token

    return create_token(actor=user, user=user, name="test", scope=scope)[1]


@pytest.fixture
def api_client_for():
    from rest_framework.test import APIClient

    def make(user, scope: str = "all") -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(user, scope)}")
        return client

    return make


def staged_files() -> list[str]:
    """The temporary files under FILE_UPLOAD_TEMP_DIR (shared by the session's tests and
    workers): a test compares them with what was there when it started."""
    tmp_root = Path(settings.FILE_UPLOAD_TEMP_DIR)
    return sorted(p.name for p in tmp_root.rglob("*") if p.is_file())


class StateSnapshot:
    """What a failed submission must not change: rows, blob files, temporary files."""

    def __init__(self):
        self.before = self.capture()

    @staticmethod
    def capture() -> dict:
        from models.models import Blob, Checkpoint, CheckpointFile, ModelFamily

        blob_root = Path(settings.STORAGES["blobs"]["OPTIONS"]["location"])
        return {
            "checkpoints": Checkpoint.objects.count(),
            "checkpoint_files": CheckpointFile.objects.count(),
            "families": ModelFamily.objects.count(),
            "blob_rows": Blob.objects.count(),
            "blob_files": sorted(str(p.relative_to(blob_root)) for p in blob_root.rglob("*")
                                 if p.is_file()) if blob_root.exists() else [],
            "temp_files": staged_files(),
        }

    def assert_unchanged(self):
        after = self.capture()
        assert after == self.before, f"state changed: before={self.before} after={after}"


@pytest.fixture
def nothing_left_behind(db):
    return StateSnapshot()


@pytest.fixture
def tmp_checkpoints(tmp_path) -> Path:
    path = tmp_path / "checkpoints"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """Tiny models trained by tests, cached by the content hash of their inputs."""
    root = os.environ.get("STAGEGATE_TEST_MODEL_CACHE")
    path = Path(root) if root else Path(__file__).resolve().parent / ".cache" / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


TINY_TEXTS = [f"the model number {i} reads the text and writes it down again" for i in range(40)]


@pytest.fixture(scope="session")
def tiny_model_dir(model_cache) -> Path:
    """A tiny trained GPT-2 Hugging Face folder (cached by content hash)."""
    from evaluations.tinylm import TinyGPTSpec, cached_tiny_gpt

    return cached_tiny_gpt(model_cache, TINY_TEXTS, TinyGPTSpec(steps=40, seed=1))


@pytest.fixture(autouse=True)
def fresh_counters():
    """Refusal aggregation counts in the cache: each test starts with none, so a refusal one
    test made is never folded into another's."""
    from django.core.cache import cache

    cache.clear()
    yield


@pytest.fixture(autouse=True)
def hub_client_online(monkeypatch):
    """The Hub client reads HF_HUB_OFFLINE once, at import; whatever imported it first, tests
    that talk to a live Stagegate need it online (it never reaches beyond this machine)."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


@pytest.fixture(autouse=True)
def isolated_blob_store(request, tmp_path_factory):
    """Each test gets its own blob store, so bytes from one test's rolled-back rows cannot be
    mistaken for another's. Tests with worker processes share the session's store instead,
    since a separate process cannot see an in-process settings override."""
    if {"celery_worker_process", "start_worker"} & set(request.fixturenames):
        yield
        return
    from django.test import override_settings

    storages = dict(settings.STORAGES)
    storages["blobs"] = {**storages["blobs"], "OPTIONS": {
        **storages["blobs"]["OPTIONS"], "location": str(tmp_path_factory.mktemp("blobstore"))}}
    # The eval cache's verified copies too: a copy another test verified must not stand in
    # for bytes this test tampered with in its own store.
    with override_settings(STORAGES=storages,
                           STAGEGATE_EVAL_CACHE_DIR=tmp_path_factory.mktemp("eval-cache")):
        yield


@pytest.fixture
def simple_policy(db):
    """The workflow tests' policy (tests/releases/policies/simple.yaml): integrity is the only
    eval it requires, so no model needs to load."""
    from releases.policies_service import load_policy_version
    from tests.releases.conftest import POLICIES

    text = (POLICIES / "simple.yaml").read_text()
    return load_policy_version(actor=None, text=text, source="simple.yaml")[0]
