"""The one rule for object paths that clients send: validate first, then check the owner.

Every entry point that takes an object name from a client (the callable's ``{path}``,
the REST API's ``?path=``) goes through :func:`owned_object_path`, so there is one rule
to read and to test.

Why validate before the owner check: the owner check compares path *segments*
(``uploads/<uid>/...``), and a string can pass a segment or prefix comparison while
naming something else once a server interprets it. ``uploads/A/../B/private.jpg``
starts with ``uploads/A/``, yet the Storage emulator resolves ``..`` and serves B's
file; a backslash is a separator on some servers; NUL or control characters end or
split names in C libraries and logs; an unpaired surrogate cannot be encoded as
UTF-8 at all (the Storage client crashed on it with ``UnicodeEncodeError``). Real
Cloud Storage names are literal bytes, so production would answer 404 for most of
these, but the rule must not depend on how the server behind it happens to parse
names: such paths are refused as ``INVALID_ARGUMENT`` (400) before ownership is even
looked at, and the owner check then runs on the validated segments.

Nothing is normalized (no Unicode normalization, no ``%``-decoding): an object name is
its exact bytes, and a normalized name would be another object. ``%2e%2e`` or a
fullwidth dot are literal characters; they are never resolved as ``..``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from media_classifier.api.http_errors import ApiError, RequestCode, invalid

#: Cloud Storage's limit on an object name, in UTF-8 bytes.
MAX_NAME_BYTES = 1024
#: C0 controls (NUL included), DEL and C1 controls: never part of a name users type.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_DOT_SEGMENTS = frozenset({".", ".."})
EXAMPLE = "uploads/<uid>/cat.jpg"


@dataclass(frozen=True)
class ObjectPath:
    """A client-sent object name that passed :func:`parse_object_path`."""

    name: str
    segments: tuple[str, ...]


def parse_object_path(value: object) -> ObjectPath:
    """The object name as validated segments; ``INVALID_ARGUMENT`` for anything else.

    Refused: non-strings, empty names, names that are not valid Unicode (unpaired
    surrogates) or longer than :data:`MAX_NAME_BYTES`, ``gs://`` URLs, backslashes,
    control characters (NUL included), and empty, ``.`` or ``..`` segments (which
    also refuses leading, trailing and doubled slashes).
    """
    if not isinstance(value, str) or not value:
        raise invalid(f"path must be a non-empty string: the object name, e.g. {EXAMPLE}")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise invalid(
            "path is not valid Unicode (it holds an unpaired surrogate); send the object"
            " name as UTF-8 text"
        ) from None
    if size > MAX_NAME_BYTES:
        raise invalid(f"path is {size:,} bytes; object names are at most {MAX_NAME_BYTES:,}")
    if value.startswith("gs://"):
        raise invalid(f"path is an object name in the default bucket, not a URL: e.g. {EXAMPLE}")
    if "\\" in value:
        raise invalid("path must not contain backslashes; object names use / between folders")
    control = _CONTROL.search(value)
    if control is not None:
        raise invalid(
            f"path must not contain control characters (found U+{ord(control.group()):04X})"
        )
    segments = tuple(value.split("/"))
    for index, segment in enumerate(segments):
        if segment in _DOT_SEGMENTS:
            raise invalid(
                f"path must not contain {segment!r} segments: object names are literal,"
                f" never resolved (e.g. {EXAMPLE})"
            )
        if not segment:
            where = "start" if index == 0 else "end" if index == len(segments) - 1 else "middle"
            raise invalid(
                f"path has an empty segment at its {where} (a leading, trailing or doubled /)"
            )
    return ObjectPath(value, segments)


def check_owner(path: ObjectPath, uid: str, prefix: str) -> str:
    """The name, if it is ``{prefix}{uid}/<at least one more segment>``; else PERMISSION_DENIED.

    Compares validated segments, never string prefixes: ``uploads/u1x/a.jpg`` does not
    belong to ``u1``, and a file directly under ``uploads/`` belongs to no one.
    """
    owner_at = [part for part in prefix.split("/") if part]
    start = len(owner_at)
    segments = path.segments
    if (
        not uid
        or list(segments[:start]) != owner_at
        or len(segments) < start + 2
        or segments[start] != uid
    ):
        raise ApiError(
            RequestCode.PERMISSION_DENIED,
            f"you can classify only your own uploads: objects under {prefix}{uid[:128]}/",
        )
    return path.name


def owned_object_path(value: object, uid: str, prefix: str) -> str:
    """:func:`parse_object_path`, then :func:`check_owner`: the rule every entry point uses.

    Why in this order, and before Storage is touched: a malformed name is the caller's
    mistake whoever owns it (400), and the answer for another user's object must not
    depend on whether it exists, or clients could probe other users' file names (403).
    """
    return check_owner(parse_object_path(value), uid, prefix)
