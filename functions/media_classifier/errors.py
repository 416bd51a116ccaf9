"""Error codes shared by every entry point (Storage trigger, HTTPS, CLI).

Why one module: a client reads ``error.code`` from the result document and must
be able to rely on a closed, documented set of values.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Codes written to ``error.code`` of a result document."""

    UNSUPPORTED_MEDIA = "UNSUPPORTED_MEDIA"  # not an image/video we can decode
    CORRUPT_MEDIA = "CORRUPT_MEDIA"  # looks like a known format but fails to decode
    TOO_LARGE = "TOO_LARGE"  # bytes or pixels above the configured limit
    TOO_LONG = "TOO_LONG"  # video duration above the configured limit
    EMPTY = "EMPTY"  # zero-byte object
    TIMEOUT = "TIMEOUT"  # decoding outran its time budget (overloaded instance or odd file)
    NOT_FOUND = "NOT_FOUND"  # the object vanished (deleted/replaced) before it was read
    UNKNOWN_MODEL = "UNKNOWN_MODEL"  # a route or request names a model not served
    INTERRUPTED = "INTERRUPTED"  # its workers died mid-way, twice (memory, crash, time limit)
    INTERNAL = "INTERNAL"  # a bug or an infrastructure failure on our side


#: Codes only a result document carries (written by :mod:`recovery`): no request ends in them.
DOCUMENT_ONLY = frozenset({ErrorCode.INTERRUPTED})


class MediaError(Exception):
    """A failure we can explain to the uploader, carrying its stable code."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message

    def as_dict(self) -> dict[str, str]:
        """The ``error`` field of a result document."""
        return {"code": str(self.code), "message": self.message}
