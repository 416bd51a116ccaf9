"""Every command answers --help (cheap: the heavy modules load only for their command)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from model_build.serving import REPO_ROOT


@pytest.mark.parametrize(
    "cmd",
    [
        [],
        ["export-pretrained"],
        ["train"],
        ["export"],
        ["evaluate"],
        ["cpu-check"],
        ["card"],
        ["add-embedding"],
        ["retrieval"],
    ],
)
def test_help(cmd: list[str]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "model_build", *cmd, "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout


def test_unknown_command_fails() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "model_build", "fly"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0 and "invalid choice" in out.stderr
