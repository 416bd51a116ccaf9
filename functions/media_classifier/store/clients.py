"""Lazily created Firebase Admin SDK clients for the functions.

Why lazily: the Firebase CLI discovers the functions by importing ``main.py``
with a 10 s limit, and a cold start should not pay for clients a request never
uses. So nothing here is imported or created at module import time; the first
call builds the app and each client once per instance and caches it.

Why the credential switch: firebase-admin asks for Application Default
Credentials even when the ``*_EMULATOR_HOST`` variables point at local
emulators. Firestore tolerates a dummy credential, but the Storage client then
tries to fetch an OAuth token from Google and hangs until it times out on a
machine without network. Under the emulators we therefore hand the SDK
anonymous credentials (the emulators do not check tokens); in production the
default credentials of the function's service account are used.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    import firebase_admin
    from google.cloud.firestore import Client as FirestoreClient
    from google.cloud.storage import Bucket

_EMULATOR_HOST_VARS = (
    "FIRESTORE_EMULATOR_HOST",
    "FIREBASE_STORAGE_EMULATOR_HOST",
    "STORAGE_EMULATOR_HOST",
    "FIREBASE_AUTH_EMULATOR_HOST",
)

_lock = threading.Lock()
_app: firebase_admin.App | None = None
_firestore: FirestoreClient | None = None
_buckets: dict[str | None, Bucket] = {}


def running_in_emulator(environ: dict[str, str] | None = None) -> bool:
    """True when the code runs against local emulators rather than Google's services.

    The Functions emulator sets ``FUNCTIONS_EMULATOR=true``; tests and tools that
    use the Admin SDK directly only set the ``*_EMULATOR_HOST`` variables.
    """
    env = os.environ if environ is None else environ
    if env.get("FUNCTIONS_EMULATOR", "").lower() == "true":
        return True
    return any(env.get(name) for name in _EMULATOR_HOST_VARS)


def _ensure_storage_emulator_env() -> None:
    """Point google-cloud-storage at the Storage emulator when only Firebase's variable is set.

    The Functions emulator exports ``FIREBASE_STORAGE_EMULATOR_HOST`` (``host:port``),
    while google-cloud-storage reads ``STORAGE_EMULATOR_HOST`` (a URL). Without the
    latter the client would talk to the real Cloud Storage.
    """
    firebase_host = os.environ.get("FIREBASE_STORAGE_EMULATOR_HOST")
    if firebase_host and not os.environ.get("STORAGE_EMULATOR_HOST"):
        url = firebase_host if "://" in firebase_host else f"http://{firebase_host}"
        os.environ["STORAGE_EMULATOR_HOST"] = url


def _anonymous_credential() -> Any:
    """A firebase-admin credential wrapping google-auth's AnonymousCredentials."""
    from firebase_admin import credentials
    from google.auth.credentials import AnonymousCredentials

    class _Anonymous(credentials.Base):
        """Sends no token: the emulators accept unauthenticated admin traffic."""

        def get_credential(self) -> AnonymousCredentials:
            return AnonymousCredentials()

    return _Anonymous()


def get_app() -> firebase_admin.App:
    """The default firebase-admin app, initialised once.

    Project ID and default bucket come from ``FIREBASE_CONFIG`` / ``GCLOUD_PROJECT``,
    which both the Functions emulator and Cloud Functions set.
    """
    global _app
    if _app is not None:
        return _app
    with _lock:
        if _app is None:
            import firebase_admin

            try:
                _app = firebase_admin.get_app()
            except ValueError:  # no default app yet
                if running_in_emulator():
                    _ensure_storage_emulator_env()
                    _app = firebase_admin.initialize_app(credential=_anonymous_credential())
                else:
                    _app = firebase_admin.initialize_app()
    return _app


def firestore_client() -> FirestoreClient:
    """The Firestore client of the default app (one per instance)."""
    global _firestore
    if _firestore is not None:
        return _firestore
    app = get_app()
    with _lock:
        if _firestore is None:
            from firebase_admin import firestore

            _firestore = firestore.client(app)
    return _firestore


def bucket(name: str | None = None) -> Bucket:
    """A Cloud Storage bucket handle; ``None`` means the project's default bucket."""
    cached = _buckets.get(name)
    if cached is not None:
        return cached
    app = get_app()
    with _lock:
        if name not in _buckets:
            from firebase_admin import storage

            _buckets[name] = storage.bucket(name, app=app)
    return _buckets[name]


def reset_for_tests() -> None:
    """Forget the cached app and clients (tests switch environments between cases)."""
    global _app, _firestore
    with _lock:
        if _app is not None:
            import firebase_admin

            firebase_admin.delete_app(_app)
        _app = None
        _firestore = None
        _buckets.clear()
