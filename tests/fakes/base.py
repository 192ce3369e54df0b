"""A threaded HTTP server on loopback with a call log and fault injection, for fake APIs.

Subclasses implement `handle(method, path, query, body, headers)` and return
`(status, content_type, body_bytes)`. Faults are checked before the handler runs:
`fail_next(n, ...)` fails the next n matching calls, `fail_fraction(p, seed, ...)` a seeded
random share of them.
"""

from __future__ import annotations

import json
import random
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Call:
    """One request the fake received, and what it answered."""

    method: str
    path: str
    query: dict
    body: object
    status: int = 0


@dataclass
class Fault:
    """An injected failure: an HTTP status and body, for calls whose path matches."""

    status: int
    body: bytes
    content_type: str
    remaining: int | None = None  # None: unlimited (with `fraction`)
    fraction: float = 1.0
    rng: random.Random | None = None
    path_contains: str | None = None
    after_handling: bool = False  # do the work, then answer with the failure

    def matches(self, path: str) -> bool:
        if self.path_contains and self.path_contains not in path:
            return False
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.rng is not None and self.rng.random() >= self.fraction:
            return False
        return True


class FakeServer:
    """Owns the HTTP server thread, the call log and the fault list."""

    def __init__(self, host: str = "127.0.0.1"):
        self.host = host
        self.calls: list[Call] = []
        self.faults: list[Fault] = []
        self.lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle.

    def start(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self):
                fake._dispatch(self)

            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _serve

            def log_message(self, *args):  # keep test output quiet
                pass

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # Faults.

    def fail_next(self, n: int, status: int = 503, body: str | bytes | dict = "",
                  path_contains: str | None = None, after_handling: bool = False) -> None:
        """Fail the next `n` calls (whose path contains `path_contains`) with `status`."""
        self._add_fault(Fault(status, *self._encode(status, body), remaining=n,
                              path_contains=path_contains, after_handling=after_handling))

    def fail_fraction(self, fraction: float, seed: int = 0, status: int = 503,
                      body: str | bytes | dict = "", path_contains: str | None = None) -> None:
        """Fail a seeded random `fraction` of calls from now on."""
        self._add_fault(Fault(status, *self._encode(status, body), fraction=fraction,
                              rng=random.Random(seed), path_contains=path_contains))

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def _add_fault(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def _encode(self, status: int, body) -> tuple[bytes, str]:
        """Default failure body for this API (subclasses shape it)."""
        if isinstance(body, dict):
            return json.dumps(body).encode(), "application/json"
        if isinstance(body, str):
            body = body.encode()
        return body or b"Service Unavailable", "text/plain"

    def _take_fault(self, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(path):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                    return fault
        return None

    # Calls.

    def calls_to(self, path_contains: str) -> list[Call]:
        with self.lock:
            return [call for call in self.calls if path_contains in call.path]

    def handle(self, method: str, path: str, query: dict, body, headers) -> tuple:
        raise NotImplementedError

    def _dispatch(self, request: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(request.path)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        call = Call(request.command, parts.path, query, body)
        with self.lock:
            self.calls.append(call)
        fault = self._take_fault(parts.path)
        if fault is not None and not fault.after_handling:
            status, content_type, payload = fault.status, fault.content_type, fault.body
        else:
            try:
                status, content_type, payload = self.handle(
                    request.command, parts.path, query, body, request.headers
                )
            except Exception as error:  # a bug in the fake: answer 500 and say so
                status, content_type = 500, "text/plain"
                payload = f"fake server error: {error!r}".encode()
            if fault is not None:
                status, content_type, payload = fault.status, fault.content_type, fault.body
        call.status = status
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        request.wfile.write(payload)


def json_answer(status: int, obj) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(obj).encode()


def text_answer(status: int, text: str) -> tuple[int, str, bytes]:
    return status, "text/plain; charset=utf-8", text.encode()
