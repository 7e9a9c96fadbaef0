"""Who may use the console, and what every answer carries so that a browser keeps alert data inert.

Authentication (OPENFERO_CONSOLE_AUTH):
- ``basic`` and ``bearer``: ingest's own check (ingest.auth.Authenticator),
  secrets from files or the environment, compared in constant time;
- ``proxy``: the user named in one header of an authenticating proxy
  (oauth2-proxy, an ingress with auth), believed only from the proxy's own
  addresses (the TCP peer, never a forwarded-for header);
- ``none``: only when the console listens on a loopback address.

Every request but the probes and the static files is authenticated. Every
request that changes something (any method but GET and HEAD) also needs a
CSRF token signed for its user (console.csrf) and, when the browser says
where it comes from (Origin, Sec-Fetch-Site), this same site. Every answer
carries a strict Content-Security-Policy: scripts and styles only from the
console's own files, nothing inline, no frames, forms only to itself.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from console import csrf
from ingest.auth import Authenticator
from shared.settings import ConsoleSettings, SettingsError

log = logging.getLogger("openfero.console")

USER = web.RequestKey("user", str)
OPEN_PATHS = ("/healthz", "/readiness")
SAFE_METHODS = ("GET", "HEAD")
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
_LOOPBACK = ("localhost", "127.0.0.1", "::1", "[::1]")


def _secret(file: str, value: str, what: str) -> bytes:
    if file:
        try:
            return Path(file).read_text().strip().encode()
        except OSError as exc:
            raise SettingsError(f"{what} file {file!r}: {exc.strerror}") from None
    return value.encode()


@dataclass(frozen=True)
class Gate:
    mode: str
    credentials: Authenticator = field(default_factory=Authenticator)
    proxy_header: str = ""
    proxy_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def from_settings(cls, s: ConsoleSettings) -> Gate:
        mode = s.auth_mode
        if mode == "none":
            if s.addr.host not in _LOOPBACK:
                raise SettingsError(
                    f"OPENFERO_CONSOLE_AUTH=none on {s.addr}: the console can replay and purge, so it needs authentication "
                    "anywhere but on a loopback address (basic, bearer or proxy)"
                )
            return cls("none")
        if mode == "basic":
            password = _secret(s.auth_password_file, s.auth_password, "OPENFERO_CONSOLE_AUTH_PASSWORD")
            if not s.auth_username or not password:
                raise SettingsError("OPENFERO_CONSOLE_AUTH=basic needs OPENFERO_CONSOLE_AUTH_USERNAME and a password")
            return cls(mode, Authenticator("basic", s.auth_username.encode(), password))
        if mode == "bearer":
            token = _secret(s.auth_token_file, s.auth_token, "OPENFERO_CONSOLE_AUTH_TOKEN")
            if not token:
                raise SettingsError("OPENFERO_CONSOLE_AUTH=bearer needs OPENFERO_CONSOLE_AUTH_TOKEN_FILE or OPENFERO_CONSOLE_AUTH_TOKEN")
            return cls(mode, Authenticator("bearer", token=token))
        if mode == "proxy":
            networks = s.proxy_addresses
            if not networks or not s.proxy_user_header.strip():
                raise SettingsError(
                    "OPENFERO_CONSOLE_AUTH=proxy needs OPENFERO_CONSOLE_PROXY_ADDRESSES (the proxy's addresses) "
                    "and OPENFERO_CONSOLE_PROXY_USER_HEADER"
                )
            return cls(mode, proxy_header=s.proxy_user_header.strip(), proxy_networks=networks)
        raise SettingsError(f"OPENFERO_CONSOLE_AUTH={s.auth_mode!r}: expected basic, bearer, proxy or none")

    def identify(self, request: web.Request) -> str | web.Response:
        """The user's name, or the answer that refuses the request."""
        if self.mode == "none":
            return "anonymous"
        if self.mode == "proxy":
            if not self._from_proxy(request.remote):
                return _refuse(403, "requests must come through the authenticating proxy")
            user = request.headers.get(self.proxy_header, "").strip()
            return user if user else _refuse(401, f"the proxy named no user ({self.proxy_header})")
        challenge = self.credentials.check(request.headers.get("Authorization"))
        if challenge is not None:
            return _refuse(401, "missing or wrong credentials", {"WWW-Authenticate": challenge})
        if self.mode == "basic":
            return self.credentials.username.decode(errors="replace")
        return "bearer"

    def _from_proxy(self, remote: str | None) -> bool:
        try:
            peer = ipaddress.ip_address((remote or "").split("%")[0])
        except ValueError:
            return False
        return any(peer in network for network in self.proxy_networks)


def _refuse(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=f"{status}: {text}\n", headers={**HEADERS, **(headers or {})}, content_type="text/plain")


def same_site(request: web.Request) -> bool:
    """False when the browser says the request comes from another site (Sec-Fetch-Site, else Origin)."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser's cross-site request; the token decides
    if origin == "null":  # an opaque origin: only the browser's own word can vouch for it
        return site == "same-origin"
    return urlsplit(origin).netloc == request.host


def middleware(gate: Gate, key: bytes) -> web.middleware:  # type: ignore[valid-type]
    @web.middleware
    async def guard(request: web.Request, handler):  # type: ignore[no-untyped-def]
        if request.path in OPEN_PATHS or request.path.startswith("/static/"):
            response = await handler(request)
        else:
            user = gate.identify(request)
            if isinstance(user, web.Response):
                return user
            request[USER] = user
            if request.method not in SAFE_METHODS:
                refused = await _check_csrf(request, key, user)
                if refused is not None:
                    return refused
            response = await handler(request)
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        if not request.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    return guard


async def _check_csrf(request: web.Request, key: bytes, user: str) -> web.Response | None:
    if not same_site(request):
        log.warning("cross-site request refused", extra={"event": "console.csrf_refused", "user": user, "path": request.path})
        return _refuse(403, "cross-site request refused")
    token = request.headers.get("X-CSRF-Token", "")
    if not token and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        token = str(form.get("csrf", ""))
    if not csrf.valid(key, user, token):
        log.warning("request without a valid CSRF token refused", extra={"event": "console.csrf_refused", "user": user, "path": request.path})
        return _refuse(403, "missing or expired CSRF token: reload the page and try again")
    return None
