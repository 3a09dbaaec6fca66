"""The server's settings: the monitor's (:class:`monitoring.config.Settings`) plus what only
the HTTP server needs (worker count, token, body limit, dispatch budget, OTel export
knobs). Same loader, same precedence (argument > ``VIGIL_*`` > ``VIGIL_CONFIG`` file >
default), same rule that an unknown key is an error.
"""

from __future__ import annotations

from typing import Any, Mapping

from pydantic import Field, SecretStr

from monitoring.config import Settings, load_settings


class ServerSettings(Settings):
    """Every setting ``vigil serve`` and the BentoML service read."""


    inline_predict_ms: float = Field(2.0, ge=0, description=(
        "/predict calls expected to take less than this run on the event loop, longer ones in the "
        "worker's thread pool; 0: always the thread pool."))
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="Largest request body accepted.")
    api_token: SecretStr | None = Field(None, description="Bearer token required on /feedback and admin endpoints.")
    protect_predict: bool = Field(False, description="Require the token on /predict too.")
    workers: int = Field(1, ge=1, le=64, description="Worker processes serving requests.")
    trace_asgi_events: bool = Field(False, description="Export the ASGI per-message spans (http receive/send).")
    otel_export_timeout: float = Field(5.0, gt=0, description="Seconds an OTLP export may take before it is abandoned.")

def load_server_settings(environ: Mapping[str, str] | None = None, **explicit: Any) -> ServerSettings:
    """:func:`monitoring.config.load_settings` for :class:`ServerSettings`."""
    return load_settings(environ, settings_class=ServerSettings, **explicit)  # type: ignore[return-value]
