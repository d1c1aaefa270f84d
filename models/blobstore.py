"""The content-addressed blob store (DESIGN.md §3).

Bytes are hashed while they are written, once, to a temporary file under FILE_UPLOAD_TEMP_DIR;
storing them is then a rename into `blobs/ab/cd/<sha256>` on the filesystem backend (or one
upload on S3). Everything goes through Django's Storage API (`storages["blobs"]`), so a worker on
another machine reads a blob exactly as the web process wrote it. Nothing here reads a whole file
into memory.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import queue
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

from django.conf import settings
from django.core.files import File
from django.core.files.storage import FileSystemStorage, storages

CHUNK_SIZE = 4 * 1024 * 1024
Progress = Callable[[int], None]


class FileTooLarge(ValueError):
    pass


def blob_name(sha256: str) -> str:
    return f"blobs/{sha256[:2]}/{sha256[2:4]}/{sha256}"


def blob_storage():
    return storages["blobs"]


class FileSystemBlobStorage(FileSystemStorage):
    """FileSystemStorage for content-addressed names: a name is never altered, and a blob
    appears whole or not at all (temporary name in the same folder, then rename)."""

    def get_available_name(self, name, max_length=None):
        return name

    def _save(self, name, content):
        full_path = Path(self.path(name))
        full_path.parent.mkdir(parents=True, exist_ok=True)
        if full_path.exists():
            return name  # same name, same bytes
        source = getattr(content, "temporary_file_path", None)
        if source is not None:
            try:
                os.replace(source(), full_path)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                self._copy_then_rename(content, full_path)
        else:
            self._copy_then_rename(content, full_path)
        if self.file_permissions_mode is not None:
            os.chmod(full_path, self.file_permissions_mode)
        return name

    @staticmethod
    def _copy_then_rename(content, full_path: Path) -> None:
        fd, tmp = tempfile.mkstemp(dir=full_path.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out:
                content.seek(0)
                for chunk in content.chunks(CHUNK_SIZE):
                    out.write(chunk)
            os.replace(tmp, full_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class _NamedTempFile(File):
    """A local temporary file that FileSystemBlobStorage can move instead of copying."""

    def temporary_file_path(self) -> str:
        return self.name


@dataclass
class StagedFile:
    """Bytes that are hashed and sit in a local temporary file, waiting to become a blob."""

    path: str
    sha256: str
    size: int
    local_path: Path | None = None
    stored: bool = field(default=False)

    def open(self) -> BinaryIO:
        if self.local_path is not None:
            return open(self.local_path, "rb")
        return open_blob(self.sha256)

    def discard(self) -> None:
        if self.local_path is not None:
            self.local_path.unlink(missing_ok=True)
            self.local_path = None


def temp_dir() -> Path:
    path = Path(settings.FILE_UPLOAD_TEMP_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


def new_temp_file() -> tuple[BinaryIO, Path]:
    handle = tempfile.NamedTemporaryFile(dir=temp_dir(), prefix="upload-", delete=False)
    return handle, Path(handle.name)


def stage_chunks(path: str, chunks: Iterable[bytes], *, max_size: int | None = None,
                 progress: Progress | None = None, sha256: bool = True) -> StagedFile:
    """Write `chunks` to a temporary file while hashing them: one pass, constant memory.

    The caller's thread pulls the chunks (a request body off its socket) while a writer thread
    at bulk priority hashes and writes the ones before: the two overlap, and on a busy machine
    the bulk work yields the CPU to small requests (STAGEGATE_BULK_NICE). With sha256=False the
    bytes are not hashed (a xorb, checked against its own chunk hashes after) and the staged
    file's sha256 is empty."""
    limit = settings.STAGEGATE_MAX_FILE_SIZE if max_size is None else max_size
    size = 0
    handle, local = new_temp_file()
    writer = BulkWriter(handle, sha256=sha256)
    try:
        with handle:
            for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise FileTooLarge(f"{path}: file is larger than the {format_size(limit)} "
                                       "limit (STAGEGATE_MAX_FILE_SIZE)")
                writer.put(chunk)
                if progress:
                    progress(len(chunk))
            sha256 = writer.finish()
    except BaseException:
        writer.abort()
        local.unlink(missing_ok=True)
        raise
    return StagedFile(path=path, sha256=sha256, size=size, local_path=local)


def at_bulk_priority() -> None:
    """Lower the calling thread's CPU priority (and its disk priority, under I/O schedulers
    that derive it from the niceness) to STAGEGATE_BULK_NICE. Only this thread: the rest of the process, and threads created before,
    keep theirs. Where threads have no priority of their own (not Linux), it does nothing."""
    nice = settings.STAGEGATE_BULK_NICE
    if nice <= 0 or not sys.platform.startswith("linux"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except OSError:
        pass  # a sandbox that forbids it: the bytes are still written, at normal priority


def run_at_bulk_priority(work: Callable[[], None]) -> None:
    """Run `work` in a thread of its own at bulk priority, and wait for it (threads it starts,
    such as an S3 upload's, inherit the priority). Its exception is raised here."""
    errors: list[BaseException] = []

    def run() -> None:
        at_bulk_priority()
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=run, name="bulk-store")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


