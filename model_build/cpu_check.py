"""``cpu-check``: does this CPU's int8 execution give the answers the model file means?

ONNX Runtime runs an int8 QDQ file two ways. Optimized (what serving does) fuses each
DequantizeLinear -> Conv -> QuantizeLinear into an integer kernel chosen for the CPU at run time.
The reference (graph optimization off) runs the ops as written: layers in float between explicit
rounding steps, which no CPU-specific integer kernel touches. A CPU whose kernels lose precision
(U8S8 on AVX2: ``vpmaddubsw`` saturates) shows up as disagreement between the two.

The check runs one model file over real images through the functions' own decode/resize code:
the Fashion-MNIST test images for a Fashion model, the sample photos and video frames of
``model_build.samples`` otherwise. It reports, for the CPU it ran on (``model_build.cpu``),
top-1 of both executions where labels exist, their top-1 agreement, the agreement on decisive
images, the largest probability difference and the batch-1 latency, and records the row in
``<model>.cpus.json`` beside the file; ``--card`` re-renders the model card, whose per-CPU
table comes from it.

Why a noise bound: even with exact integer kernels the two executions are not bit-equal
(float sums round differently from integer sums; a one-step difference next to a rounding
boundary grows through the layers). Measured on CPUs with exact kernels (AVX-512 VNNI, and
AVX2 with the U8U8 path), no probability moved by more than 0.12 between them; saturating U8S8
kernels on AVX2 moved them by up to 0.56. So the check holds two things against
``NOISE_BOUND``: the largest probability difference, and the top-1 agreement on decisive images,
those whose reference top-1 leads its runner-up by more than the bound. Near-ties below it can
flip on any CPU (2 of 105 sample photos and frames on an AVX-512 VNNI CPU); the raw agreement
is reported beside it.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from model_build import cpu
from model_build.latency import compare_latency
from model_build.serving import REPO_ROOT, png_bytes, prepare_image

#: The largest probability difference between optimized and reference execution that exact
#: int8 kernels produce (0.12 measured, see the module docstring); an image is decisive when
#: its reference top-1 leads the runner-up by more than this.
NOISE_BOUND = 0.15
#: The same for a file whose dense layers take 7-bit activations (``narrow-inputs``): a step
#: there is twice as large, and so is a one-step difference (0.22 measured on Fashion-MNIST).
NOISE_BOUND_7BIT = 0.30
#: The goal: optimized and reference agree on at least this share of the decisive images.
GOAL_AGREEMENT = 0.995
FASHION_DIR = REPO_ROOT / "data" / "usr" / "share" / "datasets" / "fashion-mnist"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """CLI options of ``cpu-check``."""
    p.add_argument("--model", type=Path, required=True, help="the int8 ONNX file")
    p.add_argument("--limit", type=int, default=0, help="first N test images only (Fashion)")
    p.add_argument("--frames", type=int, default=32, help="frames per sample clip (ImageNet)")
    p.add_argument(
        "--inputs", type=Path, default=None, help="prepared inputs (.npz from --save-inputs)"
    )
    p.add_argument("--save-inputs", type=Path, default=None, help="write the prepared inputs")
    p.add_argument("--record", action="store_true", help="add the row to <model>.cpus.json")
    p.add_argument("--card", action="store_true", help="re-render the model card (and its table)")
    p.add_argument("--note", default="", help="recorded with the row (e.g. the machine's role)")


def noise_bound(path: Path) -> float:
    """The bound for this file: ``NOISE_BOUND``, or ``NOISE_BOUND_7BIT`` for a narrowed one."""
    from media_classifier.inference import identity
    from media_classifier.inference.model import DENSE_INPUT_BITS_KEY

    narrowed = identity.metadata(path.read_bytes()).get(DENSE_INPUT_BITS_KEY) == "7"
    return NOISE_BOUND_7BIT if narrowed else NOISE_BOUND


def agreement(
    optimized: np.ndarray, reference: np.ndarray, bound: float = NOISE_BOUND
) -> dict[str, Any]:
    """Top-1 agreement of two ``[N, C]`` probability arrays, overall and on decisive images
    (the reference's top-1 ahead of its runner-up by more than ``bound``), and how many rows
    are equal to the bit."""
    top_o, top_r = optimized.argmax(1), reference.argmax(1)
    ranked = np.sort(reference, axis=1)
    decisive = ranked[:, -1] - ranked[:, -2] > bound
    same = top_o == top_r
    return {
        "noise_bound": bound,
        "images": len(same),
        "top1_agreement": float(same.mean()),
        "decisive_images": int(decisive.sum()),
        "decisive_agreement": float(same[decisive].mean()) if decisive.any() else 1.0,
        "max_abs_diff": float(np.abs(optimized - reference).max()),
        # bit for bit: what a file with dyadic scales promises (``model_build.dyadic``)
        "identical_images": int((optimized == reference).all(1).sum()),
    }


def fashion_inputs(size: tuple[int, int], policy: str, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST test images as PNG bytes through the serving code, and their labels."""
    raw = gzip.decompress((FASHION_DIR / "t10k-images-idx3-ubyte.gz").read_bytes())
    images = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)
    raw_labels = gzip.decompress((FASHION_DIR / "t10k-labels-idx1-ubyte.gz").read_bytes())
    labels = np.frombuffer(raw_labels, np.uint8, offset=8)
    if limit:
        images, labels = images[:limit], labels[:limit]
    x = np.stack([prepare_image(png_bytes(a), size, policy) for a in images])
    return x, labels.astype(np.int64)


