"""OpenSSF Model Signing (OMS v1.0) signatures, as the `model-signing` library makes and checks
them, made from digests Stagegate already holds: the signer never reads the weights again (a
checkpoint's files are content-addressed by their sha256, which is OMS's per-file digest).

What a signature covers: every file of the checkpoint except the paths it declares ignored,
which the stock verifier skips too: the signature itself, the release attestation, the Hub
client's `.cache` folder and git's files (the client ignores those by default anyway).
"""

from __future__ import annotations

import json
import pathlib
import tempfile
from dataclasses import dataclass, field
from typing import Iterable

from model_signing import manifest as oms_manifest
from model_signing._hashing import hashing as oms_hashing
from model_signing._signing import sign_ec_key, sign_sigstore_pb, signing as oms_signing

SIGNATURE_PATH = "model.sig"
ATTESTATION_PATH = "release.intoto.json"
GIT_PATHS = (".git", ".gitattributes", ".github", ".gitignore")
IGNORED_PATHS = (SIGNATURE_PATH, ATTESTATION_PATH, ".cache") + GIT_PATHS


def is_ignored(path: str, ignored: Iterable[str]) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in ignored)


class _KeySigner(sign_ec_key.Signer):
    """The library's EC key signer, given the key itself rather than a file to read it from."""

    def __init__(self, private_key):
        self._private_key = private_key


class _KeyVerifier(sign_ec_key.Verifier):
    def __init__(self, public_key):
        self._public_key = public_key


def sign_files(files: Iterable[tuple[str, str]], *, key, model_name: str,
               extra_ignored: Iterable[str] = ()) -> bytes:
    """The `model.sig` bundle (JSON bytes) over `files` ((POSIX path, sha256 hex) pairs)."""
    ignored = list(IGNORED_PATHS) + [p for p in extra_ignored if p not in IGNORED_PATHS]
    serialization_type = oms_manifest._FileSerialization(
        "sha256", allow_symlinks=False, ignore_paths=[pathlib.PurePosixPath(p) for p in ignored])
    items = [oms_manifest.FileManifestItem(
        path=pathlib.PurePosixPath(path), digest=oms_hashing.Digest("sha256", bytes.fromhex(sha)))
        for path, sha in sorted(files) if not is_ignored(path, ignored)]
    manifest = oms_manifest.Manifest(model_name, items, serialization_type)
    signature = _KeySigner(key.private_key).sign(oms_signing.Payload(manifest))
    return signature.bundle.to_json().encode()


@dataclass(frozen=True)
class SignatureCheck:
    """The outcome of checking a model signature against known digests."""

    status: str  # valid | invalid
    key_id: str = ""
    reason: str = ""
    ignored: tuple[str, ...] = ()
    files: dict[str, str] = field(default_factory=dict)  # path -> sha256 that the signature names


def read_signed_manifest(data: bytes, public_keys) -> tuple[oms_manifest.Manifest, str]:
    """The manifest a signature carries and the id of the key it verified under. Raises
    ValueError with a sentence when it is not a signature by any of `public_keys`."""
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / SIGNATURE_PATH
        path.write_bytes(data)
        try:
            signature = sign_sigstore_pb.Signature.read(path)
        except Exception as exc:  # the library raises whatever its parsers raise
            raise ValueError(f"model.sig is not an OpenSSF model signature bundle ({exc})") \
                from None
    errors = []
    for public in public_keys:
        try:
            return _KeyVerifier(public.key).verify(signature), public.key_id
        except Exception as exc:  # key mismatch, bad signature, malformed payload
            errors.append(str(exc))
    hint = ""
    try:
        hint = json.loads(data)["verificationMaterial"]["publicKey"]["hint"] or ""
    except (ValueError, KeyError, TypeError):
        pass
    raise ValueError("model.sig does not verify with any trusted key"
                     + (f" (it names key {hint[:16]}…)" if hint else ""))


def check_files(data: bytes, files: dict[str, str], public_keys) -> SignatureCheck:
    """Check a signature against files known by their digests (path -> sha256), as the stock
    verifier would against those files on disk: same files, same digests, none extra. Stricter
    than the stock verifier in one way: every file but the signature itself (and git's) must be
    covered, so a signature that declares a submitted file ignored does not vouch for it."""
    try:
        manifest, key_id = read_signed_manifest(data, public_keys)
    except ValueError as exc:
        return SignatureCheck(status="invalid", reason=str(exc))
    params = manifest.serialization_type
    ignored = tuple(dict.fromkeys([*params.get("ignore_paths", ()), *GIT_PATHS]))
    signed = {rd.identifier: rd.digest.digest_hex for rd in manifest.resource_descriptors()}
    present = {p: h for p, h in files.items()
               if not is_ignored(p, (SIGNATURE_PATH, *GIT_PATHS))}
    problems = []
    for path in sorted(set(signed) | set(present)):
        if path not in present:
            problems.append(f"{path} is signed but missing")
        elif path not in signed:
            problems.append(f"{path} is not covered by the signature")
        elif signed[path] != present[path]:
            problems.append(f"{path} differs from the signed bytes")
    if problems:
        return SignatureCheck(status="invalid", key_id=key_id, reason="; ".join(problems),
                              ignored=ignored, files=signed)
    return SignatureCheck(status="valid", key_id=key_id, ignored=ignored, files=signed)

