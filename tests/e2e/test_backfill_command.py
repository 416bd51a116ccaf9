"""The backfill command against the emulators: lost results, old models, retryable errors.

The command runs as a user runs it (``python -m media_classifier backfill`` in the
functions' interpreter), on objects uploaded through the Storage emulator whose results
the test then damages the ways production does: a result never written (lost event),
one written by an older model, one written by an older file of the same model id and
version (another content hash), one that failed with a retryable error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.e2e.conftest import RESULTS_COLLECTION, run_command
from tools.localstack import default_bucket, result_doc_id

REPO = Path(__file__).resolve().parents[2]
FUNCTIONS = REPO / "functions"
SAMPLES = REPO / "samples" / "images"
CAT = {"Egyptian cat", "tabby", "tiger cat"}
COFFEE = {"espresso", "cup", "coffee mug"}


def _backfill(under: str, *args: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run the command; (per-object lines, summary line) from its stdout."""
    bucket = default_bucket().name
    proc = run_command("backfill", "--bucket", bucket, "--under", under, "--rate", "0", *args)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert lines and lines[-1].get("summary"), proc.stdout
    return lines[:-1], lines[-1]


def test_backfill_repairs_lost_outdated_and_failed_results(
    object_name, upload, wait_for_result, firestore_db, tmp_path: Path
) -> None:
    names = {
        "lost": object_name("a-lost.jpg"),
        "old-model": object_name("b-old-model.png"),
        "old-file": object_name("b2-old-file.png"),
        "unsupported": object_name("c-notes.txt"),
        "timeout": object_name("d-timeout.jpg"),
        "fine": object_name("e-fine.jpg"),
    }
    under = names["lost"].rsplit("/", 1)[0] + "/"
    coffee = (SAMPLES / "coffee.jpg").read_bytes()
    upload(names["lost"], coffee, "image/jpeg")
    upload(names["old-model"], (SAMPLES / "chelsea-cat.png").read_bytes(), "image/png")
    upload(names["old-file"], (SAMPLES / "chelsea-cat.png").read_bytes(), "image/png")
    upload(names["unsupported"], b"not pixels\n", "text/plain")
    upload(names["timeout"], coffee, "image/jpeg")
    upload(names["fine"], coffee, "image/jpeg")
    first = {key: wait_for_result(name) for key, name in names.items()}
    assert first["unsupported"]["error"]["code"] == "UNSUPPORTED_MEDIA"
    current_version = first["fine"]["model"]["version"]
    current_sha = first["fine"]["model"]["sha"]
    assert len(current_sha) == 12 and first["old-file"]["model"]["sha"] == current_sha

    def ref(key: str) -> Any:
        return firestore_db.collection(RESULTS_COLLECTION).document(result_doc_id(names[key]))

    ref("lost").delete()
    ref("old-model").update({"model": {**first["old-model"]["model"], "version": "0.0.1-old"}})
    # Retrained and re-exported: same id, same version, another file.
    ref("old-file").update({"model": {**first["old-file"]["model"], "sha": "0123456789ab"}})
    ref("timeout").update(
        {"status": "error", "labels": [], "error": {"code": "TIMEOUT", "message": "slow"}}
    )

    # A dry run names the four that need work and writes nothing.
    planned, summary = _backfill(under, "--dry-run", "--read-batch", "2")  # 3 reads
    assert [p["path"] for p in planned] == [
        names["lost"],
        names["old-model"],
        names["old-file"],
        names["timeout"],
    ]
    assert "model changed" in planned[1]["reason"] and "TIMEOUT" in planned[3]["reason"]
    assert (
        f"sha 0123456789ab -> imagenet_mobilenet_v2 {current_version} sha {current_sha}"
        in (planned[2]["reason"])
    )
    assert summary["scanned"] == 6 and summary["up to date"] == 2 and summary["complete"]
    assert not ref("lost").get().exists

    # Bounded: two now, and the state file remembers where it stopped...
    state = tmp_path / "backfill.json"
    done, summary = _backfill(under, "--limit", "2", "--state", str(state))
    assert [d["path"] for d in done] == [names["lost"], names["old-model"]]
    assert summary["classified"] == 2 and not summary["complete"]
    assert json.loads(state.read_text())["after"] == names["old-model"]

    # ...so the next run resumes after it and finishes the scope.
    done, summary = _backfill(under, "--state", str(state))
    assert [d["path"] for d in done] == [names["old-file"], names["timeout"]]
    assert summary["complete"] and summary["scanned"] == 4 and not state.exists()

    after = {key: ref(key).get().to_dict() for key in names}
    assert after["lost"]["status"] == "done" and after["lost"]["labels"][0]["label"] in COFFEE
    assert after["lost"]["owner"] == names["lost"].split("/")[1]
    assert after["old-model"]["model"]["version"] == current_version
    assert after["old-model"]["labels"][0]["label"] in CAT
    assert after["old-file"]["model"]["sha"] == current_sha
    assert after["old-file"]["updatedAt"] > first["old-file"]["updatedAt"]
    assert after["timeout"]["status"] == "done" and after["timeout"]["error"] is None
    assert after["unsupported"]["error"]["code"] == "UNSUPPORTED_MEDIA"  # not retried
    assert after["fine"]["updatedAt"] == first["fine"]["updatedAt"]  # untouched

    # Nothing left: a further run classifies nothing.
    done, summary = _backfill(under, "--read-batch", "3")
    assert done == [] and summary["up to date"] == 6 and summary.get("classified", 0) == 0

    # Errors about the bytes are redone only when named (say, after raising a limit).
    planned, _ = _backfill(under, "--dry-run", "--errors", "unsupported_media")
    assert [(p["path"], p["reason"]) for p in planned] == [
        (names["unsupported"], "error UNSUPPORTED_MEDIA (--errors)")
    ]
