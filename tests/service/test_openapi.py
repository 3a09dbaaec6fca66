"""The OpenAPI spec at /docs.json describes the mounted /monitoring and /admin apps too:
every route they serve, with the bounds their handlers enforce, merged into BentoML's spec
without touching what BentoML describes."""

from __future__ import annotations

import asyncio
import json

from starlette.routing import Route

from service.dashboard import DocsLink
from service.mounts import DEFAULT_LIMIT, MAX_LIMIT, admin_app, monitoring_app
from service.openapi import merge, mounted_paths


def _routes(app, prefix: str) -> set[tuple[str, str]]:
    out = set()
    for r in app.routes:
        if isinstance(r, Route):
            path = prefix + r.path.replace("{name:path}", "{name}")
            out |= {(m.lower(), path) for m in r.methods if m != "HEAD"}
    return out


def test_every_mounted_route_is_described():
    served = _routes(monitoring_app(lambda: None), "/monitoring") | _routes(admin_app(lambda: None), "/admin")
    described = {(method, path) for path, item in mounted_paths().items() for method in item}
    assert served <= described, served - described


def test_listing_parameters_carry_the_handlers_bounds():
    drift = mounted_paths()["/monitoring/drift"]["get"]
    limit = next(p for p in drift["parameters"] if p["name"] == "limit")["schema"]
    assert (limit["minimum"], limit["maximum"], limit["default"]) == (1, MAX_LIMIT, DEFAULT_LIMIT)
    assert {"limit", "since"} == {p["name"] for p in drift["parameters"]}
    assert set(drift["responses"]) == {"200", "422", "503"}


def test_merge_adds_paths_bodies_and_the_bearer_scheme_and_keeps_bentomls_own():
    bento = {"openapi": "3.0.2", "info": {"title": "x"}, "paths": {"/predict": {"post": {"summary": "mine"}}},
             "tags": [{"name": "Service APIs"}], "components": {"schemas": {"predict__Input": {}}}}
    spec = merge(json.loads(json.dumps(bento)))
    assert spec["paths"]["/predict"] == {"post": {"summary": "mine"}}
    assert {"/monitoring/status", "/monitoring/drift", "/admin/silences", "/admin/rebaseline"} <= set(spec["paths"])
    ref = spec["paths"]["/admin/silences"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/SilenceBody" and "rule" in spec["components"]["schemas"]["SilenceBody"]["properties"]
    assert spec["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    assert [t["name"] for t in spec["tags"]] == ["Service APIs", "Monitoring", "Admin"]
    json.dumps(spec, allow_nan=False)
    # OpenAPI 3.0's dialect (draft 4): boolean exclusive bounds, nullable instead of anyOf null
    seconds = spec["components"]["schemas"]["SilenceBody"]["properties"]["seconds"]
    assert (seconds["minimum"], seconds["exclusiveMinimum"]) == (0, True)
    instance = spec["components"]["schemas"]["SilenceBody"]["properties"]["instance"]
    assert instance["type"] == "string" and instance["nullable"] is True and "anyOf" not in instance


def test_the_docs_middleware_serves_the_merged_spec():
    body = json.dumps({"info": {"description": "BentoML"}, "paths": {}}).encode()

    async def bento(scope, receive, send):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "path": "/docs.json", "method": "GET"}
    asyncio.run(DocsLink(bento, extend=merge)(scope, None, send))
    spec = json.loads(b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))
    assert "/monitoring/windows" in spec["paths"] and "./dashboard/" in spec["info"]["description"]
    length = dict(sent[0]["headers"])[b"content-length"]
    assert int(length) == len(json.dumps(spec).encode())
