"""The TLS a listener of openfero serves: ingest's webhook port and the console's pages."""

from __future__ import annotations

import ssl

from shared.settings import SettingsError


def server_context(cert_file: str, key_file: str, cert_env: str, key_env: str) -> ssl.SSLContext | None:
    """TLS 1.2 at least, the certificate and key from files; None when neither file is set.

    ``cert_env`` and ``key_env`` name the settings in the error a half-made configuration gets.
    """
    if not cert_file and not key_file:
        return None
    if not (cert_file and key_file):
        raise SettingsError(f"TLS needs both {cert_env} and {key_env}")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(f"TLS certificate or key: {exc}") from None
    return context
