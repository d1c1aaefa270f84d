"""The target Hub, through the stock huggingface_hub client (HfApi): read what the remote repo
is, and change it. Every error becomes one of two kinds: TransientRemoteError (worth another
try: the network, 408/412/429/5xx) or RemoteRefused (anything else: a bad token, no rights, a
malformed answer), each with a one-line reason a person can act on."""

from __future__ import annotations

import hashlib
import io
import logging
import shutil
import tempfile
from dataclasses import dataclass, field

import httpx2
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled, RepositoryNotFoundError

TRANSIENT_STATUSES = {408, 412, 429, 500, 502, 503, 504}
# The client warns once per commit that file objects go over HTTP (LFS), not Xet: we mean it.
logging.getLogger("huggingface_hub._commit_api").setLevel(logging.ERROR)


class RemoteError(Exception):
    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.message, self.status = message, status


class TransientRemoteError(RemoteError):
    """The Hub could not be reached or asked us to come back later."""


class RemoteRefused(RemoteError):
    """The Hub refused, or answered something the contract does not allow: retrying will not
    help until a person changes something."""


def _status(exc: HfHubHTTPError) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def translate(exc: Exception, doing: str) -> RemoteError:
    """The error of a client call, as one of ours (the call's purpose in words first)."""
    if isinstance(exc, RemoteError):
        return exc
    if isinstance(exc, httpx2.TransportError):
        return TransientRemoteError(f"{doing}: the Hub could not be reached ({type(exc).__name__}: "
                                    f"{' '.join(str(exc).split())[:300]})")
    if isinstance(exc, OfflineModeIsEnabled):
        return RemoteRefused(f"{doing}: HF_HUB_OFFLINE is set in the worker's environment; the "
                             "mirror needs to reach the Hub")
    if isinstance(exc, HfHubHTTPError):
        status = _status(exc)
        message = " ".join((getattr(exc, "server_message", None) or str(exc)).split())[:400]
        if status in TRANSIENT_STATUSES:
            return TransientRemoteError(f"{doing}: the Hub answered {status}: {message}", status)
        return RemoteRefused(f"{doing}: the Hub answered {status}: {message}", status)
    if isinstance(exc, (ValueError, KeyError, TypeError)):
        return RemoteRefused(f"{doing}: the Hub's answer is not what its API promises "
                             f"({type(exc).__name__}: {' '.join(str(exc).split())[:300]})")
    raise exc


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    blob_id: str  # git oid
    sha256: str | None  # LFS files only: the sha256 the Hub holds


@dataclass
class RemoteState:
    sha: str
    private: bool
    gated: str | bool
    files: dict[str, RemoteFile]
    access: dict[str, set[str]] = field(default_factory=dict)  # status -> hub user names
    access_known: bool = True


