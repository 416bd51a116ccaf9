"""Cloud Functions entry points: trigger declarations and wiring only.

All logic lives in the ``media_classifier`` package. Imports of heavy modules happen
inside the handlers: the Firebase CLI imports this file to discover the functions,
with a 10 s limit, and the model loads once per instance on the first event.
"""

from firebase_functions import options, storage_fn

from media_classifier import config

# 2 GiB gives a full vCPU; video decoding and inference use both of the 4 GiB tier.
options.set_global_options(max_instances=20)
RUNTIME = {"memory": options.MemoryOption.GB_4, "cpu": 2, "timeout_sec": 540}


def _upload(data: storage_fn.StorageObjectData):
    from media_classifier.storage_handler import Upload

    return Upload(
        bucket=data.bucket,
        name=data.name,
        generation=int(data.generation or 0),
        size=int(data.size or 0),
        content_type=data.content_type,
    )


@storage_fn.on_object_finalized(**RUNTIME)
def classify_upload(event: storage_fn.CloudEvent[storage_fn.StorageObjectData]) -> None:
    """A new object (or a new generation of one) under the watched prefix: classify it."""
    from media_classifier.clients import firestore_client
    from media_classifier.storage_handler import handle_finalized

    handle_finalized(
        _upload(event.data),
        db=firestore_client(),
        prefix=config.WATCH_PREFIX.value,
        collection=config.RESULTS_COLLECTION.value,
        model_id=config.model_for(event.data.name),
        top_k=config.TOP_K.value,
        limits=config.limits(),
    )


@storage_fn.on_object_deleted(memory=options.MemoryOption.MB_256)
def forget_deleted(event: storage_fn.CloudEvent[storage_fn.StorageObjectData]) -> None:
    """An object was deleted: delete its result so no stale labels remain."""
    from media_classifier.clients import firestore_client
    from media_classifier.storage_handler import handle_deleted

    handle_deleted(
        _upload(event.data),
        db=firestore_client(),
        prefix=config.WATCH_PREFIX.value,
        collection=config.RESULTS_COLLECTION.value,
    )
