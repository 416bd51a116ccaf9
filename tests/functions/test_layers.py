"""The package's layers import one way, and a module's own-package imports are at its top."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import media_classifier

PACKAGE = Path(media_classifier.__file__).resolve().parent
REPO = PACKAGE.parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _own_imports_below_top(tree: ast.Module) -> list[int]:
    """Lines of ``media_classifier`` imports inside functions, classes or other blocks."""
    top = {id(node) for node in tree.body}
    lines = []
    for node in ast.walk(tree):
        if id(node) in top or not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
        if getattr(node, "level", 0) or any(
            (n or "").split(".")[0] == "media_classifier" for n in names
        ):
            lines.append(node.lineno)
    return lines


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_own_package_imports_are_at_the_top_of_each_module(path: Path) -> None:
    """Hidden imports hide cycles; only heavy third-party imports may wait for first use."""
    assert _own_imports_below_top(ast.parse(path.read_text())) == []


def test_the_check_sees_an_import_inside_a_function() -> None:
    tree = ast.parse("import os\n\ndef f():\n    from media_classifier import config\n")
    assert _own_imports_below_top(tree) == [4]


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(REPO / "pyproject.toml")],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root / "functions")},
    )


def test_the_layer_contracts_are_kept() -> None:
    result = _lint(REPO)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "2 kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_the_layer_contract(tmp_path: Path) -> None:
    """The contract bites: media code that reaches up into the flows is refused."""
    copy = tmp_path / "functions" / "media_classifier"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    sniff = copy / "media" / "sniff.py"
    sniff.write_text(
        sniff.read_text() + "\n\ndef _up():\n    from media_classifier.flows import upload\n"
    )
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "media_classifier.media.sniff -> media_classifier.flows.upload" in result.stdout