class Remote:
    def __init__(self, *, endpoint: str, repo_id: str, token: str):
        from django.conf import settings

        self.repo_id = repo_id
        self.endpoint = endpoint
        self.token = token
        self.api = HfApi(endpoint=endpoint, token=token, library_name="stagegate",
                         library_version="1")
        self.timeout = settings.STAGEGATE_PUBLICATION_HTTP_TIMEOUT

    def _call(self, doing: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - translate() re-raises what is not the Hub's
            raise translate(exc, doing) from exc

    # --- reading ------------------------------------------------------------------------------

    def read(self) -> RemoteState | None:
        """The remote repo as it is, or None when it does not exist (or our token cannot see
        it: the Hub answers both the same way)."""
        try:
            info = self.api.model_info(self.repo_id, timeout=self.timeout)
        except RepositoryNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, f"reading {self.repo_id}") from exc
        if not info.sha:
            raise RemoteRefused(f"reading {self.repo_id}: the Hub's model info has no sha")
        state = RemoteState(sha=info.sha, private=bool(info.private), gated=info.gated or False,
                            files=self.files(info.sha))
        if state.gated:
            try:
                state.access = {status: self.access_list(status)
                                for status in ("pending", "accepted", "rejected")}
            except RemoteRefused as exc:
                if exc.status != 403:
                    raise
                state.access_known = False  # a read-only token: the rest can still be compared
        return state

    def files(self, revision: str) -> dict[str, RemoteFile]:
        entries = self._call(f"listing the files of {self.repo_id}", lambda: list(
            self.api.list_repo_tree(self.repo_id, revision=revision, recursive=True)))
        files = {}
        for entry in entries:
            if getattr(entry, "size", None) is None or not hasattr(entry, "blob_id"):
                continue  # a folder
            files[entry.path] = RemoteFile(path=entry.path, size=entry.size, blob_id=entry.blob_id,
                                           sha256=entry.lfs.sha256 if entry.lfs else None)
        return files

    def access_list(self, status: str) -> set[str]:
        method = getattr(self.api, f"list_{status}_access_requests")
        requests_ = self._call(f"listing the {status} access requests of {self.repo_id}",
                               lambda: list(method(self.repo_id)))
        names = {r.username for r in requests_ if r.username}
        if len(names) != len(requests_):
            raise RemoteRefused(f"{self.repo_id} hides the names of its requesters: Stagegate "
                                "grants by name, so the repo's settings must show them")
        return names

    def sha256_of(self, path: str, revision: str) -> str:
        """The sha256 of the bytes the Hub serves for `path` (downloaded to a temporary folder
        with the stock client, then deleted)."""
        folder = tempfile.mkdtemp(prefix="stagegate-verify-")
        try:
            local = self._call(f"downloading {path} back from {self.repo_id}", hf_hub_download,
                               self.repo_id, path, revision=revision, endpoint=self.endpoint,
                               token=self.token, cache_dir=folder)
            digest = hashlib.sha256()
            with open(local, "rb") as stream:
                while chunk := stream.read(4 * 1024 * 1024):
                    digest.update(chunk)
            return digest.hexdigest()
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    # --- writing ------------------------------------------------------------------------------

    def create_private(self) -> None:
        self._call(f"creating {self.repo_id}", self.api.create_repo, self.repo_id, private=True,
                   exist_ok=True)

    def settings(self, *, private: bool | None = None, gated: str | bool | None = None) -> None:
        kwargs = {k: v for k, v in (("private", private), ("gated", gated)) if v is not None}
        self._call(f"changing the settings of {self.repo_id} ({kwargs})",
                   self.api.update_repo_settings, self.repo_id, **kwargs)

    def prepare(self, path: str, stream: io.BufferedIOBase) -> tuple[CommitOperationAdd, str]:
        """An addition, and the sha256 of the bytes it will send (the client reads the stream
        once to hash it, before anything is sent)."""
        op = self._call(f"reading {path}", CommitOperationAdd, path_in_repo=path,
                        path_or_fileobj=stream)
        return op, op.upload_info.sha256.hex()

    def commit(self, *, adds: list[CommitOperationAdd], deletes: list[str], parent: str,
               message: str, description: str) -> str:
        """One commit: the additions go over LFS (they are streams, which the client never sends
        over Xet), then the ndjson commit, refused by the Hub if main moved past `parent`."""
        operations = [*adds, *(CommitOperationDelete(path_in_repo=p) for p in deletes)]
        info = self._call(f"committing to {self.repo_id}", self.api.create_commit, self.repo_id,
                          operations, commit_message=message, commit_description=description,
                          parent_commit=parent)
        return info.oid

    def grant(self, user: str) -> None:
        self._call(f"granting {user} access to {self.repo_id}", self.api.grant_access,
                   self.repo_id, user)

    def accept(self, user: str) -> None:
        self._call(f"accepting {user}'s access request on {self.repo_id}",
                   self.api.accept_access_request, self.repo_id, user)

    def reject(self, user: str, reason: str) -> None:
        self._call(f"revoking {user}'s access to {self.repo_id}", self.api.reject_access_request,
                   self.repo_id, user, rejection_reason=reason[:200])


class BlobStream(io.RawIOBase):
    """Any readable, seekable file object (a Django File from the blob storage, e.g. on S3) as a
    raw stream, so io.BufferedReader can wrap it: the client sends a BufferedIOBase over HTTP."""

    def __init__(self, fileobj):
        self._f = fileobj

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._f.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._f.seek(offset, whence)
        return self._f.tell()

    def tell(self) -> int:
        return self._f.tell()


def buffered(django_file) -> io.BufferedIOBase:
    inner = getattr(django_file, "file", django_file)
    if isinstance(inner, io.BufferedIOBase):
        return inner
    return io.BufferedReader(BlobStream(django_file))
