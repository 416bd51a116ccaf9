"""Near-duplicates and "show me similar", through the Storage, Functions and Firestore emulators.

Google's Firestore emulator runs the vector search (``find_nearest`` with the owner and
model pre-filters); the shipped ImageNet model's ``embedding`` output gives the vectors.
"""

from __future__ import annotations

import base64
import io
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import pytest
import requests
from PIL import Image, ImageOps

from tools.localstack import HOST, PORTS, PROJECT_ID, result_doc_id

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
BASE = f"http://{HOST}:{PORTS['functions']}/{PROJECT_ID}/us-central1"
EMBEDDINGS = "mediaEmbeddings"
TIMEOUT = 120


def _jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _photo(name: str) -> Image.Image:
    with Image.open(SAMPLES / "images" / name) as img:
        return img.convert("RGB")


def _resized_low_quality(name: str) -> bytes:
    """What a messaging app makes of a photo: half the size, JPEG quality 30."""
    img = _photo(name)
    return _jpeg(img.resize((img.width // 2, img.height // 2)), quality=30)


def _mirrored(name: str) -> bytes:
    return _jpeg(ImageOps.mirror(_photo(name)))


def _similar(token: str, *, data: bytes = b"", **params: str) -> dict[str, Any]:
    response = requests.post(
        f"{BASE}/api/v1/similar",
        params=params,
        data=data,
        headers={"Authorization": f"Bearer {token}"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    return response.json()


def _vector_doc(firestore_db: Any, name: str) -> dict[str, Any] | None:
    snap = firestore_db.collection(EMBEDDINGS).document(result_doc_id(name)).get()
    return snap.to_dict() if snap.exists else None


def _read_as_client(token: str, name: str) -> int:
    """A client's GET of an upload's vector document (the security rules decide)."""
    url = (
        f"http://{HOST}:{PORTS['firestore']}/v1/projects/{PROJECT_ID}/databases/(default)"
        f"/documents/{EMBEDDINGS}/{result_doc_id(name).replace('%', '%25')}"
    )
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture(scope="module")
def library(request: pytest.FixtureRequest, run_id: str) -> dict[str, str]:
    """Object names of one user's uploads, and another user's copy of the same photo."""
    owner, other = f"sim-{run_id}", f"sim-other-{run_id}"
    folder = f"uploads/{owner}/{run_id}/similar"
    return {
        "owner": owner,
        "other": other,
        "original": f"{folder}/fire-engine.jpg",
        "coffee": f"{folder}/coffee.jpg",
        "cat": f"{folder}/cat.png",
        "copy": f"{folder}/fire-engine-from-chat.jpg",
        "clip": f"{folder}/ladybug.mp4",
        "others": f"uploads/{other}/{run_id}/similar/fire-engine.jpg",
    }


def test_a_transformed_copy_is_marked_a_duplicate_and_found_first(
    library, upload, wait_for_result, id_token, firestore_db
) -> None:
    files = {
        "original": ((SAMPLES / "images" / "fire-engine.jpg").read_bytes(), "image/jpeg"),
        "coffee": ((SAMPLES / "images" / "coffee.jpg").read_bytes(), "image/jpeg"),
        "cat": ((SAMPLES / "images" / "chelsea-cat.png").read_bytes(), "image/png"),
        "others": ((SAMPLES / "images" / "fire-engine.jpg").read_bytes(), "image/jpeg"),
    }
    for key, (data, content_type) in files.items():
        upload(library[key], data, content_type)
    for key in files:
        doc = wait_for_result(library[key], timeout=TIMEOUT)
        assert doc["status"] == "done" and doc["duplicateOf"] is None, (key, doc)
    stored = _vector_doc(firestore_db, library["original"])
    assert stored is not None and stored["owner"] == library["owner"]
    assert stored["modelSha"] == wait_for_result(library["original"])["model"]["sha"]

    # Searching with a mirrored copy (never uploaded): the original comes first, and the
    # other user's identical photo never appears.
    token = id_token(library["owner"])
    found = _similar(token, data=_mirrored("fire-engine.jpg"), k="5")
    paths = [m["path"] for m in found["matches"]]
    assert paths[0] == library["original"], found
    assert found["matches"][0]["score"] > found["matches"][1]["score"]
    assert all(p.startswith(f"uploads/{library['owner']}/") for p in paths)
    assert found["model"]["sha"] == stored["modelSha"]

    # The same photo as a chat app resends it: uploaded, it is a duplicate of the original.
    upload(library["copy"], _resized_low_quality("fire-engine.jpg"), "image/jpeg")
    copy = wait_for_result(library["copy"], timeout=TIMEOUT)
    assert copy["status"] == "done" and copy["duplicateOf"] == library["original"], copy

    # By path: the copy's nearest upload is the original (the copy itself is left out).
    by_path = _similar(token, path=library["copy"], k="3")
    assert by_path["matches"][0]["path"] == library["original"]
    assert library["copy"] not in {m["path"] for m in by_path["matches"]}

    # The other user: their own photo only, never the first user's.
    theirs = _similar(id_token(library["other"]), data=_mirrored("fire-engine.jpg"))
    assert [m["path"] for m in theirs["matches"]] == [library["others"]]


def test_the_callable_answers_like_the_rest_route(library, id_token) -> None:
    token = id_token(library["owner"])
    data = {"image": base64.b64encode(_mirrored("fire-engine.jpg")).decode(), "k": 2}
    response = requests.post(
        f"{BASE}/similar",
        json={"data": data},
        headers={"Authorization": f"Bearer {token}"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    matches = response.json()["result"]["matches"]
    assert len(matches) == 2 and matches[0]["path"] == library["original"]
    other_folder = {"path": library["others"]}
    refused = requests.post(
        f"{BASE}/similar",
        json={"data": other_folder},
        headers={"Authorization": f"Bearer {token}"},
        timeout=TIMEOUT,
    )
    assert refused.json()["error"]["status"] == "PERMISSION_DENIED"


def test_a_video_is_found_by_the_segment_that_matches(
    library, upload, wait_for_result, id_token, firestore_db
) -> None:
    upload(library["clip"], (SAMPLES / "video" / "ladybug-zoom.mp4").read_bytes(), "video/mp4")
    doc = wait_for_result(library["clip"], timeout=TIMEOUT)
    assert doc["status"] == "done", doc
    whole = _vector_doc(firestore_db, library["clip"])
    assert whole is not None and whole["segmentCount"] == len(doc["video"]["segments"]) >= 1
    found = _similar(id_token(library["owner"]), data=_jpeg(_first_frame()), k="3")
    best = found["matches"][0]
    assert best["path"] == library["clip"] and best["kind"] == "video"
    assert 0 <= best["startSec"] < best["endSec"] <= doc["video"]["durationSec"] + 1e-6


def _first_frame() -> Image.Image:
    """The clip's first frame, as a user might screenshot it."""
    reader = imageio_ffmpeg.read_frames(str(SAMPLES / "video" / "ladybug-zoom.mp4"))
    meta = next(reader)
    frame = next(reader)
    reader.close()
    return Image.frombytes("RGB", meta["size"], frame)


def test_clients_never_read_the_vectors(library, id_token) -> None:
    """The owner included: vectors are for the functions' searches only."""
    assert _read_as_client(id_token(library["owner"]), library["original"]) == 403


def test_a_deleted_upload_leaves_no_vector_and_is_no_longer_found(
    library, storage_bucket, id_token, firestore_db
) -> None:
    storage_bucket.blob(library["copy"]).delete()
    deadline = time.monotonic() + 60
    while _vector_doc(firestore_db, library["copy"]) is not None:
        assert time.monotonic() < deadline, "the copy's vector outlived the object"
        time.sleep(0.5)
    found = _similar(id_token(library["owner"]), data=_mirrored("fire-engine.jpg"), k="10")
    assert library["copy"] not in {m["path"] for m in found["matches"]}
    assert json.dumps(found).count(library["original"]) == 1
