"""A real S3 server on loopback (moto's, which speaks the S3 REST protocol) and a fresh bucket per
test, configured the way an operator configures Stagegate: by environment variables."""

from __future__ import annotations

import uuid

import boto3
import pytest
from django.conf import settings as django_settings

REGION = "us-east-1"
KEYS = {"AWS_ACCESS_KEY_ID": "stagegate-test", "AWS_SECRET_ACCESS_KEY": "stagegate-test-secret"}


@pytest.fixture(scope="session")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


class Bucket:
    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.name = f"blobs-{uuid.uuid4().hex[:12]}"
        self.client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION,
                                   aws_access_key_id=KEYS["AWS_ACCESS_KEY_ID"],
                                   aws_secret_access_key=KEYS["AWS_SECRET_ACCESS_KEY"])
        self.client.create_bucket(Bucket=self.name)

    @property
    def env(self) -> dict[str, str]:
        """What an operator sets (README, .env.example) to put the blobs in this bucket."""
        return {"STAGEGATE_BLOB_STORAGE": "s3", "AWS_STORAGE_BUCKET_NAME": self.name,
                "AWS_S3_ENDPOINT_URL": self.endpoint, "AWS_S3_REGION_NAME": REGION, **KEYS}

    def use(self, settings, monkeypatch, *, endpoint: str | None = None) -> None:
        """Put this process's blobs (settings, as config/settings.py builds them from the
        environment) and any worker started with `env` in this bucket, reached at `endpoint`."""
        for key, value in {**self.env, "AWS_S3_ENDPOINT_URL": endpoint or self.endpoint}.items():
            monkeypatch.setenv(key, value)
        settings.STORAGES = {**settings.STORAGES, "blobs": settings_from_env().STORAGES["blobs"]}

    def keys(self) -> set[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name)
        return {item["Key"] for page in pages for item in page.get("Contents", [])}

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()


@pytest.fixture
def bucket(s3_endpoint, settings, monkeypatch):
    """A fresh bucket holding this test's blobs, here and in any worker started with `bucket.env`."""
    bucket = Bucket(s3_endpoint)
    bucket.use(settings, monkeypatch)
    return bucket


def settings_from_env():
    """config/settings.py evaluated afresh under the current environment (not imported: the
    running settings stay as they are)."""
    import runpy
    from types import SimpleNamespace

    return SimpleNamespace(**runpy.run_path(str(django_settings.BASE_DIR / "config" / "settings.py")))
