"""A checkpoint's files laid out as a local folder, for transformers to load.

With the filesystem blob store the folder is symlinks to the blobs (no copy); with S3 each
object is downloaded straight to its file (boto3's transfer, constant memory); with any other
storage the bytes are streamed down once. Either way the bytes are the submitted ones: blobs are
content-addressed, and they are hashed against the manifest before any model eval trusts them
(evaluations.checkpoint_cache copies them with copy_blob, hashing as it writes; without a copy,
the integrity eval re-hashes the folder).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from models import blobstore
from models.models import Checkpoint

CHUNK = 4 * 1024 * 1024


@contextmanager
def materialized(checkpoint: Checkpoint) -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix=f"ckpt-{checkpoint.pk}-", dir=blobstore.temp_dir()))
    try:
        storage = blobstore.blob_storage()
        for file in checkpoint.files.all():
            target = folder / file.path
            target.parent.mkdir(parents=True, exist_ok=True)
            name = blobstore.blob_name(file.blob_id)
            local = _local_path(storage, name)
            if local is not None:
                os.symlink(local, target)
            elif hasattr(storage, "bucket"):  # S3: boto3 streams the object straight to disk
                storage.bucket.download_file(storage._normalize_name(name), str(target))
            else:
                with storage.open(name, "rb") as source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out, CHUNK)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _local_path(storage, name: str) -> str | None:
    try:
        return storage.path(name)
    except NotImplementedError:
        return None


def copy_blob(sha256: str, target: Path, on_bytes: Callable[[int], None]) -> tuple[str, int]:
    """Write blob `sha256` to `target`, hashing the bytes as they are written (read once):
    (sha256 hex of what was written, its size). FileNotFoundError when the blob is missing.
    With S3, boto3 downloads the object to the file and the file is hashed (a read of bytes
    just written, from the page cache)."""
    storage = blobstore.blob_storage()
    name = blobstore.blob_name(sha256)
    digest, size = hashlib.sha256(), 0
    if _local_path(storage, name) is None and hasattr(storage, "bucket"):
        try:
            storage.bucket.download_file(storage._normalize_name(name), str(target))
        except Exception as exc:
            if blobstore.s3_missing(exc):
                raise FileNotFoundError(name) from exc
            raise
        source = open(target, "rb")
        out = None
    else:
        source = storage.open(name, "rb")
        out = open(target, "wb")
    try:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            if out is not None:
                out.write(chunk)
            on_bytes(len(chunk))
    finally:
        source.close()
        if out is not None:
            out.close()
    return digest.hexdigest(), size
