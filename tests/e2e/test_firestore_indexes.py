"""firestore.indexes.json as ``firebase deploy --only firestore:indexes`` reads it.

Why through firebase-tools' own code (the pinned one in tools/emulators): the deploy
validates the file (``FirestoreApi.validateSpec``) before it calls the Firestore Admin
API, and it is stricter than some examples in circulation: firebase-tools' own README
once showed ``"ttl": "true"``, a string, which the deploy refuses ("must be of type
boolean"), and a field override without an ``indexes`` array is refused too. Nothing
else can check the file offline: the Firestore emulator applies neither composite
indexes nor TTL policies. No stack needed (about a second).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
FIREBASE_TOOLS = REPO / "tools" / "emulators" / "node_modules" / "firebase-tools" / "lib"

# What `firebase deploy` does with the file before any network call: load it (comments
# allowed), upgrade an old-format spec, validate. Prints the field overrides it would deploy.
VALIDATE = """
const path = require("node:path");
const [lib, file] = process.argv.slice(1);
const { loadCJSON } = require(path.join(lib, "loadCJSON"));
const { FirestoreApi } = require(path.join(lib, "firestore", "api"));
const raw = loadCJSON(file);
const api = new FirestoreApi();
const spec = api.upgradeOldSpec({ indexes: raw.indexes, fieldOverrides: raw.fieldOverrides || [] });
api.validateSpec(spec);
console.log(JSON.stringify(spec));
"""


def deploy_validation(file: Path) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    if node is None or not FIREBASE_TOOLS.is_dir():
        pytest.fail("needs node and firebase-tools in tools/emulators (`make emulators`)")
    return subprocess.run(
        [node, "-e", VALIDATE, str(FIREBASE_TOOLS), str(file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def accepted(file: Path) -> dict[str, Any]:
    proc = deploy_validation(file)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_the_deploy_accepts_the_index_file_with_the_ttl_policy_on_refresh_batches() -> None:
    spec = accepted(REPO / "firestore.indexes.json")
    # The history query of the web app: where(owner) + orderBy(updatedAt desc).
    assert [f["fieldPath"] for f in spec["indexes"][0]["fields"]] == ["owner", "updatedAt"]
    # Refresh batch documents (mediaRefreshRuns/{run}/batches/{id}) expire at `expireAt`;
    # the field is exempt from single-field indexes (nothing queries it, and indexing a
    # timestamp that grows with time is what makes write hotspots).
    [ttl] = [o for o in spec["fieldOverrides"] if o.get("ttl")]
    assert ttl == {
        "collectionGroup": "batches",
        "fieldPath": "expireAt",
        "ttl": True,
        "indexes": [],
    }


@pytest.mark.parametrize(
    ("override", "refusal"),
    [
        ({"ttl": "true", "indexes": []}, 'Property "ttl" must be of type boolean'),
        ({"ttl": True}, 'Must contain "indexes"'),
    ],
)
def test_the_same_validation_refuses_a_ttl_policy_written_wrongly(
    tmp_path: Path, override: dict[str, Any], refusal: str
) -> None:
    spec = json.loads((REPO / "firestore.indexes.json").read_text())
    spec["fieldOverrides"] = [{"collectionGroup": "batches", "fieldPath": "expireAt", **override}]
    wrong = tmp_path / "firestore.indexes.json"
    wrong.write_text(json.dumps(spec))
    proc = deploy_validation(wrong)
    assert proc.returncode != 0 and refusal in proc.stderr, proc.stderr[-2000:]
