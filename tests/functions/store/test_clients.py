"""Tests of functions/media_classifier/store/clients.py (the functions' Admin SDK clients).

No emulator is needed: building the clients must not touch the network, and under
the emulator they must carry anonymous credentials (the default ones would make
the Storage client hang fetching a token on an offline machine). That the clients
really read Storage and write Firestore from inside the Functions emulator is
shown end to end in tests/e2e.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from media_classifier.store import clients


@pytest.fixture
def fresh_clients() -> Iterator[None]:
    clients.reset_for_tests()
    yield
    clients.reset_for_tests()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"FUNCTIONS_EMULATOR": "true"}, True),
        ({"FUNCTIONS_EMULATOR": "false"}, False),
        ({"FIRESTORE_EMULATOR_HOST": "127.0.0.1:8080"}, True),
        ({"STORAGE_EMULATOR_HOST": "http://127.0.0.1:9199"}, True),
        ({"FIREBASE_STORAGE_EMULATOR_HOST": "127.0.0.1:9199"}, True),
        ({"FIRESTORE_EMULATOR_HOST": ""}, False),
        ({}, False),
    ],
)
def test_running_in_emulator(env: dict[str, str], expected: bool) -> None:
    assert clients.running_in_emulator(env) is expected


def test_under_the_emulator_clients_are_anonymous_and_use_the_configured_project(
    monkeypatch: pytest.MonkeyPatch, fresh_clients: None
) -> None:
    from google.auth.credentials import AnonymousCredentials

    for var in ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(var, raising=False)
    # What the Functions emulator gives a worker (FIREBASE_CONFIG from firebase-tools).
    monkeypatch.setenv("FUNCTIONS_EMULATOR", "true")
    monkeypatch.setenv("FIREBASE_STORAGE_EMULATOR_HOST", "127.0.0.1:1")
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:1")
    monkeypatch.setenv(
        "FIREBASE_CONFIG",
        json.dumps({"projectId": "demo-x", "storageBucket": "demo-x.appspot.com"}),
    )
    app = clients.get_app()
    assert app.project_id == "demo-x"
    assert isinstance(app.credential.get_credential(), AnonymousCredentials)

    default = clients.bucket()
    assert default.name == "demo-x.appspot.com"
    assert isinstance(default.client._credentials, AnonymousCredentials)
    # Firebase's host:port variable was turned into the URL google-cloud-storage reads.
    assert default.client.api_endpoint == "http://127.0.0.1:1"
    assert clients.bucket("other") is clients.bucket("other")

    db = clients.firestore_client()
    assert db.project == "demo-x"
    assert clients.firestore_client() is db
    assert clients.get_app() is app
