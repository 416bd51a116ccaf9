"""Fixtures for end-to-end tests through the local Firebase emulators.

Every test in tests/e2e is marked ``e2e``. The emulator stack starts once per test
session (about 20 s) and is stopped at the end; with ``MC_STACK_RUNNING=1`` the
tests use a stack that is already running (`make serve` in another terminal).
Nothing is mocked: uploads go to the Storage emulator, its finalize event runs the
real function in the Functions emulator, and results are read from the Firestore
emulator.

The emulators keep their data for the life of the stack, and a reused stack keeps
it across runs: so every object a test uploads should live under a name that is
unique to the run (``run_id`` / ``object_name``), never a fixed one.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import firebase_admin
import pytest

from media_classifier.store import clients
from tools import localstack
from tools.localstack import (
    HOST,
    PORTS,
    PROJECT_ID,
    LocalStack,
    default_bucket,
    emulator_env,
    env_flag,
    result_doc_id,
    tail,
    wait_for_existing,
)

# gRPC logs an INFO line whenever the Firestore emulator closes a connection: noise.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

RESULTS_COLLECTION = "mediaResults"
FINAL_STATUSES = frozenset({"done", "error"})
E2E_DIR = Path(__file__).resolve().parent
AUTH_URL = f"http://{HOST}:{PORTS['auth']}/identitytoolkit.googleapis.com/v1"
TEST_PASSWORD = "e2e-password-123"  # the Auth emulator's users exist only in memory


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark everything under tests/e2e as ``e2e`` (so ``-m "not e2e"`` skips the stack)."""
    for item in items:
        if E2E_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


#: Why the session's stack could not be had, once that happened (see :func:`stack`).
_STACK_FAILED: list[str] = []


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """After the stack failed for one test, the others that need it are skipped.

    pytest would re-raise a failed session fixture's error in every test that uses
    it: dozens of identical errors (and, while another stack held the lock, dozens
    of identical timeouts) hiding the one that matters.
    """
    if _STACK_FAILED and "stack" in getattr(item, "fixturenames", ()):
        pytest.skip(f"no local stack: {_STACK_FAILED[0]} (the first test that needed it failed)")


