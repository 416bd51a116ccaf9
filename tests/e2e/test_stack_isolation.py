"""The local stack keeps its files to itself: another emulator on the machine cannot hurt it.

firebase-tools' Storage emulator keeps blobs in ``$TMPDIR/firebase/storage/blobs`` and
deletes that whole folder when it stops. Two emulators sharing a ``TMPDIR`` therefore
delete each other's uploads: a second emulator started and stopped while `make serve`
ran took the stack down, twice. The stack gives its children a ``TMPDIR`` of its own.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from tools.localstack import (
    FIREBASE_BIN,
    STORAGE_RULES_STANDIN,
    LocalStack,
    find_java,
    port_open,
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _another_storage_emulator(project: Path) -> subprocess.Popen[bytes]:
    """firebase-tools' Storage emulator for another project, on other ports, with the
    machine's shared TMPDIR (as someone else's `firebase emulators:start` has)."""
    storage, hub = _free_port(), _free_port()
    (project / "storage.rules").write_text(
        "rules_version = '2';\nservice firebase.storage { match /b/{b}/o { match /{a=**} {"
        " allow read, write: if false; } } }\n"
    )
    emulators = {
        "storage": {"host": "127.0.0.1", "port": storage},
        "hub": {"host": "127.0.0.1", "port": hub},
        "ui": {"enabled": False},
        "logging": {"port": _free_port()},
    }
    config = {"storage": {"rules": "storage.rules"}, "emulators": emulators}
    (project / "firebase.json").write_text(json.dumps(config))
    java = find_java()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.endswith("_EMULATOR_HOST") and key != "TMPDIR"
    }
    env.update(
        PATH=f"{java.parent}{os.pathsep}{env.get('PATH', '')}",
        STORAGE_EMULATOR_BINARY_PATH=str(STORAGE_RULES_STANDIN),
        FIREBASE_CLI_DISABLE_UPDATE_CHECK="true",
        CI="true",
    )
    with open(project / "firebase.log", "wb") as log:
        proc = subprocess.Popen(
            [str(FIREBASE_BIN), "emulators:start", "--only", "storage", "--project", "demo-other"],
            cwd=project,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 90
    while not port_open(storage):
        log_text = (project / "firebase.log").read_text(errors="replace")
        assert proc.poll() is None, f"the other emulator exited:\n{log_text[-3000:]}"
        assert time.monotonic() < deadline, f"the other emulator did not start:\n{log_text[-3000:]}"
        time.sleep(0.25)
    return proc


def test_the_stack_keeps_its_storage_blobs_in_a_folder_of_its_own(
    stack: LocalStack | None, storage_bucket: Any, object_name: Any
) -> None:
    blob = storage_bucket.blob(object_name("own-folder.bin", prefix="isolation/"))
    blob.upload_from_string(b"ours", content_type="application/octet-stream")
    if stack is not None:
        blobs = stack.tmp_dir / "firebase" / "storage" / "blobs"
        assert any(blobs.iterdir()), f"no blob under {blobs}"


def test_another_storage_emulator_started_and_stopped_leaves_the_stacks_uploads_alone(
    stack: LocalStack | None, storage_bucket: Any, object_name: Any, tmp_path: Path
) -> None:
    blob = storage_bucket.blob(object_name("survivor.bin", prefix="isolation/"))
    blob.upload_from_string(b"still here", content_type="application/octet-stream")

    other = _another_storage_emulator(tmp_path)
    os.killpg(other.pid, signal.SIGINT)  # a clean stop deletes its TMPDIR's blobs folder
    assert other.wait(timeout=60) == 0

    assert storage_bucket.blob(blob.name).download_as_bytes() == b"still here"
    if stack is not None:
        assert stack.problem() is None
