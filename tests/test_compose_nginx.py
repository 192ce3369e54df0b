"""The balancer's nginx configuration: its content, and real nginx running it.

The real-nginx tests start the Debian nginx binary with the generated conf in front of two
small HTTP servers standing in for engines. Compose resolves `engine_0`, `engine_1` through
its network; here a private mount namespace (`unshare --mount`) gives nginx an /etc/hosts
that maps those names to 127.0.0.2 and 127.0.0.3, so the conf runs unchanged.
"""

from __future__ import annotations

import http.client
import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from deplodock_dagster.deploy.nginx import PROXY_TIMEOUT_S, generate_nginx_conf
from deplodock_dagster.errors import ConfigError

ENGINE_ADDRESSES = ("127.0.0.2", "127.0.0.3")
WAIT_S = 30  # cap on waits for things that happen in milliseconds when all is well


# --- content -----------------------------------------------------------------------------


def test_conf_lists_every_engine_behind_least_conn():
    conf = generate_nginx_conf(3, 8080, engine_port=8000)
    upstream = conf[conf.index("upstream engines {"):conf.index("}")]
    assert "least_conn;" in upstream
    assert [line.strip() for line in upstream.splitlines() if "server " in line] == [
        "server engine_0:8000;", "server engine_1:8000;", "server engine_2:8000;"
    ]
    assert "listen 8080;" in conf
    assert "proxy_pass http://engines;" in conf


def test_conf_streams_unbuffered_with_long_timeouts():
    conf = generate_nginx_conf(2, 8000)
    assert "proxy_buffering off;" in conf
    assert PROXY_TIMEOUT_S >= 3600
    for directive in ("proxy_read_timeout", "proxy_send_timeout", "send_timeout"):
        assert f"{directive} {PROXY_TIMEOUT_S}s;" in conf
    assert "proxy_http_version 1.1;" in conf  # keepalive to the engines


@pytest.mark.parametrize(
    ("args", "message"),
    [((0, 8000), "at least one engine"), ((2, 0), "port 0 is not a TCP port"),
     ((2, 65536), "port 65536")],
)
def test_conf_refuses_bad_arguments(args, message):
    with pytest.raises(ConfigError, match=message):
        generate_nginx_conf(*args)


# --- real nginx --------------------------------------------------------------------------


class _Engine(ThreadingHTTPServer):
    """A stand-in engine: /health, /who (its name), /hold and /stream (wait for `release`)."""

    daemon_threads = True

    def __init__(self, address: str, port: int, name: str):
        super().__init__((address, port), _EngineHandler)
        self.name = name
        self.holding = threading.Event()  # set when a /hold or /stream request is inside
        self.release = threading.Event()


