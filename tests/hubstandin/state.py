"""What the stand-in Hub holds: users and their tokens, organisations, repos with their commits,
gating settings and access lists, and LFS objects (on disk, by sha256).

Who may see what follows the Hub's published docs (models-gated.md, the client's docstrings in
huggingface_hub 2.4.0 hf_api.py) and shared/reference/hf-hub-http-contract.md:
- a public repo's metadata and tree are readable by anyone; its files too unless it is gated,
  in which case only the organisation's members and users whose access request was accepted
  may download them;
- a private repo is readable by the organisation's members only, and, because issue 14 asks
  partners of a `partners` release to be granted "through the Hub's access API", by users
  accepted on it when it is also gated. The Hub's docs do not say what an accepted request on a
  private repo opens: this one rule is an assumption (see docs/publishing.md);
- writes (settings, commits, access decisions) need a member's token with the `write` role.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx",
                ".gguf", ".pkl", ".npy", ".npz", ".zip", ".tar", ".gz", ".model")
REGULAR_LIMIT = 10 * 1024 * 1024  # larger files go through LFS whatever their name
GITATTRIBUTES = "".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n" for s in LFS_SUFFIXES).encode()


def git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def zulu(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + \
        f".{int(seconds * 1000) % 1000:03d}Z"


@dataclass
class User:
    name: str
    token: str
    role: str = "write"  # the token's role: read or write
    fullname: str = ""
    email: str = ""


@dataclass(frozen=True)
class Entry:
    """One file at one commit: inline content (regular) or an LFS object."""

    path: str
    size: int
    content: bytes | None = None
    sha256: str | None = None  # LFS files only

    @property
    def is_lfs(self) -> bool:
        return self.sha256 is not None

    @property
    def oid(self) -> str:
        return git_oid(lfs_pointer(self.sha256, self.size)) if self.is_lfs else git_oid(self.content)

    def tree_json(self) -> dict:
        item = {"type": "file", "oid": self.oid, "size": self.size, "path": self.path}
        if self.is_lfs:
            item["lfs"] = {"oid": self.sha256, "size": self.size,
                           "pointerSize": len(lfs_pointer(self.sha256, self.size))}
        return item


@dataclass
class Commit:
    oid: str
    parent: str | None
    summary: str
    at: float
    files: dict[str, Entry]


@dataclass
class AccessEntry:
    request_id: str
    user: str
    status: str  # pending | accepted | rejected
    at: float
    fields: dict | None = None
    rejection_reason: str | None = None


@dataclass
class Repo:
    id: str
    private: bool
    created_at: float
    commits: list[Commit] = field(default_factory=list)
    gated: str | bool = False
    access: dict[str, AccessEntry] = field(default_factory=dict)

    @property
    def org(self) -> str:
        return self.id.split("/", 1)[0]

    @property
    def head(self) -> Commit:
        return self.commits[-1]

    def commit(self, rev: str) -> Commit | None:
        if rev == "main":
            return self.head
        return next((c for c in self.commits if c.oid == rev), None)

    def accepted(self, user: User | None) -> bool:
        entry = self.access.get(user.name) if user else None
        return bool(self.gated) and entry is not None and entry.status == "accepted"


class Hub:
    """The whole state, behind one lock (the server is threaded)."""

    def __init__(self, config: dict, workdir: Path):
        self.lock = threading.RLock()
        self.users = {u["name"]: User(**u) for u in config.get("users", [])}
        self.orgs = {name: set(members) for name, members in config.get("orgs", {}).items()}
        # A host that stores other bytes than it was sent (tests of the read-back check).
        self.tamper_paths = set(config.get("tamper_paths", []))
        self.repos: dict[str, Repo] = {}
        self.objects = workdir / "lfs"
        self.objects.mkdir(parents=True, exist_ok=True)
        self._ids = 0

    def new_id(self) -> str:
        with self.lock:
            self._ids += 1
            return hashlib.sha1(f"standin-{self._ids}-{time.time()}".encode()).hexdigest()[:24]

    def user_by_token(self, token: str) -> User | None:
        return next((u for u in self.users.values() if u.token == token), None)

    def is_member(self, user: User | None, org: str) -> bool:
        return user is not None and (user.name == org or user.name in self.orgs.get(org, set()))

    def can_write(self, user: User | None, repo_or_org: Repo | str) -> bool:
        org = repo_or_org.org if isinstance(repo_or_org, Repo) else repo_or_org
        return self.is_member(user, org) and user.role == "write"

    def can_see(self, user: User | None, repo: Repo) -> bool:
        return not repo.private or self.is_member(user, repo.org) or repo.accepted(user)

    def can_download(self, user: User | None, repo: Repo) -> bool:
        if self.is_member(user, repo.org):
            return True
        if repo.gated:
            return repo.accepted(user)
        return not repo.private

    # --- LFS objects ------------------------------------------------------------------------

    def object_path(self, sha256: str) -> Path:
        return self.objects / sha256

    def has_object(self, sha256: str, size: int) -> bool:
        path = self.object_path(sha256)
        return path.exists() and path.stat().st_size == size

    def tampered(self, sha256: str) -> str:
        """A copy of the object with its last byte flipped; returns the copy's sha256."""
        data = bytearray(self.object_path(sha256).read_bytes())
        data[-1] ^= 0xFF
        digest = hashlib.sha256(data).hexdigest()
        self.object_path(digest).write_bytes(bytes(data))
        return digest

    # --- repos ------------------------------------------------------------------------------

    def create_repo(self, repo_id: str, private: bool) -> Repo:
        now = time.time()
        first = Commit(oid=hashlib.sha1(f"init {repo_id} {now}".encode()).hexdigest(),
                       parent=None, summary="initial commit", at=now,
                       files={".gitattributes": Entry(".gitattributes", len(GITATTRIBUTES),
                                                      content=GITATTRIBUTES)})
        repo = Repo(id=repo_id, private=private, created_at=now, commits=[first])
        self.repos[repo_id] = repo
        return repo

    def add_commit(self, repo: Repo, summary: str, files: dict[str, Entry]) -> Commit:
        parent = repo.head.oid
        body = json.dumps({"parent": parent, "summary": summary,
                           "files": {p: e.oid for p, e in sorted(files.items())}})
        commit = Commit(oid=hashlib.sha1(body.encode() + str(time.time()).encode()).hexdigest(),
                        parent=parent, summary=summary, at=time.time(), files=files)
        repo.commits.append(commit)
        return commit
