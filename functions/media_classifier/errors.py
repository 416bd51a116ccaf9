"""Error codes shared by every entry point (Storage trigger, HTTPS, CLI), in one set.

Why one module: a client reads ``error.code`` from the result document or an HTTPS
reply and must be able to rely on a closed, documented set of values.
:class:`ErrorCode` holds the codes a result document can carry; :class:`RequestCode`
the few that only a request can end in (a bad argument, no token, another user's
object, a wrong method). ``http_errors`` maps each to a callable code and an HTTP
status, and ``functions/openapi.yaml`` lists them (a test holds the two together).

Messages are for people and bounded: :func:`bounded` caps every message (an error
once listed all 200,000 unknown keys of a request, a 1.7 MB reply), and :func:`shown`
is how a message quotes a value the client sent.
"""

from __future__ import annotations

from enum import StrEnum

#: Longest message an error carries, in characters (result documents and replies).
MAX_MESSAGE_CHARS = 500
#: Longest client value quoted inside a message.
MAX_SHOWN_CHARS = 64
#: How many items of a list a message names before it just counts the rest.
MAX_SHOWN_ITEMS = 5


class ErrorCode(StrEnum):
    """Codes written to ``error.code`` of a result document."""

    UNSUPPORTED_MEDIA = "UNSUPPORTED_MEDIA"  # not an image/video we can decode
    CORRUPT_MEDIA = "CORRUPT_MEDIA"  # a known format that fails to decode, or is truncated
    TOO_LARGE = "TOO_LARGE"  # bytes or pixels above the configured limit
    TOO_LONG = "TOO_LONG"  # video duration above the configured limit
    EMPTY = "EMPTY"  # zero-byte object
    TIMEOUT = "TIMEOUT"  # decoding outran its time budget (overloaded instance or odd file)
    NOT_FOUND = "NOT_FOUND"  # the object vanished (deleted/replaced) before it was read
    UNKNOWN_MODEL = "UNKNOWN_MODEL"  # a route or request names a model not served
    INTERRUPTED = "INTERRUPTED"  # its workers died mid-way, twice (memory, crash, time limit)
    INTERNAL = "INTERNAL"  # a bug or an infrastructure failure on our side


class RequestCode(StrEnum):
    """Failures of an HTTPS request itself (not of the media): never in a result document."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"  # malformed input: bad JSON or path, topK out of range
    UNAUTHENTICATED = "UNAUTHENTICATED"  # no, invalid or revoked ID token; disabled user
    PERMISSION_DENIED = "PERMISSION_DENIED"  # the object belongs to another user
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"  # REST: known path, other method
    NO_EMBEDDINGS = "NO_EMBEDDINGS"  # similarity search: model without vectors, or search off


#: Codes only a result document carries (written by :mod:`flows.recovery`): no request ends in them.
DOCUMENT_ONLY = frozenset({ErrorCode.INTERRUPTED})


def bounded(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``message`` cut to ``limit`` characters, saying how much was cut."""
    if len(message) <= limit:
        return message
    keep = limit - 40  # room for the tail below, whatever the count
    return f"{message[:keep]}... ({len(message) - keep:,} more characters)"


def shown(value: object, limit: int = MAX_SHOWN_CHARS) -> str:
    """A client-sent value as a message quotes it: its repr, at most ``limit`` characters.

    Why repr: control characters and lone surrogates come out escaped, so a message
    never carries them raw into JSON, logs or a terminal. Containers are not walked
    (a deeply nested list would take time and stack to print): only their type and size.
    """
    if isinstance(value, dict | list | tuple | set):
        return f"<{type(value).__name__} of {len(value):,} items>"
    if isinstance(value, str) and len(value) > limit * 4:
        value = value[: limit * 4]  # repr of the part that can be shown, not of 10 MB
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shown_names(names: list[str], limit: int = MAX_SHOWN_ITEMS) -> str:
    """The first ``limit`` names (each :func:`shown`), then how many more there are."""
    listed = ", ".join(shown(name, 40) for name in names[:limit])
    rest = len(names) - limit
    return f"{listed} and {rest:,} more" if rest > 0 else listed


class MediaError(Exception):
    """A failure we can explain to the uploader, carrying its stable code."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        message = bounded(message)
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message

    def as_dict(self) -> dict[str, str]:
        """The ``error`` field of a result document."""
        return {"code": str(self.code), "message": self.message}
