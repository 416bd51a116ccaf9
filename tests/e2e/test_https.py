"""The HTTPS functions through the running emulators, with real Auth emulator ID tokens.

Nothing is mocked: requests go to the Functions emulator (``api`` and ``classify``), the
callable downloads objects from the Storage emulator with the Admin SDK, and tokens are
verified by firebase-admin against the Auth emulator. The callable is called over its
wire protocol (``POST {"data": ...}`` with ``Authorization: Bearer``), which is exactly
what ``httpsCallable`` in the Firebase SDKs sends.

The last test fuzzes the REST API from ``functions/openapi.yaml`` with schemathesis.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from tests import media_factory
from tools.localstack import HOST, PORTS, PROJECT_ID

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"
BASE = f"http://{HOST}:{PORTS['functions']}/{PROJECT_ID}/us-central1"
API = f"{BASE}/api"
CALLABLE = f"{BASE}/classify"
CAT_LABELS = {"Egyptian cat", "tabby", "tiger cat"}
COFFEE_LABELS = {"espresso", "cup", "coffee mug"}
#: The default HTTPS_MAX_BYTES (the emulator runs with the params' defaults).
HTTPS_MAX_BYTES = 10 * 1024 * 1024
TIMEOUT = 120


@pytest.fixture(scope="module")
def uid(run_id: str) -> str:
    return f"{run_id}-https"


@pytest.fixture
def token(id_token: Callable[[str], str], uid: str) -> str:
    return id_token(uid)


@pytest.fixture
def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def video_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The shipped Big Buck Bunny clip, or a generated 3 s clip where it is absent."""
    sample = SAMPLES / "video" / "big_buck_bunny_4s.mp4"
    if sample.exists():
        return sample.read_bytes()
    path = tmp_path_factory.mktemp("video") / "testsrc.mp4"
    return media_factory.testsrc_video(path, duration=3.0, size=(320, 240), fps=25).read_bytes()


@pytest.fixture(scope="module")
def long_video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """Ten minutes and a bit of a tiny, 1 fps black picture: over the 600 s limit, 20 KB."""
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    media_factory.ffmpeg(
        "-f", "lavfi", "-i", "color=c=black:s=64x64:r=1:d=605",
        "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path),
    )  # fmt: skip
    return path.read_bytes()


def cat() -> bytes:
    return (SAMPLES / "images" / "chelsea-cat.png").read_bytes()


def coffee() -> bytes:
    return (SAMPLES / "images" / "coffee.jpg").read_bytes()


def call(data: Any, headers: dict[str, str] | None = None) -> requests.Response:
    """One callable invocation over the callable protocol."""
    return requests.post(CALLABLE, json={"data": data}, headers=headers or {}, timeout=TIMEOUT)


def callable_error(response: requests.Response, status: str, http: int, code: str) -> str:
    """Assert a callable error response; returns its message."""
    assert response.status_code == http, response.text
    error = response.json()["error"]
    assert error["status"] == status, error
    assert error["details"] == {"code": code}, error
    assert error["message"]
    return error["message"]


def rest_error(response: requests.Response, http: int, code: str) -> str:
    """Assert the REST error shape; returns its message."""
    assert response.status_code == http, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "status", "message"}
    assert body["error"]["code"] == code, body
    assert body["error"]["status"] == http
    return body["error"]["message"]


# --- REST: success -----------------------------------------------------------------------


def test_health_is_public_and_cors_enabled(stack: Any) -> None:
    response = requests.get(
        f"{API}/v1/health", headers={"Origin": "https://app.example.com"}, timeout=TIMEOUT
    )
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert "imagenet_mobilenet_v2" in response.json()["models"]
    assert response.headers["Access-Control-Allow-Origin"] in ("*", "https://app.example.com")


def test_cors_preflight(stack: Any) -> None:
    response = requests.options(
        f"{API}/v1/classify",
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
        timeout=TIMEOUT,
    )
    assert response.status_code in (200, 204)
    assert response.headers["Access-Control-Allow-Origin"] in ("*", "https://app.example.com")
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "authorization" in response.headers["Access-Control-Allow-Headers"].lower()


