"""Cloud Functions entry points: trigger declarations and wiring only.

All logic lives in the ``media_classifier`` package, whose modules import their heavy
dependencies (numpy, ONNX Runtime, Pillow, firebase-admin) only when first used: the
Firebase CLI imports this file to discover the functions, with a 10 s limit, and the
model loads once per instance on the first event.
"""

import functools
import os
from collections.abc import Callable
from typing import Any, TypedDict

from firebase_functions import https_fn, options, scheduler_fn, storage_fn, tasks_fn

from media_classifier import config
from media_classifier.api.callable import handle_call, handle_similar_call
from media_classifier.api.callable_guard import screen
from media_classifier.api.on_demand import verify_id_token
from media_classifier.api.refresh_admin import admin_request
from media_classifier.api.rest import serve
from media_classifier.flows import refresh
from media_classifier.flows.recovery import RecoveryOptions, sweep
from media_classifier.flows.upload import handle_deleted
from media_classifier.store.clients import firestore_client, get_app
from media_classifier.store.tasks import AdminQueue
from media_classifier.store.uploads import Upload

# Before numpy is first imported (with ONNX Runtime, on the first event): the functions
# never call BLAS (ORT has its own kernels), and starting OpenBLAS' thread pool costs a
# cold start ~60 ms (bench/README.md).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# 2 GiB gives a full vCPU; video decoding and inference use both of the 4 GiB tier.
options.set_global_options(max_instances=20)


class Runtime(TypedDict):
    """The resources every function declares (typed, so the decorators' options check)."""

    memory: options.MemoryOption
    cpu: int
    timeout_sec: int


class HttpsRuntime(Runtime):
    """The HTTPS functions' resources: the same, plus requests served at once."""

    concurrency: int


RUNTIME: Runtime = {"memory": options.MemoryOption.GB_4, "cpu": 2, "timeout_sec": 540}


def _upload(data: storage_fn.StorageObjectData) -> Upload:
    return Upload.of(data.bucket, data)


@storage_fn.on_object_finalized(**RUNTIME)
def classify_upload(event: storage_fn.CloudEvent[storage_fn.StorageObjectData]) -> None:
    """A new object (or a new generation of one) under the watched prefix: classify it."""
    config.flow().run(_upload(event.data), firestore_client())


@storage_fn.on_object_deleted(memory=options.MemoryOption.MB_256)
def forget_deleted(event: storage_fn.CloudEvent[storage_fn.StorageObjectData]) -> None:
    """An object was deleted: delete its result so no stale labels remain."""
    handle_deleted(
        _upload(event.data),
        db=firestore_client(),
        prefix=config.WATCH_PREFIX.value,
        collection=config.RESULTS_COLLECTION.value,
        embeddings=config.embeddings_collection(),
    )


# One sweeper at a time (its writes are conditional anyway): a late run never doubles up.
@scheduler_fn.on_schedule(schedule="every 10 minutes", max_instances=1, **RUNTIME)
def recover_interrupted(event: scheduler_fn.ScheduledEvent) -> None:
    """Uploads whose worker died mid-way (memory, crash, time limit): retry once, then error."""
    sweep(firestore_client(), RecoveryOptions(config.flow()))


# --- Refresh: the backfill fanned out over Cloud Tasks (media_classifier/flows/refresh.py) ------
@tasks_fn.on_task_dispatched(
    retry_config=options.RetryConfig(max_attempts=5, min_backoff_seconds=10),
    rate_limits=options.RateLimits(
        max_concurrent_dispatches=config.REFRESH_MAX_CONCURRENT_DISPATCHES,
        max_dispatches_per_second=config.REFRESH_MAX_DISPATCHES_PER_SECOND,
    ),
    # One compute-bound task per instance (ONNX Runtime uses both vCPUs), and as many
    # instances as tasks may run at once.
    concurrency=1,
    max_instances=config.REFRESH_MAX_CONCURRENT_DISPATCHES,
    **RUNTIME,
)
def refreshTasks(req: tasks_fn.CallableRequest) -> dict:
    """One refresh task: list a page of the bucket, or run the flow for a batch of objects.

    camelCase: the function's name is its queue's id, and Cloud Tasks queue ids (and the
    Cloud Tasks emulator) allow letters, digits and hyphens only.
    """
    return refresh.handle_task(
        req.data,
        db=firestore_client(),
        queue=AdminQueue(),
        settings=config.refresh_options(),
    )


# --- HTTPS: callable ``classify`` (apps) and REST ``api`` (any backend) ----------------
# Same runtime as the trigger (video by path can take as long); concurrency bounded so a
# burst of 10 MB bodies and their decoded pixels stays inside the 4 GiB.
HTTPS_RUNTIME: HttpsRuntime = {**RUNTIME, "concurrency": 8}


def _screened(handler: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Check the raw callable request before the SDK's callable wrapper parses it.

    The SDK answers 500 for bodies it cannot parse and does not check token revocation;
    ``callable_guard.screen`` refuses those requests in the callable protocol first (see
    its docstring). It also creates the firebase-admin app, which the SDK's token check
    needs, here rather than at import, which keeps the import of this file cheap.
    ``functools.wraps`` copies the endpoint attribute the CLI discovers functions by.
    """

    @functools.wraps(handler)
    def wrapper(request: Any) -> Any:
        get_app()
        refused = screen(request, settings=config.request_settings(), verify_token=verify_id_token)
        return refused if refused is not None else handler(request)

    return wrapper


@_screened
@https_fn.on_call(memory=options.MemoryOption.MB_512, timeout_sec=120)
def refresh_admin(req: https_fn.CallableRequest) -> dict:
    """Admins (custom claim ``admin: true``) start, watch, cancel and resume refreshes."""
    claims = req.auth.token if req.auth is not None else None
    return admin_request(
        req.data,
        claims,
        db=firestore_client(),
        queue=AdminQueue(),
        settings=config.refresh_options(),
    )


@_screened
@https_fn.on_call(**HTTPS_RUNTIME)
def classify(req: https_fn.CallableRequest) -> dict:
    """Classify ``{path}`` (an object the caller owns) or ``{image}`` (base64) on demand."""
    return handle_call(
        req,
        settings=config.request_settings(),
        enforce_app_check=config.ENFORCE_APP_CHECK.value,
    )


@_screened
@https_fn.on_call(**HTTPS_RUNTIME)
def similar(req: https_fn.CallableRequest) -> dict:
    """The caller's own uploads nearest to ``{path}`` (one of theirs) or ``{image}``."""
    return handle_similar_call(
        req,
        settings=config.request_settings(),
        enforce_app_check=config.ENFORCE_APP_CHECK.value,
    )


# Any origin may call: requests authorize with a bearer token, never with cookies.
@https_fn.on_request(
    cors=options.CorsOptions(cors_origins="*", cors_methods=["GET", "POST"]), **HTTPS_RUNTIME
)
def api(req: https_fn.Request) -> https_fn.Response:
    """REST API: POST /v1/classify, POST /v1/similar, GET /v1/models, GET /v1/health."""
    return serve(req, settings=config.request_settings())
