"""Bring a target's remote repo to what Stagegate decided (publishing/desired.py), through the
stock client, and check the result.

The order fails closed: the repo is created private; while its files change it is private;
gating is set before anyone is granted; every sha256 the Hub holds is read back and compared
with the manifest before the repo is opened wider; a mismatch leaves (or makes) it private and
is an alarm. A run that finds the remote as the last run left it, and as Stagegate wants it,
writes nothing (idempotent). Anything that changed on the remote since the last run that
succeeded (its snapshot) is drift: reported, then repaired."""

from __future__ import annotations

import io
from contextlib import ExitStack
from dataclasses import dataclass, field

from models.blobstore import open_blob
from publishing.desired import Desired, DesiredFile
from publishing.remote import Remote, RemoteRefused, RemoteState, buffered

KEEP = {".gitattributes"}  # the Hub makes it with the repo; it is not a checkpoint file
COMPARE_LIMIT = 64 * 1024 * 1024  # a file stored in git (not LFS) is compared by its git oid


@dataclass
class Outcome:
    state: str  # in_sync | alarm | withdrawn
    changes: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)  # found before the changes (repaired by them)
    notes: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    verified: dict[str, str] = field(default_factory=dict)
    remote_commit: str = ""
    committed: bool = False
    snapshot: dict = field(default_factory=dict)


def git_oid(data: bytes) -> str:
    import hashlib

    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _content(file: DesiredFile) -> bytes | None:
    if file.content is not None:
        return file.content
    if file.size > COMPARE_LIMIT:
        return None
    with open_blob(file.blob_id) as stream:
        return stream.read()


def _same(file: DesiredFile, remote) -> bool:
    if remote is None or remote.size != file.size:
        return False
    if remote.sha256 is not None:
        return remote.sha256 == file.sha256
    content = _content(file)
    return content is not None and git_oid(content) == remote.blob_id


def snapshot(state: RemoteState | None) -> dict:
    """What the remote is, in a form the next run compares with."""
    if state is None:
        return {}
    return {"sha": state.sha, "private": state.private, "gated": state.gated,
            "files": {p: f.sha256 or f"git:{f.blob_id}" for p, f in sorted(state.files.items())},
            "accepted": sorted(state.access.get("accepted", ())) if state.access_known else None}


def drift(before: dict, state: RemoteState | None) -> list[str]:
    """What changed on the remote since the last run that succeeded, in words."""
    if not before:
        return []
    if state is None:
        return ["the repo is gone from the Hub (or the token can no longer see it)"]
    now = snapshot(state)
    found = []
    if now["private"] != before["private"]:
        found.append("made public outside Stagegate" if not now["private"]
                     else "made private outside Stagegate")
    if now["gated"] != before["gated"]:
        found.append(f"gating changed outside Stagegate: {before['gated']!r} → {now['gated']!r}")
    if now["sha"] != before["sha"]:
        found.append(f"main moved outside Stagegate: {before['sha'][:12]} → {now['sha'][:12]}")
    for path in sorted(set(now["files"]) | set(before["files"])):
        was, is_ = before["files"].get(path), now["files"].get(path)
        if was != is_:
            found.append(f"{path}: added outside Stagegate" if was is None else
                         f"{path}: deleted outside Stagegate" if is_ is None else
                         f"{path}: replaced outside Stagegate "
                         f"(now {is_.removeprefix('git:')[:16]})")
    if now["gated"] == before["gated"] and None not in (now["accepted"], before["accepted"]):
        for name in sorted(set(now["accepted"]) - set(before["accepted"])):
            found.append(f"{name} was given access outside Stagegate")
        for name in sorted(set(before["accepted"]) - set(now["accepted"])):
            found.append(f"{name} lost access outside Stagegate")
    return found


def inspect(remote: Remote, before: dict) -> tuple[RemoteState | None, list[str]]:
    """The remote as it is, and what changed on it since the last run that succeeded."""
    state = remote.read()
    return state, drift(before, state)


def apply(remote: Remote, desired: Desired, state: RemoteState | None, *, message: str,
          description: str) -> Outcome:
    """Bring the remote (as `inspect` read it) to `desired`, then read it back."""
    outcome = Outcome(state="in_sync", notes=list(desired.notes))
    if state is None:
        remote.create_private()
        outcome.changes.append("created the repo (private)")
        state = remote.read()
        if state is None:
            raise RemoteRefused(f"{remote.repo_id} was created but the token cannot read it")
    if desired.kind == "withdrawn":
        _withdraw(remote, desired, state, outcome)
    else:
        _publish(remote, desired, state, outcome, message=message, description=description)
    final = remote.read()
    if final is None:
        raise RemoteRefused(f"{remote.repo_id} disappeared while it was being mirrored")
    outcome.remote_commit = final.sha
    outcome.snapshot = snapshot(final)
    if outcome.state != "alarm":
        wanted = (desired.private, desired.gated)
        if (final.private, final.gated) != wanted:
            raise RemoteRefused(f"the Hub did not apply the settings: private={final.private}, "
                                f"gated={final.gated!r}, wanted private={wanted[0]}, "
                                f"gated={wanted[1]!r}")
    return outcome


