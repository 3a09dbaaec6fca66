"""Shared by the CLI tests: a deterministic terminal, and a stand-in Vigil server.

The stand-in is a real HTTP server on a free 127.0.0.1 port (stdlib, one thread) that
answers canned JSON per (method, path) and records every request it got (method, path,
headers, JSON body), so commands are tested through their real HTTP client without a
BentoML server.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from typer.testing import CliRunner

from service.cli import app


@pytest.fixture(autouse=True)
def plain_terminal(monkeypatch):
    """Help and tables laid out the same everywhere: 100 columns, no colour, no token."""
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("TERM", "dumb")
    monkeypatch.delenv("VIGIL_API_TOKEN", raising=False)


def vigil(*args: str, env: dict[str, str] | None = None):
    """Run ``vigil ARGS`` in-process; stdout and stderr apart."""
    return CliRunner().invoke(app, list(args), prog_name="vigil", env=env)


class FakeServer:
    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], tuple[int, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                fake.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                      "body": json.loads(raw) if raw else None})
                status, body = fake.answers.get((self.command, self.path), (404, {"error": "not found"}))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def answer(self, method: str, path: str, body: Any, status: int = 200) -> None:
        self.answers[(method, path)] = (status, body)


@pytest.fixture
def server():
    fake = FakeServer()
    fake.thread.start()
    yield fake
    fake.httpd.shutdown()
    fake.httpd.server_close()
