"""Foundation slice, end to end: upload to the Storage emulator, read Firestore."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "images"


def _name(folder: str, file: str) -> str:
    return f"uploads/e2e-{uuid.uuid4().hex[:8]}/{folder}{file}"


def test_photo_gets_a_done_document_with_the_expected_label(upload, wait_for_result) -> None:
    name = _name("", "my cat.png")
    generation = upload(name, (SAMPLES / "chelsea-cat.png").read_bytes(), "image/png")
    doc = wait_for_result(name)
    assert doc["status"] == "done", doc
    assert doc["labels"][0]["label"] in {"Egyptian cat", "tabby", "tiger cat"}
    assert len(doc["labels"]) == 5
    assert doc["kind"] == "image" and doc["contentType"] == "image/png"
    assert doc["owner"] == name.split("/")[1]
    assert doc["path"] == name and doc["generation"] == str(generation)
    assert doc["model"]["id"] == "imagenet_mobilenet_v2"
    assert doc["error"] is None
    assert doc["timings"]["total"] > 0 and "download" in doc["timings"]
    assert doc["updatedAt"] is not None


def test_content_type_is_detected_not_trusted(upload, wait_for_result) -> None:
    name = _name("", "coffee")
    upload(name, (SAMPLES / "coffee.jpg").read_bytes(), "application/octet-stream")
    doc = wait_for_result(name)
    assert doc["status"] == "done"
    assert doc["contentType"] == "image/jpeg"
    assert doc["clientContentType"] == "application/octet-stream"
    assert doc["labels"][0]["label"] in {"espresso", "cup", "coffee mug"}


def test_custom_metadata_is_echoed_without_the_download_token(
    storage_bucket, wait_for_result
) -> None:
    name = _name("", "post-photo.jpg")
    blob = storage_bucket.blob(name)
    # What the Firebase SDKs send: the app's own fields, and a download token (a secret).
    blob.metadata = {"postId": "p-42", "firebaseStorageDownloadTokens": "SECRET-TOKEN"}
    blob.upload_from_string((SAMPLES / "coffee.jpg").read_bytes(), content_type="image/jpeg")
    doc = wait_for_result(name)
    assert doc["status"] == "done"
    assert doc["customMetadata"] == {"postId": "p-42"}
    assert "SECRET-TOKEN" not in repr(doc)


def test_iphone_heic_photo_gets_labels(upload, wait_for_result) -> None:
    name = _name("", "IMG_0001.HEIC")
    upload(name, (SAMPLES / "chelsea-cat-portrait.heic").read_bytes(), "image/heic")
    doc = wait_for_result(name)
    assert doc["status"] == "done", doc
    assert doc["contentType"] == "image/heic" and doc["kind"] == "image"
    assert doc["labels"][0]["label"] in {"Egyptian cat", "tabby", "tiger cat"}


def test_text_file_gets_an_unsupported_media_error(upload, wait_for_result) -> None:
    name = _name("", "notes.txt")
    upload(name, b"these are not pixels\n", "text/plain")
    doc = wait_for_result(name)
    assert doc["status"] == "error"
    assert doc["error"]["code"] == "UNSUPPORTED_MEDIA"
    assert doc["labels"] == []


def test_file_outside_the_prefix_gets_no_document(upload, wait_for_result, firestore_db) -> None:
    from media_classifier.store.results import doc_id

    control = _name("", "control.jpg")
    outside = f"elsewhere/e2e-{uuid.uuid4().hex[:8]}/cat.jpg"
    upload(outside, (SAMPLES / "coffee.jpg").read_bytes(), "image/jpeg")
    upload(control, (SAMPLES / "coffee.jpg").read_bytes(), "image/jpeg")
    wait_for_result(control)  # events are processed: the outside one had its chance too
    time.sleep(2)
    assert not firestore_db.collection("mediaResults").document(doc_id(outside)).get().exists


@pytest.mark.parametrize("sample", ["rocket.jpg", "flower.jpg"])
def test_every_sample_is_classified(upload, wait_for_result, sample: str) -> None:
    name = _name("samples/", sample)
    upload(name, (SAMPLES / sample).read_bytes(), "image/jpeg")
    assert wait_for_result(name)["status"] == "done"


def test_fashion_folder_routes_to_the_fashion_model(upload, wait_for_result) -> None:
    name = _name("fashion/", "look.jpg")
    upload(name, (SAMPLES / "coffee.jpg").read_bytes(), "image/jpeg")
    doc = wait_for_result(name)
    assert doc["status"] == "done", doc
    assert doc["model"]["id"] == "fashion_mnist_mobilenet_v2"
    assert doc["model"]["name"] == "fashion-mnist-mobilenet-v2"
    garments = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt"}
    garments |= {"Sneaker", "Bag", "Ankle boot"}
    assert {item["label"] for item in doc["labels"]} <= garments


def test_the_function_writes_nothing_to_storage(storage_bucket, upload, wait_for_result) -> None:
    """Results live in Firestore only, so the trigger can never feed itself."""
    name = _name("", "only.jpg")
    upload(name, (SAMPLES / "coffee.jpg").read_bytes(), "image/jpeg")
    wait_for_result(name)
    tag = name.split("/")[1]
    written = [blob.name for blob in storage_bucket.list_blobs() if tag in blob.name]
    assert written == [name]
