"""Alertmanager's API v2, for silences: list, read, create, expire, on one Alertmanager at a time.

Answers are classified where they enter: ``Unavailable`` when trying
again (or another peer) may help (no answer, a timeout, 408, 429, 5xx),
``Rejected`` when it cannot until someone changes something (401, 403 and
404 say an operator must fix credentials or the URL; other 4xx that the
silence itself is refused). Which Alertmanager to ask is the caller's
choice (dispatcher.silencing). Secrets are read once, at start-up, and
never logged.
"""

from __future__ import annotations

import base64
import json
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from shared.settings import AlertmanagerSettings, SettingsError

NEEDS_OPERATOR = frozenset({401, 403, 404})


class Unavailable(Exception):
    """No usable answer from this Alertmanager now."""


class Rejected(Exception):
    """This Alertmanager refused the request; the same request will be refused again."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status

    @property
    def needs_operator(self) -> bool:
        return self.status in NEEDS_OPERATOR


def _secret(file: str, value: str, what: str) -> str:
    if file:
        try:
            return Path(file).read_text().strip()
        except OSError as exc:
            raise SettingsError(f"{what} file {file!r}: {exc.strerror}") from None
    return value


def authorization(settings: AlertmanagerSettings) -> str | None:
    """The Authorization header the settings ask for, or None."""
    mode = settings.auth_mode.strip().lower()
    if mode == "basic":
        password = _secret(settings.auth_password_file, settings.auth_password, "OPENFERO_ALERTMANAGER_PASSWORD")
        if not settings.auth_username or not password:
            raise SettingsError("OPENFERO_ALERTMANAGER_AUTH=basic needs OPENFERO_ALERTMANAGER_USERNAME and a password")
        return "Basic " + base64.b64encode(f"{settings.auth_username}:{password}".encode()).decode()
    if mode == "bearer":
        token = _secret(settings.auth_token_file, settings.auth_token, "OPENFERO_ALERTMANAGER_TOKEN")
        if not token:
            raise SettingsError("OPENFERO_ALERTMANAGER_AUTH=bearer needs OPENFERO_ALERTMANAGER_TOKEN_FILE or OPENFERO_ALERTMANAGER_TOKEN")
        return f"Bearer {token}"
    return None


def tls_context(settings: AlertmanagerSettings) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=settings.ca_file or None)
        if settings.cert_file:
            context.load_cert_chain(settings.cert_file, settings.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(f"Alertmanager TLS files: {exc}") from None
    return context


class Alertmanagers:
    """The configured Alertmanagers (an HA cluster's peers); every call names the one it asks."""

    def __init__(self, settings: AlertmanagerSettings):
        self.urls = settings.url_list()
        self.timeout_s = settings.timeout_s
        self._headers = {"Accept": "application/json"}
        auth = authorization(settings)
        if auth:
            self._headers["Authorization"] = auth
        self._tls = tls_context(settings) if any(u.startswith("https:") for u in self.urls) else None
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # Made on first use: a session belongs to the running loop.
            self._session = aiohttp.ClientSession(
                headers=self._headers, timeout=aiohttp.ClientTimeout(total=self.timeout_s), connector=aiohttp.TCPConnector(ssl=self._tls if self._tls else True)
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(self, method: str, url: str, path: str, body: Any = None) -> tuple[int, Any]:
        try:
            async with self._client().request(method, url + path, json=body, allow_redirects=False) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise Unavailable(f"Alertmanager {url} unreachable: {exc!r}") from None
        if status == 404 and method == "GET" and path.startswith("/api/v2/silence/"):
            return status, None  # an id this Alertmanager does not know: an answer, not an error
        if status in (408, 429) or status >= 500:
            raise Unavailable(f"Alertmanager {url} answered {status}: {text.strip()[:200]}")
        if not 200 <= status <= 299:
            raise Rejected(f"Alertmanager {url} answered {status} to {method} {path}: {text.strip()[:300]}", status)
        try:
            return status, json.loads(text) if text.strip() else None
        except ValueError:
            raise Unavailable(f"Alertmanager {url} answered {status} with a body that is not JSON") from None

    async def silences(self, url: str) -> list[dict[str, Any]]:
        """Every silence this Alertmanager keeps (expired ones too, for its retention)."""
        _, found = await self._call("GET", url, "/api/v2/silences")
        return [s for s in found or [] if isinstance(s, dict)]

    async def silence(self, url: str, silence_id: str) -> dict[str, Any] | None:
        """One silence, or None when this Alertmanager does not know the id."""
        _, found = await self._call("GET", url, "/api/v2/silence/" + quote(silence_id, safe=""))
        return found if isinstance(found, dict) else None

    async def create(self, url: str, silence: dict[str, Any]) -> str:
        """POST a new silence (never one with an id: that would replace an expired one with a new one); its id."""
        assert "id" not in silence
        _, answer = await self._call("POST", url, "/api/v2/silences", silence)
        silence_id = (answer or {}).get("silenceID") if isinstance(answer, dict) else None
        if not silence_id:
            raise Unavailable(f"Alertmanager {url} created a silence without saying its id")
        return str(silence_id)

    async def expire(self, url: str, silence_id: str) -> None:
        await self._call("DELETE", url, "/api/v2/silence/" + quote(silence_id, safe=""))
