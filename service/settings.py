"""The server's settings: the monitor's (:class:`monitoring.config.Settings`) plus what only
the HTTP server needs (worker count, token, body limit, dispatch budget, OTel export
knobs). Same loader, same precedence (argument > ``VIGIL_*`` > ``VIGIL_CONFIG`` file >
default), same rule that an unknown key is an error.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from monitoring.config import Settings, load_settings

log = logging.getLogger("vigil.config")

#: A token shorter than this is accepted with a warning.
SHORT_TOKEN = 16


class ServerSettings(Settings):
    """Every setting ``vigil serve`` and the BentoML service read."""


    inline_predict_ms: float = Field(2.0, ge=0, description=(
        "/predict calls expected to take less than this run on the event loop, longer ones in the "
        "worker's thread pool; 0: always the thread pool."))
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="Largest request body accepted.")
    api_token: SecretStr | None = Field(None, description="Bearer token required on /feedback and admin endpoints.")
    protect_predict: bool = Field(False, description="Require the token on /predict too.")
    protect_monitoring: bool = Field(False, description=(
        "Require the token on /monitoring/* too, and leave the reference ranges out of /docs.json."))
    header_timeout: float = Field(10.0, gt=0, le=3600, description=(
        "Seconds a connection may take to send a complete request head (also an idle kept-alive "
        "connection's next one); then it is closed."))
    workers: int = Field(1, ge=1, le=64, description="Worker processes serving requests.")
    trace_asgi_events: bool = Field(False, description="Export the ASGI per-message spans (http receive/send).")
    otel_export_timeout: float = Field(5.0, gt=0, description="Seconds an OTLP export may take before it is abandoned.")

    @field_validator("api_token", mode="before")
    @classmethod
    def _token_is_sendable(cls, v: Any) -> Any:
        """A token must survive an ``Authorization`` header: surrounding whitespace (a
        trailing newline from a secret file) is stripped with a warning; whitespace or
        control characters inside, non-ASCII, or nothing left is an error."""
        raw = v.get_secret_value() if isinstance(v, SecretStr) else v
        if not isinstance(raw, str):
            return v
        token = raw.strip()
        if token != raw:
            log.warning("VIGIL_API_TOKEN has leading or trailing whitespace (a newline from a file?): "
                        "it was stripped; clients send the token without it")
        if not token:
            raise ValueError("must not be empty or blank")
        if not (token.isascii() and token.isprintable()) or any(c.isspace() for c in token):
            raise ValueError("must be printable ASCII without spaces (it is sent in an Authorization header)")
        if len(token) < SHORT_TOKEN:
            log.warning("VIGIL_API_TOKEN is %d characters long; use at least %d random ones", len(token),
                        SHORT_TOKEN)
        return token

    @field_validator("protect_predict", "protect_monitoring")
    @classmethod
    def _protection_needs_a_token(cls, v: bool, info: ValidationInfo) -> bool:
        if v and info.data.get("api_token") is None:
            raise ValueError(f"{info.field_name} needs VIGIL_API_TOKEN: without a token nothing can be protected")
        return v


def load_server_settings(environ: Mapping[str, str] | None = None, **explicit: Any) -> ServerSettings:
    """:func:`monitoring.config.load_settings` for :class:`ServerSettings`."""
    return load_settings(environ, settings_class=ServerSettings, **explicit)  # type: ignore[return-value]
