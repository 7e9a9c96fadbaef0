"""CSRF tokens: signed, bound to the user and to a time, kept nowhere. No I/O here.

A page that offers an action carries a token in its form; the action is
taken only with a token this console (or a replica with the same key)
signed for the same user within ``MAX_AGE_S``. The console sets no
cookie: a browser sends basic credentials with a cross-site form by
itself, but never a token it cannot read.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from pathlib import Path

from shared.settings import SettingsError

MAX_AGE_S = 12 * 3600  # a working day's tab
_KEY_BYTES = 32


def load_key(path: str) -> bytes:
    """The signing key from a file (every replica the same), else a random one for this process."""
    if not path:
        return secrets.token_bytes(_KEY_BYTES)
    try:
        key = Path(path).read_bytes().strip()
    except OSError as exc:
        raise SettingsError(f"OPENFERO_CONSOLE_CSRF_KEY_FILE {path!r}: {exc.strerror}") from None
    if len(key) < 16:
        raise SettingsError("OPENFERO_CONSOLE_CSRF_KEY_FILE: the key needs at least 16 bytes")
    return key


def _sign(key: bytes, user: str, issued: int) -> str:
    return hmac.new(key, f"{user}\n{issued}".encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()[:40]


def issue(key: bytes, user: str, now: float | None = None) -> str:
    issued = int(now if now is not None else time.time())
    return f"{issued}.{_sign(key, user, issued)}"


def valid(key: bytes, user: str, token: str, now: float | None = None) -> bool:
    """Whether ``token`` was signed with ``key`` for ``user`` no longer than MAX_AGE_S ago."""
    issued_text, _, signature = token.partition(".")
    if not issued_text.isdigit() or not signature:
        return False
    issued = int(issued_text)
    age = (now if now is not None else time.time()) - issued
    if not 0 <= age <= MAX_AGE_S + 60:  # a minute of clock skew between replicas
        return False
    return hmac.compare_digest(signature.encode(), _sign(key, user, issued).encode())
