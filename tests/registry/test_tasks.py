"""Registry tasks on a real Celery worker process (Redis broker, PostgreSQL)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from models import blobstore, services
from models.models import Blob, UploadSession
from models.tasks import purge_expired_upload_sessions
from tests.conftest import make_persona


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


@pytest.mark.django_db(transaction=True)
def test_the_worker_purges_expired_upload_sessions_and_their_blobs(celery_worker_process):
    alice = make_persona("alice")
    session = services.create_upload_session(actor=alice, family_name="lab/purge", label="v1")
    staged = blobstore.stage_chunks("model.safetensors", [b"unique bytes for purge test"])
    services.put_upload_file(actor=alice, session_id=session.pk, path="model.safetensors",
                             staged=staged)
    sha = staged.sha256
    assert blobstore.blob_exists(sha)
    UploadSession.objects.filter(pk=session.pk).update(expires_at=timezone.now() - timedelta(hours=1))

    purge_expired_upload_sessions.delay()

    wait_for(lambda: UploadSession.objects.get(pk=session.pk).status == "aborted")
    assert not Blob.objects.filter(sha256=sha).exists()
    wait_for(lambda: not blobstore.blob_exists(sha))
    # Running it again finds nothing to do.
    assert services.purge_expired_upload_sessions() == 0
