"""Vigil's BentoML layer. ``service:MonitoredModel`` is the service to serve.

The service module reads the model's schema and wires telemetry when imported, so it is
imported lazily: ``import service.cli`` stays light.
"""

__all__ = ["MonitoredModel"]


def __getattr__(name: str):
    if name == "MonitoredModel":
        from .app import MonitoredModel

        return MonitoredModel
    raise AttributeError(f"module 'service' has no attribute {name!r}")
