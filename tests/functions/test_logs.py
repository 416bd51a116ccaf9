"""Logs: one structured JSON object per line, never a token or a file's contents."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from media_classifier import logs
from media_classifier.api.http_errors import ApiError, RequestCode
from media_classifier.api.rest import ApiRequest, handle_request
from tests.functions.https_fixtures import colour_registry, settings

SAMPLE_ARGS = {
    "name": "uploads/u1/cat.jpg",
    "prefix": "uploads/",
    "generation": "17",
    "reason": "already done",
    "size": 123,
    "model": "colour",
    "kind": "image",
    "top": "red",
    "timings": {"total": 1.0},
    "code": "CORRUPT_MEDIA",
    "message": "broken",
    "exc": RuntimeError("boom"),
    "deleted": True,
    "key": "colour",
    "version": "1",
    "sha": "0123456789ab",
    "millis": 12.5,
    "endpoint": "/v1/classify",
    "bucket": "demo.appspot.com",
    "under": "uploads/u1/",
    "after": "uploads/u1/a.jpg",
    "dry_run": False,
    "counts": {"scanned": 100, "up to date": 98, "classified": 2},
    "last": "uploads/u1/z.jpg",
    "seconds": 3.5,
    "summary": {"summary": True, "complete": True, "scanned": 3},
    "attempts": 2,
    "doc_id": "uploads%2Fu1%2Fcat.jpg",
    "run": "20261206T091617-a38ad1f9",
    "tasks": 3,
    "outcome": {"handled": 20},
    "step": "near-duplicate search",
    "matches": 3,
}
PUBLIC = [
    fn
    for name, fn in inspect.getmembers(logs, inspect.isfunction)
    if not name.startswith("_") and fn.__module__ == logs.__name__
]


@pytest.mark.parametrize("fn", PUBLIC, ids=[fn.__name__ for fn in PUBLIC])
def test_every_message_is_one_structured_line_on_stderr(
    fn, capsys: pytest.CaptureFixture[str]
) -> None:
    params = inspect.signature(fn).parameters
    fn(**{p: SAMPLE_ARGS[p] for p in params})
    out, err = capsys.readouterr()
    assert out == ""  # stdout belongs to the CLI's results
    (line,) = err.splitlines()
    entry = json.loads(line)
    assert entry["severity"] in {"DEBUG", "INFO", "WARNING", "ERROR"}
    assert entry["event"] and entry["message"]


def test_requests_never_log_tokens_or_bodies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = colour_registry(tmp_path)
    body = b"BODY-SECRET: this text is not an image"

    def verify(token: str) -> str:
        if token != "good-token-SECRET":
            raise ApiError(RequestCode.UNAUTHENTICATED, "bad token")
        return "uid-1"

    for token in ("good-token-SECRET", "forged-token-SECRET"):
        request = ApiRequest(
            "POST",
            "/v1/classify",
            {"authorization": f"Bearer {token}", "content-type": "text/plain"},
            {},
            len(body),
            lambda limit: body,
        )
        reply = handle_request(request, verify_token=verify, settings=settings(), registry=registry)
        assert reply.status == (415 if token.startswith("good") else 401)
    out, err = capsys.readouterr()
    assert err  # the failures were logged ...
    assert "SECRET" not in out + err  # ... without the token or the body