def _set(remote: Remote, state: RemoteState, outcome: Outcome, why: str, **settings) -> None:
    remote.settings(**settings)
    for key, value in settings.items():
        setattr(state, key, value)
    outcome.changes.append(why)


def _publish(remote: Remote, desired: Desired, state: RemoteState, outcome: Outcome, *,
             message: str, description: str) -> None:
    files = desired.files or {}
    adds = [f for path, f in sorted(files.items()) if not _same(f, state.files.get(path))]
    deletes = sorted(p for p in state.files if p not in files and p not in KEEP)
    if (adds or deletes) and not state.private:
        _set(remote, state, outcome, "made private while its files change", private=True)
    if desired.gated and state.gated != desired.gated:
        _set(remote, state, outcome, f"gated ({desired.gated})", gated=desired.gated)
    sha = state.sha
    if adds or deletes:
        sha = _commit(remote, adds, deletes, state.sha, message, description, outcome)
        outcome.committed = True
    now = remote.files(sha)
    uploaded = {f.path for f in adds}
    for path, file in sorted(files.items()):
        held = now.get(path)
        if held is None:
            outcome.mismatches.append(f"{path} is missing on the Hub")
            continue
        found = held.sha256
        if found is None:
            # Kept in git, not LFS, so the Hub gives no sha256: a file just sent is downloaded
            # back and hashed; one left alone had the same git oid as these bytes.
            found = remote.sha256_of(path, sha) if path in uploaded else file.sha256
        outcome.verified[path] = found
        if found != file.sha256:
            outcome.mismatches.append(f"{path}: the Hub holds sha256 {found}, Stagegate sent "
                                      f"{file.sha256}")
    extra = sorted(p for p in now if p not in files and p not in KEEP)
    outcome.mismatches += [f"{path} is on the Hub but not in the manifest" for path in extra]
    if outcome.mismatches:
        outcome.state = "alarm"
        if not state.private:
            _set(remote, state, outcome, "made private: what the Hub holds is not what was "
                                         "approved", private=True)
        return
    if state.private != desired.private:
        _set(remote, state, outcome, "made private" if desired.private else "made public",
             private=desired.private)
    if not desired.gated and state.gated:
        _set(remote, state, outcome, "ungated (open)", gated=False)
    if desired.gated:
        _sync_grants(remote, desired, outcome, state.access)


def _commit(remote, adds, deletes, parent, message, description, outcome) -> str:
    with ExitStack() as stack:
        operations = []
        for file in adds:
            stream = io.BytesIO(file.content) if file.content is not None else \
                buffered(stack.enter_context(open_blob(file.blob_id)))
            op, sent = remote.prepare(file.path, stream)
            if sent != file.sha256:
                # Never upload bytes that are not the approved ones (a damaged blob store).
                raise RemoteRefused(f"{file.path}: the blob store's copy hashes to {sent}, not "
                                    f"to its manifest sha256 {file.sha256}; nothing was uploaded")
            operations.append(op)
        sha = remote.commit(adds=operations, deletes=deletes, parent=parent, message=message,
                            description=description)
    outcome.changes.append(f"committed {sha[:12]}: {len(adds)} file(s) uploaded"
                           + (f", {len(deletes)} deleted" if deletes else ""))
    return sha


def _sync_grants(remote: Remote, desired: Desired, outcome: Outcome, lists: dict) -> None:
    if not lists:  # the repo was not gated when it was read
        lists = {status: remote.access_list(status)
                 for status in ("pending", "accepted", "rejected")}
    accepted = lists["accepted"]
    for name, person in sorted(desired.accepted.items()):
        if name in accepted:
            continue
        try:
            if name in lists["pending"] or name in lists["rejected"]:
                remote.accept(name)
            else:
                remote.grant(name)
        except RemoteRefused as exc:
            if exc.status != 404:
                raise
            outcome.notes.append(f"{person}'s account name {name} does not exist on the Hub: "
                                 "a release manager corrects it")
            continue
        outcome.changes.append(f"granted {name} ({person} in Stagegate)")
    revoke = accepted & desired.refused
    if desired.exclusive:
        revoke |= accepted - set(desired.accepted)
    for name in sorted(revoke):
        remote.reject(name, "Stagegate does not (or no longer) let this account download "
                            "this release")
        outcome.changes.append(f"revoked {name}'s access")


def _withdraw(remote: Remote, desired: Desired, state: RemoteState, outcome: Outcome) -> None:
    outcome.state = "withdrawn"
    if not state.private:
        _set(remote, state, outcome, "made private (withdrawn)", private=True)
    if state.gated != "manual":
        # Gated by hand from now on: if anyone opens the repo again, nobody gets in by default.
        _set(remote, state, outcome, "gated (manual)", gated="manual")
    for name in sorted(remote.access_list("accepted")):
        remote.reject(name, "the release was withdrawn in Stagegate")
        outcome.changes.append(f"revoked {name}'s access (withdrawn)")
