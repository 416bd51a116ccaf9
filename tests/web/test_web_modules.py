"""The web app's pure modules (web/src/messages.js, web/src/format.js), run by node.

Why from Python: the facts they must agree with live in the functions' code (the closed
set of error codes, the result document id), so the test reads both sides from their
sources instead of a copied list. No browser and no emulator: milliseconds.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from media_classifier.api.http_errors import ALL_CODES
from media_classifier.errors import ErrorCode
from media_classifier.store.results import doc_id

WEB_SRC = Path(__file__).resolve().parents[2] / "web" / "src"


def run_node(script: str, payload: object) -> Any:
    """Run an ES module snippet with ``payload`` as ``input``; returns what it prints (JSON)."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed (Node.js >= 20), as for the emulators")
    source = f"const input = {json.dumps(payload)};\n{script}"
    proc = subprocess.run(
        [node, "--input-type=module", "-e", source],
        cwd=WEB_SRC,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def describe(errors: list[dict[str, Any]]) -> list[dict[str, str]]:
    return run_node(
        'import { describeError, FALLBACK } from "./messages.js";\n'
        "console.log(JSON.stringify(input.map((e) => "
        "({ ...describeError(e), fallback: describeError(e).title === FALLBACK.title }))));",
        errors,
    )


def test_every_code_the_functions_can_report_has_its_own_message() -> None:
    codes = sorted({str(code) for code in ErrorCode} | set(ALL_CODES))
    described = describe([{"code": code, "message": "server text"} for code in codes])
    missing = [code for code, d in zip(codes, described, strict=True) if d["fallback"]]
    assert missing == [], f"web/src/messages.js has no message for {missing}"
    for d in described:
        assert d["title"] and d["message"]
        assert d["detail"] == "server text"  # the server's own words stay visible


def test_a_callable_error_is_described_by_its_stable_code_not_its_transport_code() -> None:
    [d] = describe(
        [{"code": "functions/failed-precondition", "details": {"code": "UNSUPPORTED_MEDIA"}}]
    )
    assert d["code"] == "UNSUPPORTED_MEDIA"
    assert d["title"] == "Not a photo or video we can read"


def test_sdk_errors_have_messages_and_unknown_ones_fall_back() -> None:
    described = describe(
        [
            {"code": "permission-denied", "message": "Missing or insufficient permissions."},
            {"code": "auth/invalid-credential", "message": "Error (auth/invalid-credential)."},
            {"code": "storage/unauthorized"},
            {"code": "something-new"},
        ]
    )
    assert [d["fallback"] for d in described] == [False, False, False, True]
    assert described[0]["title"] == "You don't have access to this result"


def test_similar_explains_a_model_without_vectors_rather_than_blaming_the_page() -> None:
    """``similar`` answers NO_EMBEDDINGS when the upload's model has no embedding output: the
    panel speaks of the upload; a malformed request and other codes keep the general texts."""
    errors = [
        {
            "code": "functions/failed-precondition",
            "details": {"code": "NO_EMBEDDINGS"},
            "message": "model 'x' has no embedding output, so it cannot compare pictures",
        },
        {"code": "functions/unauthenticated", "details": {"code": "UNAUTHENTICATED"}},
        {"code": "functions/unavailable"},
        {"code": "functions/invalid-argument", "details": {"code": "INVALID_ARGUMENT"}},
    ]
    script = (
        'import { describeError, describeSimilarError } from "./messages.js";\n'
        "const both = (e) => [describeSimilarError(e), describeError(e)];\n"
        "console.log(JSON.stringify(input.map(both)));"
    )
    [(bad, general), (signed_out, signed_out_general), (offline, offline_general), malformed] = (
        run_node(script, errors)
    )
    assert bad["title"] == "This upload cannot be compared" != general["title"]
    assert general["title"] == "Similarity search is not available"
    assert bad["code"] == "NO_EMBEDDINGS" and "embedding" in bad["detail"]
    assert signed_out == signed_out_general and offline == offline_general
    assert malformed[0] == malformed[1] and "Reload" in malformed[0]["message"]


@pytest.mark.parametrize(
    "path",
    [
        "uploads/uid123/cat.jpg",
        "uploads/u/20261206-081500-Zürich café (1).JPG",
        "uploads/u/a+b&c=d;e,f?g#h[i]'j'!~*().png",
        "uploads/u/emoji-\U0001f431.heic",
        "uploads/u/" + "x" * 1490,  # encodes to more than 1,500 bytes only with the prefix
        "uploads/u/" + "ü" * 400,  # encodes to 2,400 bytes: the sha256- form
    ],
)
def test_the_page_computes_the_same_result_id_as_the_functions(path: str) -> None:
    got = run_node(
        'import { resultId } from "./format.js";\n'
        "console.log(JSON.stringify(await resultId(input)));",
        path,
    )
    assert got == doc_id(path)


def test_upload_paths_stay_in_the_users_folder_whatever_the_file_is_called() -> None:
    names = ["cat.jpg", "../../etc/passwd", "a/b\\c.png", "..hidden", "", "x" * 300 + ".jpg"]
    paths = run_node(
        'import { uploadPath } from "./format.js";\n'
        'const now = new Date("2026-12-06T08:15:00Z");\n'
        "console.log(JSON.stringify(input.map((n) => "
        '[uploadPath("uid1", n, { now }), uploadPath("uid1", n, { folder: "fashion", now })])));',
        names,
    )
    for plain, routed in paths:
        assert plain.startswith("uploads/uid1/20261206-081500-")
        assert routed.startswith("uploads/uid1/fashion/20261206-081500-")
        assert "/" not in plain.removeprefix("uploads/uid1/")
        assert ".." not in plain.split("/")
        assert len(plain.encode()) < 200
    assert paths[0][0] == "uploads/uid1/20261206-081500-cat.jpg"