class _EngineHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Engine

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 (http.server's naming)
        if self.path in ("/health", "/who"):
            self._send(self.server.name.encode())
        elif self.path == "/hold":
            self.server.holding.set()
            self.server.release.wait(WAIT_S)
            self._send(b"held")
        elif self.path == "/stream":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self._chunk(b"data: first\n\n")
            self.server.holding.set()
            self.server.release.wait(WAIT_S)
            self._chunk(b"data: last\n\n")
            self._chunk(b"")
        else:
            self.send_error(404)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


def _port_free_on_all(addresses) -> int:
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((addresses[0], 0))
            port = probe.getsockname()[1]
        try:
            for address in addresses:
                with socket.socket() as other:
                    other.bind((address, port))
            return port
        except OSError:
            continue
    raise RuntimeError("no TCP port free on all of %s" % (addresses,))


def _wait_for_port(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"nginx exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nginx did not listen on {port} within {WAIT_S} s")


@pytest.fixture(scope="module")
def balancer(tmp_path_factory):
    """Real nginx running the generated conf over two stand-in engines."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not shutil.which("unshare") or not shutil.which(nginx):
        pytest.fail("nginx and unshare are needed: run scripts/setup.sh (installs nginx)")

    tmp = tmp_path_factory.mktemp("nginx")
    engine_port = _port_free_on_all(ENGINE_ADDRESSES)
    listen_port = _port_free_on_all(("0.0.0.0",))
    engines = [_Engine(address, engine_port, f"engine_{i}")
               for i, address in enumerate(ENGINE_ADDRESSES)]
    for engine in engines:
        threading.Thread(target=engine.serve_forever, daemon=True).start()

    (tmp / "hosts").write_text(
        "127.0.0.1 localhost\n"
        + "".join(f"{a} engine_{i}\n" for i, a in enumerate(ENGINE_ADDRESSES))
    )
    (tmp / "default.conf").write_text(
        generate_nginx_conf(2, listen_port, engine_port=engine_port)
    )
    temp_paths = "\n".join(
        f"    {kind}_temp_path {tmp}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (tmp / "nginx.conf").write_text(f"""\
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
{temp_paths}
    include {tmp}/default.conf;
}}
""")

    def in_namespace(*nginx_args: str) -> list[str]:
        script = 'mount --bind "$0" /etc/hosts && exec "$@"'
        return ["unshare", "--mount", "sh", "-c", script, str(tmp / "hosts"),
                nginx, "-e", "stderr", "-p", str(tmp), "-c", str(tmp / "nginx.conf"),
                *nginx_args]

    check = subprocess.run(in_namespace("-t"), capture_output=True, text=True, timeout=WAIT_S)
    log = open(tmp / "nginx.log", "w")
    process = subprocess.Popen(in_namespace(), stdout=log, stderr=subprocess.STDOUT)
    try:
        try:
            _wait_for_port(listen_port, process)
        except AssertionError as error:
            log.flush()
            raise AssertionError(f"{error}\n{(tmp / 'nginx.log').read_text()}") from None
        yield {"check": check, "port": listen_port, "engines": engines, "log": tmp / "nginx.log"}
    finally:
        process.terminate()
        try:
            process.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        for engine in engines:
            engine.release.set()
            engine.shutdown()
            engine.server_close()


def _first_holding(engines) -> _Engine:
    """The engine that a long request reached (polled until a deadline)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        for engine in engines:
            if engine.holding.is_set():
                return engine
        time.sleep(0.01)
    raise AssertionError(f"the long request reached no engine within {WAIT_S} s")


def _get(port: int, path: str) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_S)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        assert response.status == 200, (path, response.status)
        return response.read().decode()
    finally:
        connection.close()


def test_real_nginx_accepts_the_conf(balancer):
    assert balancer["check"].returncode == 0, balancer["check"].stderr
    assert "syntax is ok" in balancer["check"].stderr


def test_real_nginx_reaches_both_engines(balancer):
    names = {_get(balancer["port"], "/who") for _ in range(6)}
    assert names == {"engine_0", "engine_1"}
    assert _get(balancer["port"], "/health") in {"engine_0", "engine_1"}


def test_real_nginx_sends_new_requests_to_the_least_busy_engine(balancer):
    port, engines = balancer["port"], balancer["engines"]
    for engine in engines:
        engine.holding.clear()
        engine.release.clear()

    held: dict = {}
    holder = threading.Thread(target=lambda: held.update(body=_get(port, "/hold")))
    holder.start()
    try:
        busy = _first_holding(engines)
        idle = next(e for e in engines if e is not busy)
        # Round robin would send every other request to the busy engine; least_conn none.
        assert [_get(port, "/who") for _ in range(5)] == [idle.name] * 5
    finally:
        for engine in engines:
            engine.release.set()
        holder.join(WAIT_S)
    assert held.get("body") == "held"


def test_real_nginx_passes_stream_events_while_the_engine_generates(balancer):
    port, engines = balancer["port"], balancer["engines"]
    for engine in engines:
        engine.holding.clear()
        engine.release.clear()

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_S)
    try:
        connection.request("GET", "/stream")
        response = connection.getresponse()
        assert response.status == 200
        # The engine sends its first event and then waits until the client has it: the
        # event must come through while the response is still open (streamed TTFT).
        # (nginx 1.22 passes this with proxy_buffering on too; the conf test pins "off",
        # which also stops nginx spooling long generations to temp files.)
        first = b""
        while len(first) < len(b"data: first\n\n"):
            piece = response.read1(64)
            assert piece, f"stream ended early after {first!r}"
            first += piece
        assert first == b"data: first\n\n"
        for engine in engines:
            engine.release.set()
        assert response.read() == b"data: last\n\n"
    finally:
        connection.close()
        for engine in engines:
            engine.release.set()
