"""Credentials: generated with ``secrets``, shown once, stored as SHA-256 digests.

Tokens are 32 random bytes, so a fast digest is enough (no password stretching needed);
the visible prefix lets a person tell keys apart without exposing them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

PREFIX_LEN = 12


@dataclass(frozen=True, slots=True)
class IssuedSecret:
    plaintext: str
    prefix: str
    digest: str


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue(kind: str) -> IssuedSecret:
    """kind: 'sk' (tenant API key), 'sa' (operator admin token), 'sn' (node agent token)."""
    token = f"{kind}-{secrets.token_urlsafe(32)}"
    return IssuedSecret(token, token[:PREFIX_LEN], digest(token))


def matches(token: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(token), stored_digest)
