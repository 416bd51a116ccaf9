"""Fixtures shared by the unit and the end-to-end tests."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tools.localstack import DEFAULT_BUCKET, PROJECT_ID


@pytest.fixture
def main_module(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``functions/main.py`` as the CLI imports it (the Storage trigger needs a bucket).

    The project and bucket are the local stack's, so a handler called through it talks
    to the emulators when the stack's variables are set.
    """
    config = {"projectId": PROJECT_ID, "storageBucket": DEFAULT_BUCKET}
    monkeypatch.setenv("FIREBASE_CONFIG", json.dumps(config))
    sys.modules.pop("main", None)
    yield importlib.import_module("main")
    sys.modules.pop("main", None)