def sample_inputs(size: tuple[int, int], policy: str, frames: int) -> np.ndarray:
    """The sample photos and evenly spread frames of the sample clips (``model_build.samples``)."""
    from model_build import samples

    items = samples.photos() + samples.video_frames(frames)
    return np.stack([prepare_image(s.data, size, policy) for s in items])


def _probs(model: Any, x: np.ndarray) -> np.ndarray:
    return np.concatenate([model.predict(x[i : i + 64]) for i in range(0, len(x), 64)])


def measure(path: Path, x: np.ndarray, labels: np.ndarray | None) -> dict[str, Any]:
    """Both executions over ``x``: agreement, top-1 where labels exist, latency, the CPU."""
    from media_classifier.inference.model import Model

    optimized = Model.load(path)
    reference = Model.load(path, reference=True)
    t0 = time.perf_counter()
    p_opt = _probs(optimized, x)
    seconds = time.perf_counter() - t0
    p_ref = _probs(reference, x)
    here = cpu.describe() | {"serving_int8_path": cpu.int8_path(exact=optimized.exact_int8)}
    bound = noise_bound(path)
    row: dict[str, Any] = {"cpu": here, "model": path.name} | agreement(p_opt, p_ref, bound)
    if labels is not None:
        row["top1_optimized"] = float((p_opt.argmax(1) == labels).mean())
        row["top1_reference"] = float((p_ref.argmax(1) == labels).mean())
    row["optimized_seconds"] = seconds
    if not row["cpu"]["emulated"]:
        row["latency_ms_1thread"] = compare_latency([path], [x[:20]], threads=1)[0]
    return row


def record(path: Path, row: dict[str, Any]) -> Path:
    """Keep one row per CPU kind and name in ``<model>.cpus.json`` (a rerun replaces its row)."""
    out = path.with_name(path.name.split(".", 1)[0] + ".cpus.json")
    rows = json.loads(out.read_text()) if out.is_file() else []
    key = (row["cpu"]["name"], row["cpu"]["int8_kernels"])
    rows = [r for r in rows if (r["cpu"]["name"], r["cpu"]["int8_kernels"]) != key] + [row]
    out.write_text(json.dumps(rows, indent=1) + "\n")
    return out


def run(args: argparse.Namespace) -> int:
    """Measure on this CPU, print the row, optionally record it and re-render the card."""
    from media_classifier.inference.model import Model

    model = Model.load(args.model, threads=1)
    labels = None
    if args.inputs:
        data = np.load(args.inputs)
        x, labels = data["x"], (data["y"] if "y" in data.files else None)
    elif "fashion" in model.name:
        x, labels = fashion_inputs(model.input_size, model.resize_policy, args.limit)
    else:
        x = sample_inputs(model.input_size, model.resize_policy, args.frames)
    if args.save_inputs:
        extra = {} if labels is None else {"y": labels}
        np.savez_compressed(args.save_inputs, x=x, **extra)
    row = measure(args.model, x, labels)
    if args.note:
        row["note"] = args.note
    # Printed and recorded even where the card cannot be imported (it needs Jinja2 and torch,
    # which an emulated interpreter may lack): an emulated run takes many minutes. Imported
    # here because the card module reads this module's NOISE_BOUND.
    print(json.dumps(row, indent=1), flush=True)
    try:
        from model_build import card
    except ImportError as e:  # an interpreter with the serving stack only (emulated ARM64)
        if args.card:
            raise
        print(f"no table: {e}")
    else:
        print(card.cpu_table([row]))
    if args.record:
        out = record(args.model, row)
        print(f"recorded in {out}")
    if args.card:
        print(f"card {card.write(args.model)}")
    ok = row["decisive_agreement"] >= GOAL_AGREEMENT and row["max_abs_diff"] <= row["noise_bound"]
    return 0 if ok else 1
