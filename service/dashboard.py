"""The dashboard: one page served by the service itself at ``/dashboard/``, and what it needs.

- :func:`dashboard_app`: the page and its assets, every one from the installed package
  (``service/static/``: the charts are drawn by its own ``plot.js``, about 20 KB, not a
  charting bundle), so it works offline and behind a firewall. The page reads the JSON views under ``/monitoring`` and, once an
  operator enters the token, calls ``/admin`` (the middleware checks the token there, as
  for the CLI). A strict Content-Security-Policy keeps it to its own origin.
- :class:`DocsLink`: BentoML's index page (``/``, Swagger UI) shows the OpenAPI
  description; this middleware adds a link to the dashboard at its top.
- :class:`SampleRows`: labelled rows from the model's stored validation data, for
  ``GET /monitoring/sample`` (what ``vigil simulate`` replays), JSON-ready and bounded.

Nothing here touches the monitor's state; failures of the sample view are the caller's
(a missing file is a 404 there).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from models.frames import plain
from monitoring.values import finite_or_none

STATIC = Path(__file__).resolve().with_name("static")
#: What the page may load and call: its own origin only (the charts position their hover
#: boxes with inline styles).
CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
       "font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_PAGE_HEADERS = {"content-security-policy": CSP, "x-content-type-options": "nosniff",
                 "referrer-policy": "no-referrer", "cache-control": "no-cache"}
#: Rows ``/monitoring/sample`` returns at most per call.
MAX_SAMPLE_ROWS = 1000


def dashboard_app() -> Starlette:
    """``/`` (the page) and ``/static/*`` (its script, charts and styles)."""
    page = (STATIC / "dashboard.html").read_text(encoding="utf-8")

    async def index(request: Request) -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)

    return Starlette(routes=[Route("/", index, methods=["GET", "HEAD"]),
                             Mount("/static", StaticFiles(directory=STATIC), name="static")])


class DocsLink:
    """ASGI middleware: put a link to the dashboard at the top of the OpenAPI description
    that BentoML's index page (Swagger UI at ``/``) renders, and pass the spec through
    ``extend`` (the service adds its mounted apps' paths: :func:`service.openapi.merge`).
    Only ``GET /docs.json`` is touched; a body that is not the JSON expected passes unchanged."""

    NOTE = ("**[Open the Vigil dashboard](./dashboard/)**: serving, drift, predictions, performance "
            "and alerts of this model, live.\n\n")

    def __init__(self, app, extend: Callable[[dict], dict] | None = None):
        self.app = app
        self.extend = extend

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") != "/docs.json" or scope.get("method") != "GET":
            return await self.app(scope, receive, send)
        held: dict[str, Any] = {"body": []}

        async def capture(message):
            if message["type"] == "http.response.start":
                held["start"] = message
                return
            if message["type"] == "http.response.body":
                held["body"].append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                await _flush(send, held["start"], self._linked(b"".join(held["body"]), held["start"]["status"]))
                return
            await send(message)

        await self.app(scope, receive, capture)

    def _linked(self, body: bytes, status: int) -> bytes:
        if status != 200:
            return body
        try:
            spec = json.loads(body)
            info = spec["info"]
            info["description"] = self.NOTE + str(info.get("description") or "")
            if self.extend is not None:
                spec = self.extend(spec)
        except (ValueError, KeyError, TypeError, AttributeError):
            return body
        return json.dumps(spec).encode()


async def _flush(send: Callable, start: dict, body: bytes) -> None:
    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
    await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class SampleRows:
    """Labelled rows from a registered model's validation data, JSON-ready: features as
    ``/predict`` takes them (missing values as null) and the true outcome beside each.

    ``load`` returns the validation frame (features and target); it is called once, on the
    first request. ``privacy`` is the server's per-feature privacy rules: a model with any
    feature hashed or dropped is never sampled (:meth:`refusal` says why)."""

    def __init__(self, load: Callable[[], Any], schema, privacy: dict[str, str]):
        self._load = load
        self.schema = schema
        self.private = sorted(k for k, v in privacy.items() if v != "keep")
        self._rows: list[dict[str, Any]] | None = None
        self._outcomes: list[Any] | None = None

    def refusal(self) -> str | None:
        if self.private:
            return (f"privacy rules cover {', '.join(self.private)}: the stored rows are not served; "
                    "give `vigil simulate` your own data with --data")
        return None

    def _prepare(self) -> None:
        frame = self._load()
        names, target = list(self.schema.names), self.schema.target
        self._rows = [{n: _json_value(row[i]) for i, n in enumerate(names)}
                      for row in frame[names].itertuples(index=False, name=None)]
        self._outcomes = [_json_value(v) for v in frame[target].tolist()]

    def sample(self, limit: int, seed: int = 0) -> dict[str, Any]:
        """Up to ``limit`` rows (at most :data:`MAX_SAMPLE_ROWS`) drawn without replacement."""
        if self._rows is None:
            self._prepare()
        n = len(self._rows)
        take = np.random.default_rng(seed).permutation(n)[:max(0, min(limit, MAX_SAMPLE_ROWS))]
        s = self.schema
        return {"task": s.task, "target": s.target, "features": list(s.names),
                "kinds": [f.kind for f in s.features], "classes": [plain(c) for c in s.classes],
                "available": n, "source": "validation",
                "rows": [self._rows[i] for i in take], "outcomes": [self._outcomes[i] for i in take]}


def _json_value(v: Any) -> Any:
    v = plain(v)
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return finite_or_none(v)
    try:
        if pd.isna(v):  # pandas' NA and NaT
            return None
    except (TypeError, ValueError):
        pass
    return str(v)
