from __future__ import annotations

import hashlib

from django.conf import settings
from django.db import models


class TokenScope(models.TextChoices):
    READ = "read", "read: browse and download"
    SUBMIT = "submit", "submit: read, and submit checkpoints"
    ALL = "all", "all: everything the user may do"


# Each scope includes the ones before it.
_SCOPE_RANK = {TokenScope.READ: 0, TokenScope.SUBMIT: 1, TokenScope.ALL: 2}

TOKEN_PREFIX = "sg_"


def hash_token(raw: str) -> str:
    # Tokens carry 240 random bits, so a fast hash is enough: nobody can brute-force the preimage.
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="api_tokens")
    name = models.CharField(max_length=100)
    scope = models.CharField(max_length=10, choices=TokenScope.choices, default=TokenScope.READ)
    token_hash = models.CharField(max_length=64, unique=True)
    hint = models.CharField(max_length=12, help_text="The token's first characters, to recognise it.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.user} · {self.name} ({self.hint}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def allows(self, required: str) -> bool:
        return _SCOPE_RANK[TokenScope(self.scope)] >= _SCOPE_RANK[TokenScope(required)]
