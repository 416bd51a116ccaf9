"""The callable ``refresh_admin``: start, follow, cancel and resume refreshes, admins only."""

from __future__ import annotations

import json
from typing import Any

from firebase_functions.https_fn import FunctionsErrorCode, HttpsError

from media_classifier.flows.refresh import (
    Queue,
    RefreshOptions,
    RunExpired,
    cancel,
    resume,
    start,
)
from media_classifier.store import clients


def admin_request(
    data: Any, claims: dict[str, Any] | None, *, db: Any, queue: Queue, settings: RefreshOptions
) -> dict:
    """The callable ``refresh_admin``: ``{action: start|status|cancel|resume, ...}``.

    Only users whose ID token carries the custom claim ``admin: true`` (set with the Admin
    SDK: ``auth.set_custom_user_claims(uid, {"admin": True})``) get past the first line.
    """
    if claims is None:
        raise HttpsError(FunctionsErrorCode.UNAUTHENTICATED, "sign in first")
    if claims.get("admin") is not True:
        raise HttpsError(FunctionsErrorCode.PERMISSION_DENIED, "only admins run refreshes")
    if not isinstance(data, dict) or data.get("action") not in (
        "start",
        "status",
        "cancel",
        "resume",
    ):
        raise HttpsError(
            FunctionsErrorCode.INVALID_ARGUMENT, "action: start, status, cancel or resume"
        )
    action = data["action"]
    if action == "start":
        under = data.get("under") or settings.flow.prefix
        codes = data.get("errors") or []
        if not isinstance(under, str) or not under.startswith(settings.flow.prefix):
            raise HttpsError(
                FunctionsErrorCode.INVALID_ARGUMENT,
                f"under must be inside {settings.flow.prefix!r}",
            )
        if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
            raise HttpsError(FunctionsErrorCode.INVALID_ARGUMENT, "errors: a list of codes")
        bucket = data.get("bucket") or clients.bucket(None).name
        started = start(
            db,
            queue,
            settings,
            bucket=str(bucket),
            under=under,
            everything=data.get("everything") is True,
            errors=frozenset(c.upper() for c in codes),
        )
        return {"run": started}
    run_id = data.get("run")
    if not isinstance(run_id, str) or not run_id or "/" in run_id:
        raise HttpsError(FunctionsErrorCode.INVALID_ARGUMENT, "run: the run id")
    snap = db.collection(settings.collection).document(run_id).get()
    if not snap.exists:
        raise HttpsError(FunctionsErrorCode.NOT_FOUND, "no such run")
    if action == "cancel":
        return {"run": run_id, "cancelled": cancel(db, settings, run_id)}
    if action == "resume":
        try:
            return {"run": run_id, "enqueued": resume(db, queue, settings, run_id)}
        except RunExpired:
            raise HttpsError(
                FunctionsErrorCode.FAILED_PRECONDITION,
                "its unfinished batches have expired: start a new run",
            ) from None
    return {"run": run_id, "progress": json.loads(json.dumps(snap.to_dict(), default=str))}
