"""``compare`` against the emulators: a candidate model over the uploads users made.

Real uploads through the Storage emulator get their results from the real trigger; then
the command (as an ML engineer runs it) compares a candidate file with those results:
the shipped file's own results are not compared with it, a re-exported copy with the same
weights agrees everywhere, a model that answers colours nowhere, and no run writes anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx

from tests.e2e.conftest import RESULTS_COLLECTION, run_command
from tests.model_factory import COLOUR_LABELS, colour_model
from tools.localstack import default_bucket, result_doc_id

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples" / "images"
SHIPPED = REPO / "functions" / "models" / "imagenet_mobilenet_v2.int8.onnx"


def _same_weights_other_file(path: Path) -> Path:
    """The shipped file with another doc string (so another ``sha``), arithmetic unchanged."""
    model = onnx.load(str(SHIPPED))
    model.doc_string = "the shipped weights, exported again"
    kept = [p for p in model.metadata_props if p.key != "sha"]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    onnx.save(model, str(path))
    return path


def _compare(*args: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    proc = run_command("compare", "--bucket", default_bucket().name, *args)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert lines and lines[-1].get("summary"), proc.stdout
    return lines[:-1], lines[-1]


def test_compare_a_candidate_with_the_results_users_see(
    object_name, upload, wait_for_result, firestore_db, tmp_path: Path
) -> None:
    names = [object_name("cat.png"), object_name("coffee.jpg")]
    upload(names[0], (SAMPLES / "chelsea-cat.png").read_bytes(), "image/png")
    upload(names[1], (SAMPLES / "coffee.jpg").read_bytes(), "image/jpeg")
    before = {name: wait_for_result(name) for name in names}
    under = names[0].rsplit("/", 1)[0] + "/"

    # The deployed file itself wrote these results: comparing it with them says nothing.
    changes, summary = _compare("--model", str(SHIPPED), "--under", under)
    assert changes == [] and summary["compared"] == 0
    assert summary["the candidate's own result"] == 2
    assert summary["against"] == "imagenet_mobilenet_v2"

    # Another file (another content hash) with the same weights: same pipeline, same labels.
    copy = _same_weights_other_file(tmp_path / "imagenet_mobilenet_v2.int8.onnx")
    changes, summary = _compare("--model", str(copy), "--under", under)
    assert changes == [] and summary["compared"] == 2 and summary["agreement"] == 1.0

    # A candidate that answers colours changes every top label, and says which.
    candidate = colour_model(tmp_path / "colours.int8.onnx", size=(32, 32))
    changes, summary = _compare(
        "--model", str(candidate), "--against", "imagenet_mobilenet_v2", "--under", under
    )
    assert [c["path"] for c in changes] == names
    assert all(c["outcome"] == "changed" and c["candidate"] in COLOUR_LABELS for c in changes)
    assert changes[0]["current"] == before[names[0]]["labels"][0]["label"]
    assert summary["agreement"] == 0.0 and summary["model"]["id"] == "colours"
    assert sum(item["count"] for item in summary["topChanges"]) == 2

    # Without --against, results of another model are not compared, only counted.
    _, summary = _compare("--model", str(candidate), "--under", under)
    assert summary["compared"] == 0 and summary["another model's result"] == 2

    # Nothing was written.
    for name in names:
        doc = firestore_db.collection(RESULTS_COLLECTION).document(result_doc_id(name)).get()
        assert doc.to_dict()["updatedAt"] == before[name]["updatedAt"]