def test_models(auth: dict[str, str]) -> None:
    response = requests.get(f"{API}/v1/models", headers=auth, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    models = {m["id"]: m for m in response.json()["models"]}
    imagenet = models["imagenet_mobilenet_v2"]
    assert len(imagenet["labels"]) == 1000
    assert imagenet["inputSize"] == {"height": 224, "width": 224}
    assert imagenet["resize"] in ("center_crop", "squash")
    assert imagenet["version"]
    assert response.json()["default"] in models


def test_classify_raw_body(auth: dict[str, str]) -> None:
    response = requests.post(
        f"{API}/v1/classify",
        params={"topK": 3},
        data=cat(),
        headers={**auth, "Content-Type": "application/octet-stream"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["kind"] == "image" and body["contentType"] == "image/png"
    assert body["labels"][0]["label"] in CAT_LABELS
    assert len(body["labels"]) == 3
    assert body["model"]["id"] == "imagenet_mobilenet_v2"
    assert body["video"] is None
    assert body["timings"]["total"] > 0


def test_classify_multipart_matches_raw(auth: dict[str, str]) -> None:
    files = {"file": ("coffee.jpg", coffee(), "image/jpeg")}
    multipart = requests.post(f"{API}/v1/classify", files=files, headers=auth, timeout=TIMEOUT)
    raw = requests.post(f"{API}/v1/classify", data=coffee(), headers=auth, timeout=TIMEOUT)
    assert multipart.status_code == raw.status_code == 200, multipart.text
    assert multipart.json()["labels"] == raw.json()["labels"]
    assert multipart.json()["labels"][0]["label"] in COFFEE_LABELS


def test_classify_video(auth: dict[str, str], video_bytes: bytes) -> None:
    response = requests.post(
        f"{API}/v1/classify",
        data=video_bytes,
        headers={**auth, "Content-Type": "video/mp4"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["kind"] == "video" and body["contentType"].startswith("video/")
    video = body["video"]
    assert 2.5 <= video["durationSec"] <= 4.5
    assert video["framesAnalyzed"] >= 2
    assert video["segments"] and {"startSec", "endSec", "label", "score"} <= set(
        video["segments"][0]
    )
    assert body["labels"]


# --- REST: errors ------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "Bearer not-a-token", "Basic dXNlcjpwYXNz"])
@pytest.mark.parametrize(("method", "route"), [("GET", "/v1/models"), ("POST", "/v1/classify")])
def test_rest_needs_a_valid_token(stack: Any, header: str | None, method: str, route: str) -> None:
    headers = {"Authorization": header} if header else {}
    response = requests.request(
        method, f"{API}{route}", data=cat(), headers=headers, timeout=TIMEOUT
    )
    rest_error(response, 401, "UNAUTHENTICATED")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_unknown_route_and_wrong_method(stack: Any) -> None:
    rest_error(requests.get(f"{API}/v1/nothing", timeout=TIMEOUT), 404, "NOT_FOUND")
    response = requests.delete(f"{API}/v1/classify", timeout=TIMEOUT)
    rest_error(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["Allow"] == "POST"


@pytest.mark.parametrize(
    ("params", "body", "http", "code"),
    [
        ({"topK": "0"}, "cat", 400, "INVALID_ARGUMENT"),
        ({"topK": "21"}, "cat", 400, "INVALID_ARGUMENT"),
        ({"model": "no_such_model"}, "cat", 400, "UNKNOWN_MODEL"),
        ({}, "empty", 400, "EMPTY"),
        ({}, "text", 415, "UNSUPPORTED_MEDIA"),
        ({}, "corrupt", 422, "CORRUPT_MEDIA"),
    ],
)
def test_rest_request_errors(
    auth: dict[str, str], params: dict[str, str], body: str, http: int, code: str
) -> None:
    data = {
        "cat": cat(),
        "empty": b"",
        "text": b"name,size\ncat.png,12\n",
        "corrupt": cat()[:200],
    }[body]
    response = requests.post(
        f"{API}/v1/classify", params=params, data=data, headers=auth, timeout=TIMEOUT
    )
    rest_error(response, http, code)


def test_rest_multipart_without_file_part(auth: dict[str, str]) -> None:
    files = {"image": ("cat.png", cat(), "image/png")}
    response = requests.post(f"{API}/v1/classify", files=files, headers=auth, timeout=TIMEOUT)
    assert "'file'" in rest_error(response, 400, "INVALID_ARGUMENT")


def test_rest_too_large(auth: dict[str, str]) -> None:
    data = b"\0" * (HTTPS_MAX_BYTES + 1)
    response = requests.post(f"{API}/v1/classify", data=data, headers=auth, timeout=TIMEOUT)
    assert "Storage" in rest_error(response, 413, "TOO_LARGE")


def test_rest_too_long(auth: dict[str, str], long_video: bytes) -> None:
    response = requests.post(f"{API}/v1/classify", data=long_video, headers=auth, timeout=TIMEOUT)
    rest_error(response, 413, "TOO_LONG")


# --- callable: success -------------------------------------------------------------------


def test_callable_image(auth: dict[str, str]) -> None:
    response = call({"image": base64.b64encode(cat()).decode(), "topK": 2}, auth)
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["labels"][0]["label"] in CAT_LABELS
    assert len(result["labels"]) == 2
    assert result["kind"] == "image" and result["contentType"] == "image/png"
    assert result["model"]["id"] == "imagenet_mobilenet_v2"


def test_callable_path_of_own_upload(
    auth: dict[str, str], uid: str, upload: Callable[..., int], object_name: Callable[..., str]
) -> None:
    name = object_name("coffee.jpg", owner=uid)
    upload(name, coffee(), "image/jpeg")
    response = call({"path": name, "model": "imagenet_mobilenet_v2"}, auth)
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["path"] == name
    assert result["labels"][0]["label"] in COFFEE_LABELS
    assert "download" in result["timings"]


def test_callable_path_of_own_video(
    auth: dict[str, str],
    uid: str,
    upload: Callable[..., int],
    object_name: Callable[..., str],
    video_bytes: bytes,
) -> None:
    name = object_name("clip.mp4", owner=uid)
    upload(name, video_bytes, "video/mp4")
    response = call({"path": name}, auth)
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["kind"] == "video"
    assert result["video"]["framesAnalyzed"] >= 2
    assert result["video"]["segments"]


# --- callable: errors --------------------------------------------------------------------


def test_callable_needs_sign_in(stack: Any) -> None:
    response = call({"image": base64.b64encode(cat()).decode()})
    callable_error(response, "UNAUTHENTICATED", 401, "UNAUTHENTICATED")


def test_callable_rejects_a_forged_token(stack: Any) -> None:
    response = call({"image": "AAAA"}, {"Authorization": "Bearer forged"})
    assert response.status_code == 401  # refused before the SDK parses the call
    assert response.json()["error"]["status"] == "UNAUTHENTICATED"


def test_callable_other_users_object_is_denied(
    auth: dict[str, str], run_id: str, upload: Callable[..., int], object_name: Callable[..., str]
) -> None:
    """The object exists, but belongs to someone else: denied, whatever it holds."""
    name = object_name("cat.png", owner=f"{run_id}-someone-else")
    upload(name, cat(), "image/png")
    message = callable_error(call({"path": name}, auth), "PERMISSION_DENIED", 403,
                             "PERMISSION_DENIED")  # fmt: skip
    assert "your own uploads" in message


def test_callable_missing_object(auth: dict[str, str], uid: str) -> None:
    response = call({"path": f"uploads/{uid}/never-uploaded-{time.time_ns()}.jpg"}, auth)
    callable_error(response, "NOT_FOUND", 404, "NOT_FOUND")


@pytest.mark.parametrize(
    ("data", "status", "http", "code"),
    [
        ({"image": "this is not base64!"}, "INVALID_ARGUMENT", 400, "INVALID_ARGUMENT"),
        ({"image": "cat", "model": "no_such_model"}, "INVALID_ARGUMENT", 400, "UNKNOWN_MODEL"),
        ({"image": "cat", "topK": 0}, "INVALID_ARGUMENT", 400, "INVALID_ARGUMENT"),
        ({"image": "cat", "topK": 21}, "INVALID_ARGUMENT", 400, "INVALID_ARGUMENT"),
        ({}, "INVALID_ARGUMENT", 400, "INVALID_ARGUMENT"),
        ({"image": "cat", "path": "uploads/x/y.jpg"}, "INVALID_ARGUMENT", 400, "INVALID_ARGUMENT"),
        ({"image": "text"}, "FAILED_PRECONDITION", 400, "UNSUPPORTED_MEDIA"),
        ({"image": "corrupt"}, "INVALID_ARGUMENT", 400, "CORRUPT_MEDIA"),
        ({"image": "huge"}, "RESOURCE_EXHAUSTED", 429, "TOO_LARGE"),
    ],
)
def test_callable_errors(
    auth: dict[str, str], data: dict[str, Any], status: str, http: int, code: str
) -> None:
    payloads = {
        "cat": cat(),
        "text": b"just a note, not a picture\n",
        "corrupt": cat()[:200],
        "huge": b"\0" * (HTTPS_MAX_BYTES + 1),
    }
    if data.get("image") in payloads:
        data = {**data, "image": base64.b64encode(payloads[data["image"]]).decode()}
    callable_error(call(data, auth), status, http, code)


def test_callable_too_long_video(
    auth: dict[str, str], uid: str, upload: Callable[..., int], object_name: Callable[..., str],
    long_video: bytes,
) -> None:  # fmt: skip
    name = object_name("long.mp4", owner=uid)
    upload(name, long_video, "video/mp4")
    message = callable_error(call({"path": name}, auth), "RESOURCE_EXHAUSTED", 429, "TOO_LONG")
    assert "limit" in message


# --- fuzzing from the OpenAPI document ----------------------------------------------------


@pytest.mark.slow
def test_schemathesis_against_the_document(token: str, tmp_path: Path) -> None:
    """No 5xx, and every response (status, headers, body) is one the document describes.

    Bounded for a 2-core CI machine: a fixed seed, at most 50 examples per operation
    (``MC_FUZZ_EXAMPLES``), one worker; about 20 s. ``positive_data_acceptance`` is left
    out: schema-valid bytes (any binary) are rightly refused as unsupported media, which
    the document describes as 415. A schema-violating request may also be refused as
    413 (too large) or, before the function, as 431 by the emulator's HTTP server (a
    query of overlong values, each character percent-encoded to 12 bytes, passes 16 KB):
    both are rejections, which ``negative_data_rejection`` does not count by default.
    """
    config = tmp_path / "schemathesis.toml"
    rejections = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428",
                  "429", "431", "5xx"]  # fmt: skip
    config.write_text(
        f"[checks.negative_data_rejection]\nexpected-statuses = {json.dumps(rejections)}\n"
    )
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config),
        "run", str(REPO / "functions" / "openapi.yaml"),
        "--url", API,
        "--header", f"Authorization: Bearer {token}",
        "--checks", "all",
        "--exclude-checks", "positive_data_acceptance",
        "--max-examples", os.environ.get("MC_FUZZ_EXAMPLES", "50"),
        "--seed", "20261122",
        "--workers", "1",
        "--request-timeout", "60",
        "--suppress-health-check", "all",
        "--no-color",
        "--generation-database", "none",
        "--report", "junit", "--report-dir", str(tmp_path),
    ]  # fmt: skip
    started = time.monotonic()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    output = proc.stdout[-12000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, output
    assert time.monotonic() - started < 240
