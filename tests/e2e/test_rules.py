"""Security rules tests (tests/rules, ``@firebase/rules-unit-testing``), one pytest item each.

Why a wrapper: ``make test`` is the one entry point, and the rules must be tested in
every run. The JS suites are listed at collection time (``node --test`` with a name
pattern that matches nothing: each test is reported, none runs, nothing connects) and
run once per session against the session's stack (Google's Firestore emulator, with
``firestore.rules``); each JS test is then its own pytest item, passed or failed by
its own result, so the summary counts them and a failure names the rule.

``storage.rules`` tests need Google's Storage rules runtime, which firebase-tools
downloads and no package registry ships: the local stack runs a stand-in that allows
everything, so they are skipped, with that reason, unless ``MC_REAL_EMULATORS=1``
(a machine with network access) gives the stack the real runtime.

By hand, from the repo root, with a stack running (`make serve`)::

    (cd tests/rules && npm ci && FIRESTORE_EMULATOR_HOST=127.0.0.1:8080 \\
        node --test firestore.rules.test.js)
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tools.localstack import emulator_env, env_flag

RULES_TESTS = Path(__file__).resolve().parents[1] / "rules"
REPORTER = "./reporter.mjs"
FIRESTORE_SUITE = "firestore.rules.test.js"
STORAGE_SUITE = "storage.rules.test.js"
REAL_STORAGE_RULES = env_flag("MC_REAL_EMULATORS")
NO_STORAGE_RULES = (
    "storage.rules need Google's Storage rules runtime, which firebase-tools downloads "
    "and no package registry ships; the offline stack's stand-in allows everything. "
    "Run with MC_REAL_EMULATORS=1 on a machine with network access"
)


def _npm_ci() -> None:
    """Install the rules tests' pinned packages when missing (`make setup` does it too)."""
    if (RULES_TESTS / "node_modules" / ".package-lock.json").is_file():
        return
    npm = shutil.which("npm")
    assert npm, "npm is needed for the rules tests"
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=RULES_TESTS,
        check=True,
        timeout=600,
    )


def _node_test(files: list[str], *extra: str, env: dict[str, str] | None = None) -> Any:
    """``node --test`` over ``files`` with the JSON-lines reporter; the finished process."""
    node = shutil.which("node")
    assert node, "node (>= 20) is needed for the rules tests"
    return subprocess.run(
        [node, "--test", "--test-concurrency=1", f"--test-reporter={REPORTER}", *extra, *files],
        cwd=RULES_TESTS,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _records(stdout: str) -> list[dict[str, str]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


@functools.cache
def list_tests(suite: str) -> list[str]:
    """The full names of a suite's tests, without running them (nothing is contacted)."""
    _npm_ci()
    proc = _node_test([suite], "--test-name-pattern=(?!)")
    names = [r["name"] for r in _records(proc.stdout) if r["file"] == suite]
    if proc.returncode != 0 or not names:
        raise RuntimeError(f"cannot list the tests of {suite}:\n{proc.stdout}\n{proc.stderr}")
    return names


@pytest.fixture(scope="session")
def rules_run(stack: Any) -> dict[str, Any]:
    """Every suite the stack can serve, run once: ``{"results": {(file, name): record}, ...}``."""
    suites = [FIRESTORE_SUITE] + ([STORAGE_SUITE] if REAL_STORAGE_RULES else [])
    proc = _node_test(suites, env={**os.environ, **emulator_env()})
    records = _records(proc.stdout)
    return {
        "suites": suites,
        "results": {(r["file"], r["name"]): r for r in records},
        "returncode": proc.returncode,
        "output": f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}",
    }


def _verdict(rules_run: dict[str, Any], suite: str, name: str) -> None:
    record = rules_run["results"].get((suite, name))
    if record is None:
        pytest.fail(f"{suite}: {name!r} did not run\n{rules_run['output']}")
    if record["status"] == "skipped":
        pytest.skip(record["message"] or "skipped in the JS suite")
    if record["status"] != "passed":
        pytest.fail(f"{suite}: {name}\n{record['message']}", pytrace=False)


@pytest.mark.parametrize("name", list_tests(FIRESTORE_SUITE))
def test_firestore_rules(rules_run: dict[str, Any], name: str) -> None:
    _verdict(rules_run, FIRESTORE_SUITE, name)


@pytest.mark.skipif(not REAL_STORAGE_RULES, reason=NO_STORAGE_RULES)
@pytest.mark.parametrize("name", list_tests(STORAGE_SUITE))
def test_storage_rules(rules_run: dict[str, Any], name: str) -> None:
    _verdict(rules_run, STORAGE_SUITE, name)


def test_the_rules_suites_ran_whole(rules_run: dict[str, Any]) -> None:
    """No failure outside a test (a hook, a file that does not load), no unlisted test."""
    listed = {(suite, name) for suite in rules_run["suites"] for name in list_tests(suite)}
    assert set(rules_run["results"]) == listed, rules_run["output"]
    assert rules_run["returncode"] == 0, rules_run["output"]
