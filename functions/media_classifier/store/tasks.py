"""Cloud Tasks through firebase-admin: where the refresh's list and batch tasks are enqueued."""

from __future__ import annotations

import contextlib
import os
from typing import Any

from media_classifier.store.clients import get_app


class AdminQueue:
    """The ``refreshTasks`` queue through firebase-admin's ``functions.task_queue``.

    Why ``{"data": body}``: firebase-admin for Python sends the payload as it is given,
    while the task-queue function reads the callable protocol's ``data`` field (the Node
    Admin SDK wraps it itself).
    """

    def __init__(self, function: str = "refreshTasks", location: str = "us-central1") -> None:
        from firebase_admin import functions

        self._emulated = bool(os.environ.get("CLOUD_TASKS_EMULATOR_HOST"))
        self._queue = functions.task_queue(
            f"locations/{location}/functions/{function}", app=get_app()
        )

    def enqueue(self, body: dict[str, Any], task_id: str) -> None:
        from firebase_admin import exceptions, functions

        # A task id already used (409): an earlier delivery enqueued it. Cloud Tasks says
        # ALREADY_EXISTS; the emulator's plain-text 409 comes back as a ConflictError.
        with contextlib.suppress(exceptions.AlreadyExistsError, exceptions.ConflictError):
            try:
                options = functions.TaskOptions(task_id=task_id, dispatch_deadline_seconds=540)
                self._queue.enqueue({"data": body}, options)
            except ValueError as exc:
                # firebase-admin 7.7 against the Cloud Tasks emulator: the task is enqueued,
                # then the emulator's echo of a named task ("projects/...", no leading "/")
                # loses its first character and fails to parse. Only there.
                if not (self._emulated and "resource name" in str(exc)):
                    raise
