"""The lab's signing keys: EC P-256, from a PEM file or an environment variable, each named by
its key id (the sha256 of its public key as SubjectPublicKeyInfo PEM, the same hint an OpenSSF
model signature carries, so a signature names the key that made it).

One key signs (the current one); retired public keys stay published so that everything they
signed still verifies after a rotation. With no key configured, a development instance makes one
in the data dir (like its development SECRET_KEY); production refuses to sign (`require_key`).

This package imports no Stagegate app: releases sign with it, and so does the audit log.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings


class SigningKeyMissing(RuntimeError):
    """No signing key is configured, or the one configured cannot be used."""


@dataclass(frozen=True)
class PublicKey:
    key_id: str
    pem: str
    key: ec.EllipticCurvePublicKey
    current: bool = False


@dataclass(frozen=True)
class SigningKey:
    private_key: ec.EllipticCurvePrivateKey
    public: PublicKey

    @property
    def key_id(self) -> str:
        return self.public.key_id


def public_pem(public_key: ec.EllipticCurvePublicKey) -> str:
    return public_key.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def key_id_of(public_key: ec.EllipticCurvePublicKey) -> str:
    return hashlib.sha256(public_pem(public_key).encode()).hexdigest()


def _public(public_key, *, current: bool = False) -> PublicKey:
    _check_curve(public_key, "the public key")
    return PublicKey(key_id=key_id_of(public_key), pem=public_pem(public_key), key=public_key,
                     current=current)


def _check_curve(public_key, what: str) -> None:
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or \
            not isinstance(public_key.curve, ec.SECP256R1):
        raise SigningKeyMissing(f"{what} is not an EC P-256 key: make one with `openssl ecparam "
                                "-name prime256v1 -genkey -noout -out signing-key.pem`")


def load_private_pem(data: bytes, *, source: str) -> SigningKey:
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyMissing(f"{source} is not an unencrypted PEM private key ({exc}): "
                                "give an EC P-256 key in PEM") from None
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        raise SigningKeyMissing(f"{source} is not an EC key: give an EC P-256 key in PEM")
    _check_curve(private.public_key(), source)
    return SigningKey(private_key=private, public=_public(private.public_key(), current=True))


def load_public_pems(data: bytes, *, source: str) -> list[PublicKey]:
    """Every PEM public key (or private key, whose public half is taken) in `data`."""
    keys = []
    for block in _pem_blocks(data):
        try:
            if b"PRIVATE KEY" in block.splitlines()[0]:
                key = serialization.load_pem_private_key(block, password=None).public_key()
            else:
                key = serialization.load_pem_public_key(block)
        except (ValueError, TypeError) as exc:
            raise SigningKeyMissing(f"{source} holds a PEM block that is not a key ({exc})") \
                from None
        keys.append(_public(key))
    if not keys:
        raise SigningKeyMissing(f"{source} holds no PEM public key")
    return keys


def _pem_blocks(data: bytes) -> list[bytes]:
    blocks, current = [], []
    for line in data.splitlines(keepends=True):
        if line.startswith(b"-----BEGIN"):
            current = [line]
        elif current:
            current.append(line)
            if line.startswith(b"-----END"):
                blocks.append(b"".join(current))
                current = []
    return blocks


def generate_private_pem() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())


def _development_key_path() -> Path:
    return Path(settings.DATA_DIR) / "signing-key.pem"


def _development_key() -> bytes:
    """The development instance's key, made once; O_EXCL so two processes starting together
    keep the same one."""
    path = _development_key_path()
    if not path.exists():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(generate_private_pem())
    for _ in range(50):  # another process may be writing it right now
        data = path.read_bytes()
        if b"-----END" in data:
            return data
        time.sleep(0.02)
    return path.read_bytes()


_cache: dict[tuple, object] = {}


def _config() -> tuple:
    return (settings.STAGEGATE_SIGNING_KEY, settings.STAGEGATE_SIGNING_KEY_FILE,
            tuple(settings.STAGEGATE_SIGNING_RETIRED_KEYS),
            settings.STAGEGATE_SIGNING_REQUIRE_KEY, str(settings.DATA_DIR))


def key_configured() -> bool:
    return bool(settings.STAGEGATE_SIGNING_KEY or settings.STAGEGATE_SIGNING_KEY_FILE)


def current_key() -> SigningKey:
    """The key that signs now. Raises SigningKeyMissing, saying how to configure one."""
    config = _config()
    cached = _cache.get(("current", config))
    if cached is not None:
        return cached
    if settings.STAGEGATE_SIGNING_KEY:
        text = settings.STAGEGATE_SIGNING_KEY.replace("\\n", "\n").encode()
        key = load_private_pem(text, source="STAGEGATE_SIGNING_KEY")
    elif settings.STAGEGATE_SIGNING_KEY_FILE:
        path = Path(settings.STAGEGATE_SIGNING_KEY_FILE)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SigningKeyMissing(f"STAGEGATE_SIGNING_KEY_FILE={path} cannot be read "
                                    f"({exc.strerror}): point it at the lab's PEM key") from None
        key = load_private_pem(data, source=f"STAGEGATE_SIGNING_KEY_FILE={path}")
    elif settings.STAGEGATE_SIGNING_REQUIRE_KEY:
        raise SigningKeyMissing(
            "no signing key is configured, and production never signs with a generated one: "
            "set STAGEGATE_SIGNING_KEY_FILE to the lab's EC P-256 PEM key (docs/signing.md)")
    else:
        key = load_private_pem(_development_key(), source=str(_development_key_path()))
    _cache[("current", config)] = key
    return key


def retired_keys() -> list[PublicKey]:
    config = _config()
    cached = _cache.get(("retired", config))
    if cached is not None:
        return cached
    keys: list[PublicKey] = []
    for name in settings.STAGEGATE_SIGNING_RETIRED_KEYS:
        path = Path(name)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SigningKeyMissing(f"STAGEGATE_SIGNING_RETIRED_KEYS names {path}, which cannot "
                                    f"be read ({exc.strerror})") from None
        keys += load_public_pems(data, source=str(path))
    _cache[("retired", config)] = keys
    return keys


def published_keys() -> list[PublicKey]:
    """The current public key first, then every retired one (each once)."""
    keys, seen = [], set()
    try:
        keys.append(current_key().public)
        seen.add(keys[0].key_id)
    except SigningKeyMissing:
        pass
    for key in retired_keys():
        if key.key_id not in seen:
            keys.append(key)
            seen.add(key.key_id)
    return keys


def public_key(key_id: str) -> PublicKey | None:
    return next((k for k in published_keys() if k.key_id == key_id), None)
