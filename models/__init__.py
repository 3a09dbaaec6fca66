"""Getting models in: registration (schema inference, capability probes, profile,
baseline) into BentoML's model store, the adapter that calls a model, the demo models.

Public entry points live in :mod:`models.registry`; :mod:`models.demo` registers the
demo models; :mod:`models.adapters` is what serving calls a model through.
"""
