"""Security rules tests (tests/rules, ``@firebase/rules-unit-testing``) under pytest.

Why a wrapper: ``make test`` is the one entry point, so the rules tests run with the
rest wherever they can. They need Google's real Firestore and Storage emulators,
which firebase-tools downloads as jars on first use; on a machine that reaches only
package registries they cannot start, and the local stack replaces them with
stand-ins that do not evaluate rules at all. So this test runs only with
``MC_REAL_EMULATORS=1`` (which also makes the session's stack use the real
emulators) and is otherwise skipped, with that reason shown in the summary.

By hand, from the repo root, on a machine with network access::

    (cd tests/rules && npm ci)
    tools/emulators/node_modules/.bin/firebase emulators:exec --only firestore,storage \\
        --project demo-media-classifier "npm --prefix tests/rules test"
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tools.localstack import emulator_env, env_flag

RULES_TESTS = Path(__file__).resolve().parents[1] / "rules"

pytestmark = pytest.mark.skipif(
    not env_flag("MC_REAL_EMULATORS"),
    reason=(
        "security rules need Google's real Firestore/Storage emulators (jar downloads, "
        "not possible offline; the local stand-ins do not evaluate rules): run with "
        "MC_REAL_EMULATORS=1 on a machine with network access"
    ),
)


def _npm_ci() -> None:
    """Install the rules tests' pinned packages (once; node_modules is git-ignored)."""
    if (RULES_TESTS / "node_modules" / "@firebase" / "rules-unit-testing").is_dir():
        return
    npm = shutil.which("npm")
    assert npm, "npm is needed for the rules tests"
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=RULES_TESTS,
        check=True,
        timeout=600,
    )


@pytest.mark.slow
def test_security_rules(stack: Any) -> None:
    """Runs every ``tests/rules/*.test.js`` against the session's (real) emulators."""
    _npm_ci()
    node = shutil.which("node")
    assert node, "node is needed for the rules tests"
    env = {**os.environ, **emulator_env()}
    proc = subprocess.run(
        [node, "--test", "--test-concurrency=1", "."],
        cwd=RULES_TESTS,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = f"{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"
    assert proc.returncode == 0, f"rules tests failed:\n{output}"
