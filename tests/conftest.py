"""Fixtures shared by the unit and the end-to-end tests."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tools.localstack import DEFAULT_BUCKET, PROJECT_ID

MAIN = Path(__file__).resolve().parents[1] / "functions" / "main.py"


@pytest.fixture
def main_module(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``functions/main.py`` loaded from its file, as the Functions runtime and CLI load it.

    The Storage trigger needs a bucket: the project and bucket are the local stack's, so
    a handler called through it talks to the emulators when the stack's variables are set.
    """
    config = {"projectId": PROJECT_ID, "storageBucket": DEFAULT_BUCKET}
    monkeypatch.setenv("FIREBASE_CONFIG", json.dumps(config))
    spec = importlib.util.spec_from_file_location("main", MAIN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["main"] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("main", None)
