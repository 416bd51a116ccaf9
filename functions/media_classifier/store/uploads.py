"""Which Storage objects are uploads, whose they are, which model reads them, and their bytes.

One rule for every caller: the trigger, the HTTPS functions (an object a client names),
the configuration (model routes), the backfill, the refresh and the recovery all ask
here, so "under the watched prefix, owner = next segment, folder picks the model" cannot
drift between them. :func:`download` reads exactly one generation of an object.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol

from media_classifier.errors import ErrorCode, MediaError, shown
from media_classifier.store.clients import bucket

#: Custom metadata never copied into a result: the Firebase SDKs keep the object's
#: download token here, and anyone holding it can read the file.
SECRET_METADATA = frozenset({"firebaseStorageDownloadTokens"})


@dataclass(frozen=True)
class Upload:
    """The parts of a Storage object event the flow uses."""

    bucket: str
    name: str
    generation: int
    size: int
    content_type: str | None = None
    metadata: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, bucket: str, obj: Any) -> Upload:
        """From anything with a Storage object's fields: an event's data, a listed blob."""
        return cls(
            bucket=bucket,
            name=obj.name,
            generation=int(obj.generation or 0),
            size=int(obj.size or 0),
            content_type=obj.content_type,
            metadata=custom_metadata(getattr(obj, "metadata", None)),
        )


def custom_metadata(raw: Any) -> tuple[tuple[str, str], ...]:
    """The uploader's custom metadata worth echoing in the result, sorted (pure).

    Apps set it to find results by their own ids (``customMetadata: {postId}``). String
    pairs only, :data:`SECRET_METADATA` never (Storage caps the whole at 8 KiB).
    """
    if not isinstance(raw, dict):
        return ()
    pairs = (
        (key, value)
        for key, value in raw.items()
        if isinstance(key, str) and isinstance(value, str) and key not in SECRET_METADATA
    )
    return tuple(sorted(pairs))


def should_process(name: str, prefix: str) -> bool:
    """Only real objects strictly under the watched prefix (folder placeholders excluded)."""
    return (
        bool(prefix)
        and name.startswith(prefix)
        and len(name) > len(prefix)
        and not (name.endswith("/"))
    )


def owner_of(name: str, prefix: str) -> str | None:
    """The uid in ``{prefix}{uid}/...``; None for files directly under the prefix."""
    rest = name[len(prefix) :]
    uid, sep, _ = rest.partition("/")
    return uid if sep and uid else None


def route_model(name: str, prefix: str, routes: dict[str, str], default: str) -> str:
    """The model for an object: ``{prefix}{uid}/{folder}/...`` uses ``routes[folder]``."""
    parts = name[len(prefix) :].split("/")
    if len(parts) >= 3 and parts[1] in routes:
        return routes[parts[1]]
    return default


class Blob(Protocol):
    """What :func:`download` needs of ``google.cloud.storage.Blob``."""

    name: str

    def download_to_filename(self, filename: str) -> None: ...


def generation_blob(upload: Upload) -> Any:
    """The event's own generation of the object, so a re-upload cannot swap the bytes."""
    return bucket(upload.bucket).blob(upload.name, generation=upload.generation)


def download(blob: Blob, directory: str) -> str:
    """The object's bytes in a file under ``directory``; NOT_FOUND if it is gone meanwhile."""
    from google.api_core import exceptions

    path = os.path.join(directory, "object")
    try:
        blob.download_to_filename(path)
    except exceptions.NotFound as exc:
        raise MediaError(
            ErrorCode.NOT_FOUND,
            f"{shown(blob.name, 200)} was deleted or replaced before it could be read",
        ) from exc
    return path
