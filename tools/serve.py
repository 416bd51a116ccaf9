"""`make serve`: the local emulator stack, left running for your own clients until Ctrl-C.

Prints where each emulator listens, how to upload (curl against the Storage
emulator's Firebase API, or google-cloud-storage) and how to read the result
documents (Firestore emulator, collection ``mediaResults``). Ctrl-C (or SIGTERM)
stops everything, including the Python function workers.

While it runs, tests and the demo can share it from another terminal with
``MC_STACK_RUNNING=1 make test-e2e`` / ``MC_STACK_RUNNING=1 make demo``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tools.localstack import (
    DEFAULT_BUCKET,
    HOST,
    PORTS,
    PROJECT_ID,
    REPO_ROOT,
    LocalStack,
    StackError,
    wait_for_interrupt,
)


def instructions(stack: LocalStack) -> str:
    """The text shown once the stack is ready (kept in one place so it stays in sync)."""
    storage = f"http://{HOST}:{PORTS['storage']}"
    auth = f"http://{HOST}:{PORTS['auth']}"
    sample = "samples/images/chelsea-cat.png"
    mode = "Google's Firestore emulator: firestore.rules enforced; Storage rules runtime: " + (
        "Google's (storage.rules enforced)"
        if stack.real_storage_rules
        else "offline stand-in (storage.rules NOT enforced)"
    )
    schedule = (
        "\n  # or the scheduled function itself, as Cloud Scheduler would run it:\n"
        f"  curl -X POST -H 'Content-Type: application/json' -d '{{}}' \\\n"
        f"    http://{HOST}:{PORTS['functions']}/{PROJECT_ID}/us-central1/recover_interrupted-0"
        if "recover_interrupted" in stack.functions and "pubsub" in stack.emulators
        else ""
    )
    # What the commands run outside the emulators (backfill, recover) need to reach them.
    local_env = (
        f"GOOGLE_CLOUD_PROJECT={PROJECT_ID} FIRESTORE_EMULATOR_HOST={HOST}:{PORTS['firestore']}"
        f" \\\n    STORAGE_EMULATOR_HOST={storage}"
    )
    web = (
        f"\n  Web app    http://{HOST}:{PORTS['hosting']}/   (web/dist; `make web` rebuilds it)"
        if "hosting" in stack.emulators
        else "\n  Web app    not served: build it with `make web`, then restart"
    )
    return f"""
Local Firebase stack for project {PROJECT_ID} ({mode}){web}
  Storage    {storage}   (bucket {DEFAULT_BUCKET})
  Firestore  http://{HOST}:{PORTS["firestore"]}   (collection mediaResults)
  Functions  http://{HOST}:{PORTS["functions"]}
  Auth       {auth}
  Hub        http://{HOST}:{PORTS["hub"]}/emulators
  Functions discovered: {", ".join(stack.functions)}
  Logs: {stack.log_dir}/firebase.log

Upload (anything under uploads/<uid>/ is classified; the result document ID is
encodeURIComponent(object name); run these from the repository root):

  curl --fail-with-body -X POST --data-binary @{sample} -H "Content-Type: image/png" \\
    "{storage}/v0/b/{DEFAULT_BUCKET}/o?name=uploads%2Fme%2Fcat.png"

  # where storage.rules are enforced (MC_REAL_EMULATORS=1), sign in first and add
  #   -H "Authorization: Bearer $ID_TOKEN", where ID_TOKEN comes from
  curl -sS -X POST -H "Content-Type: application/json" \\
    -d '{{"email":"me@example.com","password":"secret123","returnSecureToken":true}}' \\
    "{auth}/identitytoolkit.googleapis.com/v1/accounts:signUp?key=any"

  # Python (google-cloud-storage): run it with the dev environment's Python,
  # .venv/bin/python (made by `make setup`), which has these packages
  from google.auth.credentials import AnonymousCredentials
  from google.cloud import storage
  client = storage.Client(project="{PROJECT_ID}", credentials=AnonymousCredentials(),
                          client_options={{"api_endpoint": "{storage}"}})
  client.bucket("{DEFAULT_BUCKET}").blob("uploads/me/cat.png").upload_from_filename(
      "{sample}", content_type="image/png")

Read the result (Python, google-cloud-firestore; run it with .venv/bin/python):

  import os, urllib.parse
  os.environ["FIRESTORE_EMULATOR_HOST"] = "{HOST}:{PORTS["firestore"]}"
  from google.auth.credentials import AnonymousCredentials
  from google.cloud import firestore
  db = firestore.Client(project="{PROJECT_ID}", credentials=AnonymousCredentials())
  doc_id = urllib.parse.quote("uploads/me/cat.png", safe="!~*'()")
  print(db.collection("mediaResults").document(doc_id).get().to_dict())

Backfill (objects without a current result, e.g. uploaded while the stack was down):

  (cd functions && {local_env} \\
    venv/bin/python -m media_classifier backfill --bucket {DEFAULT_BUCKET} --dry-run)

Recovery of uploads whose worker died (deployed: the scheduled function
recover_interrupted, every 10 minutes; the emulator runs no schedules):

  (cd functions && {local_env} \\
    venv/bin/python -m media_classifier recover){schedule}

Apps: connectStorageEmulator(storage, "{HOST}", {PORTS["storage"]}),
connectAuthEmulator(auth, "{auth}"), connectFirestoreEmulator(db, "{HOST}", {PORTS["firestore"]});
Android emulators reach this machine as 10.0.2.2. Firestore security rules apply to
the client SDKs (the Admin SDK and the Python snippet above bypass them).

Ctrl-C stops the stack.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project-dir", type=Path, default=REPO_ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        with LocalStack(project_dir=args.project_dir, purpose="serve") as stack:
            print(instructions(stack), flush=True)
            wait_for_interrupt(stack)  # raises StackError if an emulator dies
            print("stopping the local stack ...", flush=True)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
