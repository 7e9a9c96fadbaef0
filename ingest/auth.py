"""Webhook authentication: none, basic or bearer, as Alertmanager's http_config sends it.

Secrets come from files (mounted Secrets) or the environment, are read once
at start-up, and are compared in constant time. Nothing here logs them.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass
from pathlib import Path

from shared.settings import IngestSettings, SettingsError


def _secret(file: str, value: str, what: str) -> bytes:
    if file:
        try:
            return Path(file).read_text().strip().encode()
        except OSError as exc:
            raise SettingsError(f"{what} file {file!r}: {exc.strerror}") from None
    return value.encode()


def _credential_settings(settings: IngestSettings) -> list[tuple[str, str]]:
    return [
        ("OPENFERO_AUTH_USERNAME", settings.auth_username),
        ("OPENFERO_AUTH_PASSWORD_FILE", settings.auth_password_file),
        ("OPENFERO_AUTH_PASSWORD", settings.auth_password),
        ("OPENFERO_AUTH_TOKEN_FILE", settings.auth_token_file),
        ("OPENFERO_AUTH_TOKEN", settings.auth_token),
    ]


@dataclass(frozen=True)
class Authenticator:
    mode: str = "none"
    username: bytes = b""
    password: bytes = b""
    token: bytes = b""

    @classmethod
    def from_settings(cls, settings: IngestSettings) -> Authenticator:
        mode = settings.auth_mode
        if mode == "none":
            credentials = [env for env, value in _credential_settings(settings) if value]
            if credentials:
                # Set for a reason: running open instead would be a silent surprise.
                raise SettingsError(
                    f"{', '.join(credentials)} set, but OPENFERO_AUTH is none: set OPENFERO_AUTH to basic or bearer, "
                    "or unset them"
                )
            return cls()
        if mode == "basic":
            password = _secret(settings.auth_password_file, settings.auth_password, "OPENFERO_AUTH_PASSWORD")
            if not settings.auth_username or not password:
                raise SettingsError("OPENFERO_AUTH=basic needs OPENFERO_AUTH_USERNAME and a password")
            return cls(mode, settings.auth_username.encode(), password)
        if mode == "bearer":
            token = _secret(settings.auth_token_file, settings.auth_token, "OPENFERO_AUTH_TOKEN")
            if not token:
                raise SettingsError("OPENFERO_AUTH=bearer needs OPENFERO_AUTH_TOKEN_FILE or OPENFERO_AUTH_TOKEN")
            return cls(mode, token=token)
        raise SettingsError(f"OPENFERO_AUTH={mode!r}: expected none, basic or bearer")

    def check(self, authorization: str | None) -> str | None:
        """None when the request may pass; else the WWW-Authenticate challenge for a 401."""
        if self.mode == "none":
            return None
        scheme, _, credentials = (authorization or "").partition(" ")
        if self.mode == "basic":
            if scheme.lower() == "basic" and self._basic_ok(credentials.strip()):
                return None
            return 'Basic realm="openfero", charset="UTF-8"'
        # Header bytes that are not UTF-8 arrive as surrogates; encoded back
        # so they compare as sent (and fail), never raise.
        if scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode("utf-8", "surrogateescape"), self.token):
            return None
        return 'Bearer realm="openfero"'

    def _basic_ok(self, credentials: str) -> bool:
        try:
            decoded = base64.b64decode(credentials, validate=True)
        except (binascii.Error, ValueError):
            return False
        user, sep, password = decoded.partition(b":")
        # Both compared, always: no early exit that timing could reveal.
        user_ok = hmac.compare_digest(user, self.username)
        password_ok = hmac.compare_digest(password, self.password)
        return bool(sep) and user_ok and password_ok