def run_command(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``python -m media_classifier ARGS`` as an operator runs it, against the stack.

    In the functions' own interpreter, from ``functions/``, with the emulator variables;
    fails the test unless it exits 0 (when ``check``).
    """
    functions = E2E_DIR.parents[1] / "functions"
    proc = subprocess.run(
        [str(functions / "venv" / "bin" / "python"), "-m", "media_classifier", *args],
        cwd=functions,
        env={**os.environ, **emulator_env(), "GRPC_VERBOSITY": "ERROR"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0 or not check, proc.stderr[-3000:]
    return proc


def _forget_admin_apps() -> None:
    """Drop an Admin SDK app made before the emulator variables were set.

    Unit tests in the same pytest run (``main.classify`` through its guard) create the
    default app as production would, with Application Default Credentials; reused here,
    its Storage client would look for credentials this machine does not have.
    """
    clients.reset_for_tests()
    with contextlib.suppress(ValueError):
        firebase_admin.delete_app(firebase_admin.get_app())


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Iterator[LocalStack | None]:
    """The running emulator stack (``None`` when reusing one via ``MC_STACK_RUNNING=1``).

    Also points this process's Google client libraries at the emulators, for the
    whole session, and restores the environment afterwards. The stack's messages
    (waiting for another stack, ready) go straight to the terminal. If it cannot be
    started, the first test says why and the rest are skipped.
    """
    saved = {k: os.environ.get(k) for k in emulator_env()}
    os.environ.update(emulator_env())
    _forget_admin_apps()
    try:
        if env_flag("MC_STACK_RUNNING"):
            if not wait_for_existing():
                _STACK_FAILED.append("MC_STACK_RUNNING=1, but no stack answers on our ports")
                pytest.fail("MC_STACK_RUNNING=1, but no emulator stack answers on our ports")
            yield None
        else:
            started = LocalStack(purpose="tests")
            capture = request.config.pluginmanager.getplugin("capturemanager")
            failure = None
            try:
                with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
                    started.start()
            except localstack.StackError as exc:
                failure = str(exc)
            if failure is not None:
                _STACK_FAILED.append(failure.splitlines()[0])
                pytest.fail(f"the local stack did not start: {failure}", pytrace=False)
            try:
                yield started
            finally:
                started.stop()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def run_id() -> str:
    """Unique per test run: put it in object names so runs never share documents."""
    return f"e2e-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def object_name(run_id: str, request: pytest.FixtureRequest) -> Callable[..., str]:
    """Builds ``uploads/<owner>/<run_id>/<test>/<file>``; owner defaults to ``run_id``."""

    def make(file: str, *, owner: str | None = None, prefix: str = "uploads/") -> str:
        test = request.node.name.replace("/", "_").replace("[", "-").rstrip("]")
        return f"{prefix}{owner or run_id}/{run_id}/{test}/{file}"

    return make


@pytest.fixture(scope="session")
def storage_bucket(stack: LocalStack | None) -> Any:
    """The default bucket ``demo-media-classifier.appspot.com`` on the Storage emulator."""
    return default_bucket()


@pytest.fixture(scope="session")
def firestore_db(stack: LocalStack | None) -> Any:
    """A Firestore client on the emulator at 127.0.0.1:8080."""
    return localstack.firestore_db()


@pytest.fixture
def upload(storage_bucket: Any) -> Callable[[str, bytes, str], int]:
    """``upload(name, data, content_type) -> generation``: one simple (non-resumable) upload.

    Simple uploads, because the Storage emulator truncated chunked resumable
    uploads of 20 MB in our trials; keep test files well under 8 MB.
    """

    def do_upload(name: str, data: bytes, content_type: str) -> int:
        blob = storage_bucket.blob(name)
        blob.upload_from_string(data, content_type=content_type)
        return int(blob.generation)

    return do_upload


@pytest.fixture
def wait_for_result(firestore_db: Any, stack: LocalStack | None) -> Callable[..., dict[str, Any]]:
    """``wait_for_result(object_name, timeout=60) -> dict`` once status is done/error.

    On timeout the test fails with the last document seen and the end of the
    emulator log, which is where a crashed function leaves its traceback.
    """

    def wait(object_name: str, timeout: float = 60.0) -> dict[str, Any]:
        ref = firestore_db.collection(RESULTS_COLLECTION).document(result_doc_id(object_name))
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            snap = ref.get()
            if snap.exists:
                last = snap.to_dict() or {}
                if last.get("status") in FINAL_STATUSES:
                    return last
            if stack is not None and stack.problem() is not None:
                stack.check()  # raises StackError with the log's tail, unless it recovered
            time.sleep(0.25)
        log = f"\n--- emulator log ---\n{tail(stack.firebase_log, 60)}" if stack else ""
        pytest.fail(
            f"no final result for {object_name!r} within {timeout:.0f} s; "
            f"last document: {json.dumps(last, default=str)}{log}"
        )

    return wait


def _auth_post(path: str, body: dict[str, Any], *, admin: bool = False) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    if admin:
        headers["Authorization"] = "Bearer owner"  # the Auth emulator's admin token
    url = f"{AUTH_URL}/{path}"
    if not admin:
        url += "?key=fake-api-key"  # the emulator accepts any API key
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        raise RuntimeError(f"Auth emulator {path}: HTTP {exc.code}: {detail}") from exc


@pytest.fixture
def id_token(stack: LocalStack | None) -> Callable[[str], str]:
    """``id_token(uid) -> str``: a Firebase ID token for that uid from the Auth emulator.

    Creates the user with exactly this uid (admin REST call), or reuses it, then
    signs in with email and password over the same REST API a client SDK uses.
    """

    def token(uid: str) -> str:
        email = f"{uid.lower()}@example.test"
        try:
            _auth_post(
                f"projects/{PROJECT_ID}/accounts",
                {"localId": uid, "email": email, "password": TEST_PASSWORD},
                admin=True,
            )
        except RuntimeError as exc:
            if "DUPLICATE" not in str(exc) and "EXISTS" not in str(exc):
                raise
        signed_in = _auth_post(
            "accounts:signInWithPassword",
            {"email": email, "password": TEST_PASSWORD, "returnSecureToken": True},
        )
        return str(signed_in["idToken"])

    return token
