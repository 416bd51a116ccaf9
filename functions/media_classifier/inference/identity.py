"""A model file's identity from its own content: a hash of the graph and the weights.

Why: a name and a version are typed by people and stay the same when the weights change
(the shipped ImageNet file was replaced seven times and still said ``1.0.0``), so "a
result of an older model" could not be recognised. The hash can: it is the SHA-256 of
the serialized ONNX ``ModelProto`` *without* its ``metadata_props``, so it changes with
every change of graph or weights and not when the metadata (which carries the hash
itself) is rewritten. ``model_build`` stores it as ``metadata_props["sha"]`` (export,
``export-pretrained``, ``stamp``); :meth:`model.Model.load` recomputes it, refuses a file
whose stored hash differs from its content, and uses the computed one for a file that
carries none. Result documents say ``model.sha``; the backfill and ``compare`` use it.

Pure Python on the protobuf wire format (no ``onnx`` package: the deployed functions do
not ship it): the top-level fields of ``ModelProto`` are walked and field 14
(``metadata_props``) is left out; every other byte counts, in file order. Weights kept in
external data files are not covered (the contract's files embed them).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

#: ``ModelProto.metadata_props`` (repeated ``StringStringEntryProto {key = 1; value = 2}``).
METADATA_FIELD = 14
#: The metadata key that carries the hash.
SHA_KEY = "sha"
#: Hex characters kept: 48 bits, ample to tell the files of one model id apart.
SHA_CHARS = 12


class NotAModelFile(ValueError):
    """The bytes are not a protobuf message (truncated, or another kind of file)."""


def _varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise NotAModelFile("truncated or malformed varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def fields(data: bytes | memoryview) -> Iterator[tuple[int, int, int, int]]:
    """``(field number, start, payload start, end)`` of each top-level field, in order."""
    pos = 0
    while pos < len(data):
        start = pos
        tag, pos = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            _, end = _varint(data, pos)
        elif wire == 1:
            end = pos + 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            end = pos + length
        elif wire == 5:
            end = pos + 4
        else:
            raise NotAModelFile(f"unsupported protobuf wire type {wire}")
        if number == 0 or end > len(data):
            raise NotAModelFile("truncated or malformed protobuf field")
        yield number, start, pos, end
        pos = end


def content_sha(data: bytes) -> str:
    """The model's identity: SHA-256 over every top-level field but ``metadata_props``."""
    view = memoryview(data)
    digest = hashlib.sha256()
    for number, start, _, end in fields(view):
        if number != METADATA_FIELD:
            digest.update(view[start:end])
    return digest.hexdigest()[:SHA_CHARS]


def metadata(data: bytes) -> dict[str, str]:
    """The file's ``metadata_props`` as a dict (later entries win, as ONNX Runtime's do)."""
    view = memoryview(data)
    props: dict[str, str] = {}
    for number, _, payload, end in fields(view):
        if number != METADATA_FIELD:
            continue
        entry: dict[int, str] = {}
        for inner, _, inner_payload, inner_end in fields(view[payload:end]):
            raw = bytes(view[payload + inner_payload : payload + inner_end])
            entry[inner] = raw.decode("utf-8")
        props[entry.get(1, "")] = entry.get(2, "")
    return props


def _entry(key: str, value: str) -> bytes:
    body = b""
    for number, text in ((1, key), (2, value)):
        raw = text.encode("utf-8")
        body += _encode_varint(number << 3 | 2) + _encode_varint(len(raw)) + raw
    return _encode_varint(METADATA_FIELD << 3 | 2) + _encode_varint(len(body)) + body


def stamped(data: bytes) -> bytes:
    """``data`` with ``metadata_props["sha"]`` set to its content hash; nothing else changes.

    Every other field keeps its bytes and its place; the metadata entries stay in order
    (an old ``sha`` entry is dropped) where the first one was, the new ``sha`` after them.
    """
    sha = content_sha(data)
    view = memoryview(data)
    props = {k: v for k, v in metadata(data).items() if k != SHA_KEY}
    block = b"".join(_entry(k, v) for k, v in props.items()) + _entry(SHA_KEY, sha)
    out = bytearray()
    placed = False
    for number, start, _, end in fields(view):
        if number == METADATA_FIELD:
            if not placed:
                out += block
                placed = True
            continue
        out += view[start:end]
    if not placed:
        out += block
    return bytes(out)
