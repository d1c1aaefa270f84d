"""A checkpoint's files laid out as a local folder, for transformers to load.

With the filesystem blob store the folder is symlinks to the blobs (no copy); with S3 each
object is downloaded straight to its file (boto3's transfer, constant memory); with any other
storage the bytes are streamed down once. Either way the bytes are the submitted ones: blobs are
content-addressed, and the integrity eval re-hashes them before any model eval trusts them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

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
