"""A local webhook receiver for alert tests: records every POST, and can be told to answer
slowly, with an error status, or not at all (stopped)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    def __init__(self, status: int = 200, delay: float = 0.0):
        self.status = status
        self.delay = delay
        self.received: list[dict] = []   # {"headers", "body", "status"} per request, in order
        self.arrived = threading.Event()  # set as the first request comes in (before any delay)
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.arrived.set()
                if outer.delay:
                    time.sleep(outer.delay)
                status = outer.status
                with outer._lock:
                    outer.received.append({"headers": {k.lower(): v for k, v in self.headers.items()},
                                           "body": json.loads(body or b"null"), "status": status})
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Receiver":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def delivered(self) -> list[dict]:
        """Bodies of the requests answered 2xx."""
        with self._lock:
            return [r["body"] for r in self.received if 200 <= r["status"] < 300]

    def wait(self, predicate, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.delivered()):
                return True
            time.sleep(0.1)
        return predicate(self.delivered())
