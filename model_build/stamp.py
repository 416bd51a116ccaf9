"""Stamp ONNX files with their content hash (``metadata_props["sha"]``), changing nothing else.

Why: the functions tell model files apart by this hash (``media_classifier.inference.identity``):
a retrained file gets a new one even when its name and version stay. ``export`` and
``export-pretrained`` stamp what they write; this command stamps a file made otherwise (or
before the hash existed). Only the metadata entry is added or replaced: every other byte of
the file stays as it was, so its answers cannot change. ``--check`` only verifies.

    python -m model_build stamp functions/models/*.onnx
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from types import ModuleType


def _identity() -> ModuleType:
    """The functions' own hash code (one implementation: what serving checks is what we write)."""
    from media_classifier.inference import identity as model_identity

    return model_identity


def stamp(path: Path) -> str:
    """Write the file's content hash into its metadata (atomically); returns the hash."""
    model_identity = _identity()
    data = path.read_bytes()
    out = model_identity.stamped(data)
    if out != data:
        tmp = path.with_name(path.name + ".stamping")
        tmp.write_bytes(out)
        os.replace(tmp, path)
    return model_identity.content_sha(out)


def check(path: Path) -> str | None:
    """The hash if the file carries its own content hash, else None."""
    model_identity = _identity()
    data = path.read_bytes()
    sha = model_identity.content_sha(data)
    return sha if model_identity.metadata(data).get(model_identity.SHA_KEY) == sha else None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", type=Path, help="ONNX model files")
    p.add_argument("--check", action="store_true", help="only verify; exit 1 if any is not")


def run(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.files:
        if args.check:
            sha = check(path)
            failed += sha is None
            print(f"{path}: {'sha ' + sha if sha else 'NOT stamped with its content hash'}")
        else:
            print(f"{path}: sha {stamp(path)}")
    return 1 if failed else 0
