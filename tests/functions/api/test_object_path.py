"""The one path rule: malformed names are INVALID_ARGUMENT before ownership is looked at."""

from __future__ import annotations

import pytest

from media_classifier.api.http_errors import ApiError
from media_classifier.api.object_path import (
    MAX_NAME_BYTES,
    check_owner,
    owned_object_path,
    parse_object_path,
)

UID = "alice"
PREFIX = "uploads/"


def code_of(value: object, uid: str = UID, prefix: str = PREFIX) -> str:
    with pytest.raises(ApiError) as info:
        owned_object_path(value, uid, prefix)
    assert len(info.value.message) <= 500
    return info.value.code


@pytest.mark.parametrize(
    "path",
    [
        "uploads/alice/cat.jpg",
        "uploads/alice/holiday/2024/cat.jpg",
        "uploads/alice/with spaces  and  double.png",
        "uploads/alice/unicode-ünïcödé-日本語-🙂.png",
        "uploads/alice/..dots...png",  # dots inside a name are literal characters
        "uploads/alice/.hidden",
        "uploads/alice/%2e%2e/bob/private.jpg",  # percent signs are literal, never decoded
        "uploads/alice/\u2024\u2024/bob/private.jpg",  # one-dot leaders, not dots
        "uploads/alice/rtl-\u202etxt.png",  # a format character, not a control character
        "uploads/alice/" + "n" * (MAX_NAME_BYTES - len("uploads/alice/")),
    ],
)
def test_well_formed_own_paths_pass_unchanged(path: str) -> None:
    assert owned_object_path(path, UID, PREFIX) == path


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("uploads/alice/../bob/private.jpg", "walks into another user's folder"),
        ("uploads/alice/../../admin/x.jpg", "walks out of uploads/"),
        ("uploads/alice/./cat.jpg", "a . segment"),
        ("uploads/alice/..", "ends in .."),
        ("../uploads/alice/cat.jpg", "starts with .."),
        ("uploads/alice/a\\..\\..\\bob\\x.jpg", "backslashes"),
        ("uploads\\alice\\cat.jpg", "backslash separators"),
        ("uploads/alice/cat\x00.jpg", "NUL"),
        ("uploads/alice/cat\n.jpg", "line feed"),
        ("uploads/alice/cat\r.jpg", "carriage return"),
        ("uploads/alice/cat\t.jpg", "tab"),
        ("uploads/alice/cat\x1b[31m.jpg", "escape sequence"),
        ("uploads/alice/cat\x7f.jpg", "DEL"),
        ("uploads/alice/cat\x85.jpg", "C1 next line"),
        ("uploads/alice/\ud800", "a lone high surrogate"),
        ("uploads/alice/\udfff.jpg", "a lone low surrogate"),
        ("uploads/alice/\udc80\ud800.jpg", "surrogates in the wrong order"),
        ("uploads/alice//cat.jpg", "a doubled slash"),
        ("/uploads/alice/cat.jpg", "a leading slash"),
        ("uploads/alice/", "a trailing slash (folder placeholder)"),
        ("", "empty"),
        ("gs://bucket/uploads/alice/cat.jpg", "a URL"),
        ("uploads/alice/" + "n" * MAX_NAME_BYTES, "over 1024 bytes"),
        ("uploads/alice/" + "é" * 510, "over 1024 bytes in UTF-8, under in characters"),
        (None, "not a string"),
        (3, "a number"),
        (["uploads", "alice", "cat.jpg"], "a list"),
        ({"path": "uploads/alice/cat.jpg"}, "an object"),
        (b"uploads/alice/cat.jpg", "bytes"),
    ],
)
def test_malformed_paths_are_invalid_argument(path: object, why: str) -> None:
    assert code_of(path) == "INVALID_ARGUMENT", why


@pytest.mark.parametrize(
    "path",
    [
        "uploads/bob/../alice/cat.jpg",  # would be alice's once resolved: still refused as 400
        "uploads/bob/\ud800",
        "uploads/bob//x.jpg",
        "elsewhere/../uploads/alice/x.jpg",
    ],
)
def test_the_rule_runs_before_the_owner_check(path: str) -> None:
    """Whoever the path seems to belong to, a malformed one is 400, never 403 or 200."""
    assert code_of(path) == "INVALID_ARGUMENT"


@pytest.mark.parametrize(
    "path",
    [
        "uploads/bob/private.jpg",  # another user's
        "uploads/alicex/cat.jpg",  # a uid that merely starts with ours
        "uploads/alic/cat.jpg",  # a uid ours starts with
        "uploads/cat.jpg",  # directly under the prefix: nobody's
        "uploads/alice",  # the folder itself
        "other/alice/cat.jpg",  # outside the watched prefix
        "Uploads/alice/cat.jpg",  # the prefix compared exactly
        "uploadsalice/x/cat.jpg",
    ],
)
def test_other_objects_are_permission_denied(path: str) -> None:
    assert code_of(path) == "PERMISSION_DENIED"


def test_owner_check_compares_segments_of_a_nested_prefix() -> None:
    assert owned_object_path("media/in/alice/a.png", UID, "media/in/") == "media/in/alice/a.png"
    assert code_of("media/in/bob/a.png", prefix="media/in/") == "PERMISSION_DENIED"
    assert code_of("media/inx/alice/a.png", prefix="media/in/") == "PERMISSION_DENIED"


def test_an_empty_uid_owns_nothing() -> None:
    path = parse_object_path("uploads/x/a.png")
    with pytest.raises(ApiError) as info:
        check_owner(path, "", PREFIX)
    assert info.value.code == "PERMISSION_DENIED"


def test_parse_returns_the_segments() -> None:
    parsed = parse_object_path("uploads/alice/a b/c.jpg")
    assert parsed.name == "uploads/alice/a b/c.jpg"
    assert parsed.segments == ("uploads", "alice", "a b", "c.jpg")


def test_messages_name_the_problem_without_echoing_raw_input() -> None:
    with pytest.raises(ApiError) as info:
        parse_object_path("uploads/alice/\ud800")
    assert "surrogate" in info.value.message
    info.value.message.encode("utf-8")  # the message itself is valid UTF-8
    with pytest.raises(ApiError) as info:
        parse_object_path("uploads/alice/a\x00b")
    assert "U+0000" in info.value.message and "\x00" not in info.value.message
    with pytest.raises(ApiError) as info:
        parse_object_path("uploads/alice/../bob/x")
    assert "'..'" in info.value.message
