"""Hub tokens at rest: encrypted with Fernet (AES-128-CBC and HMAC-SHA256, from `cryptography`)
under a key derived from SECRET_KEY by HKDF-SHA256, so a database dump alone does not give the
token away. Keys from SECRET_KEY_FALLBACKS still decrypt (rotate SECRET_KEY, then store the
token again); a token no key decrypts is an error that says so."""

from __future__ import annotations

import base64
import os
import re

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

INFO = b"stagegate publication target token v1"
# The token of a target is read from a variable of this shape only: naming SECRET_KEY or
# DATABASE_URL would send Stagegate's own secrets to whatever endpoint a target names.
TOKEN_ENV_RE = re.compile(r"^(HF_TOKEN|[A-Z][A-Z0-9_]*_TOKEN)$")


class TokenUnavailable(Exception):
    """The target's token cannot be had; the message says what to do."""


def _fernet(secret: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"stagegate", info=INFO).derive(
        secret.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def _keys() -> MultiFernet:
    secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return MultiFernet([_fernet(s) for s in secrets])


def encrypt_token(token: str) -> str:
    return _keys().encrypt(token.encode()).decode()


def decrypt_token(stored: str) -> str:
    try:
        return _keys().decrypt(stored.encode()).decode()
    except InvalidToken:
        raise TokenUnavailable("the stored token was encrypted under another SECRET_KEY: store "
                               "it again (admin or add_publication_target --token-stdin)") from None


def token_env_refusal(name: str) -> str | None:
    if not TOKEN_ENV_RE.match(name or ""):
        return (f"--token-env {name!r}: name a variable that holds only this token, HF_TOKEN or "
                "one ending in _TOKEN (e.g. STAGEGATE_HUB_TOKEN)")
    return None


def target_token(target) -> str:
    """The token a mirror run uses, read when it runs (never cached in the database)."""
    if target.token_env:
        if token_env_refusal(target.token_env):
            raise TokenUnavailable(token_env_refusal(target.token_env))
        value = os.environ.get(target.token_env, "").strip()
        if not value:
            raise TokenUnavailable(f"the workers' environment has no {target.token_env}: set it "
                                   "where `celery -A config worker` runs")
        return value
    if target.token_encrypted:
        return decrypt_token(target.token_encrypted)
    raise TokenUnavailable("the target has no token: name an environment variable or store one")