class BulkWriter:
    """The one streaming writer of every upload path: hashes (sha256) and writes chunks to a
    file in its own thread, at bulk priority, a few chunks behind the thread that puts them (a
    bounded queue, so memory stays a few chunks). The caller owns the file: open before,
    closed after. `finish` returns the hex digest ("" with sha256=False); `abort` stops it
    (after a failure)."""

    DEPTH = 8
    IDLE_SECONDS = 600  # a writer nobody finished or aborted (a parse that died) ends itself
    # Small chunks (a Xet rebuild yields 64 KB ones) are handed over in batches of at least
    # this much: one hand-over per chunk would spend the time passing the GIL back and forth.
    BATCH = 1024 * 1024

    def __init__(self, handle: BinaryIO, *, sha256: bool = True):
        self._handle = handle
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._queue: queue.Queue = queue.Queue(maxsize=self.DEPTH)
        self._digest = hashlib.sha256() if sha256 else None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="stage-write", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        at_bulk_priority()
        try:
            while (chunk := self._queue.get(timeout=self.IDLE_SECONDS)) is not None:
                if self._error is None:
                    if self._digest is not None:
                        self._digest.update(chunk)
                    self._handle.write(chunk)
        except queue.Empty:
            self._error = self._error or OSError("staging stopped: no bytes came for "
                                                 f"{self.IDLE_SECONDS} s")
        except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread
            self._error = exc
            try:
                while self._queue.get(timeout=self.IDLE_SECONDS) is not None:
                    pass  # drain, so that put() never blocks
            except queue.Empty:
                pass

    def _send(self, item: bytes | None) -> None:
        while True:
            try:
                self._queue.put(item, timeout=1)
                return
            except queue.Full:
                if not self._thread.is_alive():
                    raise self._error or OSError("staging stopped") from None

    def put(self, chunk: bytes) -> None:
        if self._error is not None:
            raise self._error
        if len(chunk) >= self.BATCH and not self._pending:
            self._send(chunk)
            return
        self._pending.append(chunk)
        self._pending_size += len(chunk)
        if self._pending_size >= self.BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            batch = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
            self._pending, self._pending_size = [], 0
            self._send(batch)

    def finish(self) -> str:
        self._flush()
        self._send(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._digest.hexdigest() if self._digest is not None else ""

    def abort(self) -> None:
        if self._thread.is_alive():
            self._error = self._error or OSError("staging aborted")
            try:
                self._send(None)
            except OSError:
                pass
            self._thread.join()


def stage_local_file(path: str, source: Path, *, progress: Progress | None = None) -> StagedFile:
    """Copy a local file into a temporary file and hash it, reading the source once.

    The copy runs in the kernel (copy_file_range) in one thread while this thread hashes the same
    bytes through the page cache, so the wall time is close to that of hashing alone. When a
    checkpoint already keeps a blob of the same size, the file is hashed first, and if it is
    that blob nothing is copied or written (a resubmission costs one read); if it is not, the
    copy follows, and the second hash must agree with the first.
    """
    size = source.stat().st_size
    limit = settings.STAGEGATE_MAX_FILE_SIZE
    if size > limit:
        raise FileTooLarge(f"{path}: file is {format_size(size)}, larger than the "
                           f"{format_size(limit)} limit (STAGEGATE_MAX_FILE_SIZE)")
    first_hash = None
    if size and _kept_blob_exists(size=size):
        first_hash, _ = hash_file(source, progress)
        if _kept_blob_exists(size=size, sha256=first_hash):
            return StagedFile(path=path, sha256=first_hash, size=size)
        progress = None  # the bytes were counted once already
    staged = _copy_and_hash(path, source, size, progress)
    if first_hash is not None and staged.sha256 != first_hash:
        staged.discard()
        raise OSError(f"{path}: the file changed while it was read; try again")
    return staged


def _kept_blob_exists(*, size: int, sha256: str | None = None) -> bool:
    """Whether a checkpoint keeps a stored blob of this size (and hash): such a blob is never
    deleted, so a file with its bytes need not be stored again."""
    from models.models import CheckpointFile  # the registry's models import this module

    kept = CheckpointFile.objects.filter(size=size)
    if sha256 is None:
        return kept.exists()
    return kept.filter(blob_id=sha256).exists() and blob_storage().exists(blob_name(sha256))


def hash_file(source: Path, progress: Progress | None = None) -> tuple[str, int]:
    """(sha256 hex, bytes read) of a local file, read once."""
    digest, hashed = hashlib.sha256(), 0
    with open(source, "rb") as src:
        while chunk := src.read(CHUNK_SIZE):
            digest.update(chunk)
            hashed += len(chunk)
            if progress:
                progress(len(chunk))
    return digest.hexdigest(), hashed


def _copy_and_hash(path: str, source: Path, size: int, progress: Progress | None) -> StagedFile:
    handle, local = new_temp_file()
    errors: list[BaseException] = []

    def copy() -> None:
        try:
            with open(source, "rb") as src, handle:
                _kernel_copy(src.fileno(), handle.fileno(), size)
        except BaseException as exc:  # surfaced below, in the caller's thread
            errors.append(exc)

    copier = threading.Thread(target=copy, name="stage-copy")
    copier.start()
    try:
        sha256, hashed = hash_file(source, progress)
    finally:
        copier.join()
    if errors or hashed != size or local.stat().st_size != size:
        local.unlink(missing_ok=True)
        if errors:
            raise errors[0]
        raise OSError(f"{path}: the file changed size while it was read; try again")
    return StagedFile(path=path, sha256=sha256, size=size, local_path=local)


def _kernel_copy(src_fd: int, dst_fd: int, size: int) -> None:
    copied = 0
    copy_range = getattr(os, "copy_file_range", None)
    while copied < size:
        want = min(size - copied, 256 * 1024 * 1024)
        n = 0
        if copy_range is not None:
            try:
                n = copy_range(src_fd, dst_fd, want)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                copy_range = None
        if copy_range is None:
            n = os.sendfile(dst_fd, src_fd, None, want)
        if n == 0:
            break
        copied += n


def store(staged: StagedFile) -> bool:
    """Make the staged bytes a blob. Returns True when this call created the blob, False when
    identical bytes were already stored (deduplication); the temporary file is gone either way."""
    if staged.local_path is None:
        return False
    if not staged.sha256:  # staged with sha256=False (a xorb): it has no content address
        staged.discard()
        raise ValueError(f"{staged.path}: staged without a sha256, it cannot become a blob")
    storage = blob_storage()
    name = blob_name(staged.sha256)
    try:
        if storage.exists(name):
            return False
        save_local_file(name, staged.local_path)
        return True
    finally:
        staged.discard()


def save_local_file(name: str, local: Path) -> None:
    """Store a local temporary file under `name` in the blob storage: a rename on the
    filesystem store, an upload (at bulk priority: its threads and TLS yield the CPU) on S3."""
    storage = blob_storage()

    def save() -> None:
        with open(local, "rb") as fh:
            storage.save(name, _NamedTempFile(fh, name=str(local)))

    if isinstance(storage, FileSystemStorage):
        save()
    else:
        run_at_bulk_priority(save)


def open_blob(sha256: str) -> BinaryIO:
    """A blob's bytes, to read (and seek)."""
    return open_stored(blob_name(sha256))


def open_stored(name: str) -> BinaryIO:
    """What the blob storage holds under `name` (a blob, a xorb), to read and seek;
    FileNotFoundError when it holds nothing there. On S3 the bytes stream from where the reader
    is: reading a safetensors header, or a few chunks of a xorb, costs a few kilobytes, not the
    whole object (django-storages' S3File would download all of it first)."""
    storage = blob_storage()
    if hasattr(storage, "bucket"):
        obj = storage.bucket.Object(storage._normalize_name(name))
        try:
            size = obj.content_length
        except Exception as exc:
            if s3_missing(exc):
                raise FileNotFoundError(name) from exc
            raise
        return io.BufferedReader(S3Reader(obj, size), buffer_size=256 * 1024)
    return storage.open(name, "rb")


def s3_missing(exc: Exception) -> bool:
    """Whether a boto3 error says the object is not there."""
    return getattr(exc, "response", {}).get("Error", {}).get("Code") in {"404", "NoSuchKey"}


class S3Reader(io.RawIOBase):
    """An S3 object as a seekable raw stream: one GET from the current offset to the end, read
    as far as the caller reads; a seek elsewhere drops it and the next read starts another."""

    def __init__(self, obj, size: int):
        self._obj, self._size, self._pos, self._body = obj, size, 0, None
        self.name = obj.key

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = {io.SEEK_SET: offset, io.SEEK_CUR: self._pos + offset,
                  io.SEEK_END: self._size + offset}[whence]
        if target < 0:
            raise ValueError("negative seek position")
        if target != self._pos:
            self._drop()
            self._pos = target
        return self._pos

    def readinto(self, buffer) -> int:
        if self._pos >= self._size:
            return 0
        if self._body is None:
            try:
                self._body = self._obj.get(Range=f"bytes={self._pos}-")["Body"]
            except Exception as exc:
                if s3_missing(exc):
                    raise FileNotFoundError(self.name) from exc  # deleted since it was opened
                raise
        data = self._body.read(len(buffer))
        buffer[:len(data)] = data
        self._pos += len(data)
        return len(data)

    def _drop(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None

    def close(self) -> None:
        self._drop()
        super().close()


def blob_exists(sha256: str) -> bool:
    return blob_storage().exists(blob_name(sha256))


def delete_blob(sha256: str) -> None:
    blob_storage().delete(blob_name(sha256))


def format_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
