"""Offline verification of a downloaded release folder: `model.sig` with the stock
model-signing verifier, and `release.intoto.json` (its DSSE signature, then every subject's
sha256 against the files, then the manifest digest recomputed from them). Needs no database and
no network: what `manage.py verify_release` runs, and what docs/signing.md shows in a few lines.
"""

from __future__ import annotations

import base64
import hashlib
import json
import pathlib
import re
import tempfile
from dataclasses import dataclass, field

from signing import dsse
from signing.oms import ATTESTATION_PATH, SIGNATURE_PATH

CHUNK = 4 * 1024 * 1024
# The Hub client's own folder under --local-dir; the signature declares it ignored as well.
CLIENT_PATHS = (".cache",)


class VerificationFailed(Exception):
    pass


@dataclass
class Report:
    model_signature_key: str = ""
    files_verified: int = 0
    statement: dict = field(default_factory=dict)
    attestation_key: str = ""


def sha256_file(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_digest(entries: list[dict]) -> str:
    """DESIGN.md §3: sha256 of the canonical JSON of [{path, sha256, size}] sorted by path."""
    text = json.dumps(sorted(entries, key=lambda e: e["path"]), sort_keys=True,
                      separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def verify_model_signature(folder: pathlib.Path, public_keys, *,
                           ignore_paths: list[str] = ()) -> tuple[str, int]:
    """The stock verifier over the folder; (the key id it verified with, files covered)."""
    from model_signing import hashing, verifying

    signature = folder / SIGNATURE_PATH
    if not signature.is_file():
        raise VerificationFailed(f"{SIGNATURE_PATH} is missing from {folder}")
    try:
        hint = json.loads(signature.read_text())["verificationMaterial"]["publicKey"]["hint"]
    except (ValueError, KeyError, TypeError):
        raise VerificationFailed(f"{SIGNATURE_PATH} is not an OpenSSF model signature "
                                 "made with a key") from None
    key = next((k for k in public_keys if k.key_id == hint), None)
    if key is None:
        raise VerificationFailed(f"{SIGNATURE_PATH} was signed by key {str(hint)[:16]}…, which is "
                                 "not one of the lab's keys: it is not the lab's signature")
    ignored = [SIGNATURE_PATH, ATTESTATION_PATH, *CLIENT_PATHS, *ignore_paths]
    with tempfile.TemporaryDirectory() as tmp:
        pem = pathlib.Path(tmp) / "key.pem"
        pem.write_text(key.pem)
        config = (verifying.Config().use_elliptic_key_verifier(public_key=pem)
                  .set_hashing_config(hashing.Config().set_ignored_paths(
                      paths=ignored, ignore_git_paths=True)))
        try:
            config.verify(folder, signature)
        except Exception as exc:  # the library raises ValueError (and others) with the reason
            raise VerificationFailed(f"{SIGNATURE_PATH} does not match the files: "
                                     f"{_readable(str(exc))}") from None
    envelope = json.loads(signature.read_text())["dsseEnvelope"]
    covered = len(json.loads(base64.b64decode(envelope["payload"]))["predicate"]["resources"])
    return key.key_id, covered


def _readable(message: str) -> str:
    """The library's mismatch message names each file, then dumps raw digests: keep the names."""
    changed = re.findall(r"Hash mismatch for \\?'([^'\\]+)", message)
    others = re.findall(r"((?:Missing|Extra) files in model [^:]*: [^\]\"']+)", message)
    words = [f"the bytes of {', '.join(changed)} differ from the signed ones"] if changed else []
    return "; ".join(words + others) or message


def verify_attestation(folder: pathlib.Path, public_keys, *,
                       ignore_paths: list[str] = ()) -> tuple[dict, str]:
    """The envelope's signature, every subject's bytes (but those in `ignore_paths`, e.g. a
    gated Hub target's rewritten README.md, taken as attested), then the manifest digest."""
    path = folder / ATTESTATION_PATH
    if not path.is_file():
        raise VerificationFailed(f"{ATTESTATION_PATH} is missing from {folder}")
    try:
        statement, key_id = dsse.open_envelope(path.read_bytes(), public_keys)
    except dsse.EnvelopeInvalid as exc:
        raise VerificationFailed(f"{ATTESTATION_PATH}: {exc}") from None
    entries = []
    for subject in statement.get("subject", []):
        name, want = subject.get("name", ""), (subject.get("digest") or {}).get("sha256")
        if name in ignore_paths:
            entries.append({"path": name, "sha256": want,
                            "size": (subject.get("annotations") or {}).get("size")})
            continue
        local = folder / name
        if not local.is_file():
            raise VerificationFailed(f"{ATTESTATION_PATH} names {name}, which is missing")
        if sha256_file(local) != want:
            raise VerificationFailed(f"{name} differs from the file {ATTESTATION_PATH} attests "
                                     f"(sha256 {want[:12]}…)")
        entries.append({"path": name, "sha256": want, "size": local.stat().st_size})
    predicate = statement.get("predicate") or {}
    entries += predicate.get("replaced_files") or []
    if manifest_digest(entries) != predicate.get("manifest_digest"):
        raise VerificationFailed(f"the files do not add up to the manifest digest "
                                 f"{str(predicate.get('manifest_digest'))[:12]}… that "
                                 f"{ATTESTATION_PATH} attests")
    return statement, key_id


def verify_release_folder(folder: pathlib.Path, public_keys, *,
                          ignore_paths: list[str] = ()) -> Report:
    key_id, covered = verify_model_signature(folder, public_keys, ignore_paths=ignore_paths)
    statement, attestation_key = verify_attestation(folder, public_keys,
                                                    ignore_paths=ignore_paths)
    return Report(model_signature_key=key_id, files_verified=covered, statement=statement,
                  attestation_key=attestation_key)
