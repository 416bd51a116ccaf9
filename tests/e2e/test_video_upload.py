"""Videos and animations uploaded through the Storage emulator get a timeline."""

from __future__ import annotations

import itertools
from pathlib import Path

from tests import media_factory

CLIP = Path(__file__).resolve().parents[2] / "samples" / "video" / "big_buck_bunny_4s.mp4"


def _frames(firestore_db, name: str, doc: dict) -> list[dict]:
    from media_classifier.store.results import doc_id

    chunks = (
        firestore_db.collection("mediaResults")
        .document(doc_id(name))
        .collection("frames")
        .order_by("index")
        .stream()
    )
    return [frame for chunk in chunks for frame in chunk.to_dict()["frames"]]


def test_real_clip_gets_a_plausible_timeline(
    object_name, upload, wait_for_result, firestore_db
) -> None:
    name = object_name("bunny.mp4")
    upload(name, CLIP.read_bytes(), "video/mp4")
    doc = wait_for_result(name, timeout=120)
    assert doc["status"] == "done", doc
    assert doc["kind"] == "video" and doc["contentType"] == "video/mp4"
    video = doc["video"]
    assert abs(video["durationSec"] - 4.0) < 0.5
    assert (video["width"], video["height"]) == (640, 360)
    assert video["framesAnalyzed"] == 4
    segments = video["segments"]
    assert segments and segments[0]["startSec"] == 0
    assert abs(segments[-1]["endSec"] - video["durationSec"]) < 1.01
    for before, after in itertools.pairwise(segments):
        assert before["endSec"] <= after["startSec"] + 1e-6
    assert len(doc["labels"]) == 5
    frames = _frames(firestore_db, name, doc)
    assert video["frameChunks"] == 1
    assert [f["t"] for f in frames] == [0.0, 1.0, 2.0, 3.0]
    assert all(len(f["labels"]) == 3 for f in frames)


def test_synthetic_video_sent_as_octet_stream(
    tmp_path, object_name, upload, wait_for_result
) -> None:
    path = media_factory.testsrc_video(tmp_path / "src.webm", duration=6, size=(320, 180))
    name = object_name("pattern")  # no extension, generic type: the bytes decide
    upload(name, path.read_bytes(), "application/octet-stream")
    doc = wait_for_result(name, timeout=120)
    assert doc["status"] == "done", doc
    assert doc["contentType"] == "video/webm"
    assert doc["video"]["framesAnalyzed"] == 6
    assert (doc["video"]["width"], doc["video"]["height"]) == (320, 180)


def test_animated_gif_is_a_video(tmp_path, object_name, upload, wait_for_result) -> None:
    path = media_factory.animated_gif(tmp_path / "a.gif", [500] * 8)
    name = object_name("anim.gif")
    upload(name, path.read_bytes(), "image/gif")
    doc = wait_for_result(name)
    assert doc["status"] == "done", doc
    assert doc["kind"] == "video" and doc["contentType"] == "image/gif"
    assert abs(doc["video"]["durationSec"] - 4.0) < 0.01
    assert doc["video"]["framesAnalyzed"] == 4


def test_audio_only_file_is_unsupported(tmp_path, object_name, upload, wait_for_result) -> None:
    path = media_factory.audio_only(tmp_path / "tone.m4a")
    name = object_name("tone.m4a")
    upload(name, path.read_bytes(), "audio/mp4")
    doc = wait_for_result(name)
    assert doc["status"] == "error"
    assert doc["error"]["code"] == "UNSUPPORTED_MEDIA"


def test_deleting_a_video_deletes_its_frames(
    object_name, upload, wait_for_result, firestore_db, storage_bucket
) -> None:
    import time

    name = object_name("gone.mp4")
    upload(name, CLIP.read_bytes(), "video/mp4")
    doc = wait_for_result(name, timeout=120)
    assert _frames(firestore_db, name, doc)
    storage_bucket.blob(name).delete()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _frames(firestore_db, name, doc):
        time.sleep(0.3)
    assert _frames(firestore_db, name, doc) == []
