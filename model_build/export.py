"""``export``: best checkpoint -> ONNX (the contract) -> int8 QDQ, with parity checks.

Both files are written and kept: ``evaluate`` measures them side by side, and the report (the
model card) decides which one ships. Checks here run on real images of the run's validation
split (never the test set): PyTorch vs fp32 ONNX (max abs difference of probabilities), and
fp32 vs int8 (top-1 agreement and accuracy). ``--calibration auto`` quantizes with each
calibration method and keeps the one with the best validation accuracy.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from model_build import data as data_mod
from model_build.backbones import get_backbone
from model_build.contract import ModelMeta
from model_build.onnx_export import export_onnx, run_onnx, run_torch, session
from model_build.quantize import METHODS, pick_float_layers, quantize_int8, weight_sensitivity


def add_arguments(p: argparse.ArgumentParser) -> None:
    """CLI options of ``export``."""
    p.add_argument("--checkpoint", type=Path, required=True, help="best.pt written by train")
    p.add_argument("--name", required=True, help="model name (metadata), e.g. fashion-mnist-...")
    p.add_argument("--version", default="1.0.0", help="model version (metadata)")
    p.add_argument("--stem", default=None, help="file stem (default: name with _ for -)")
    p.add_argument(
        "--out-dir",
        type=Path,
        default=None,
        help="where the .fp32.onnx/.int8.onnx go (default: <run>/export)",
    )
    p.add_argument(
        "--calibration",
        default="auto",
        choices=("auto", *METHODS),
        help="activation calibration; auto = best validation accuracy",
    )
    p.add_argument("--calib-images", type=int, default=512, help="training images to calibrate")
    p.add_argument("--check-images", type=int, default=2000, help="validation images to check")
    p.add_argument(
        "--float-layers",
        type=int,
        default=0,
        help="keep up to N most quantization-sensitive layers in float",
    )
    p.add_argument("--float-budget-kb", type=int, default=200)
    p.add_argument(
        "--parity-tol",
        type=float,
        default=1e-4,
        help="max abs diff fp32 ONNX vs PyTorch allowed (probabilities)",
    )


def load_checkpoint(path: Path) -> tuple[torch.nn.Module, dict]:
    """Rebuild the trained network (no pretrained download needed: weights are all here)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    backbone = get_backbone(ckpt["backbone"])
    net = backbone.skeleton(len(ckpt["classes"]), ckpt["size"])
    net.load_state_dict(ckpt["net"])
    return net.eval(), ckpt


def _splits(cfg: dict) -> tuple[data_mod.Split, data_mod.Split]:
    """Re-carve exactly the run's train/val split (same data, seed and fraction)."""
    ds = data_mod.open_dataset(cfg["data"])
    train = ds.train
    if cfg.get("limit_per_class"):
        train = train.subset(
            data_mod.limit_per_class(train.labels, cfg["limit_per_class"], cfg["seed"])
        )
    if ds.val is not None and len(ds.val):
        return train, ds.val
    tr, va = data_mod.carve_validation(train.labels, cfg["val_fraction"], cfg["seed"])
    return train.subset(tr), train.subset(va)


def run(args: argparse.Namespace) -> int:
    """Export, quantize, check; writes ``export.json`` beside the files."""
    net, ckpt = load_checkpoint(args.checkpoint)
    cfg = ckpt["config"]
    backbone = get_backbone(ckpt["backbone"])
    size = (ckpt["size"], ckpt["size"])
    meta = ModelMeta(args.name, args.version, tuple(ckpt["classes"]), ckpt["policy"], size)
    stem = args.stem or args.name.replace("-", "_")
    out_dir = args.out_dir or args.checkpoint.parent / "export"
    out_dir.mkdir(parents=True, exist_ok=True)
    fp32 = out_dir / f"{stem}.fp32.onnx"
    int8 = out_dir / f"{stem}.int8.onnx"

    train, val = _splits(cfg)
    rng = np.random.default_rng(cfg["seed"] + 1)
    calib_idx = rng.permutation(len(train))[: args.calib_images]
    check_idx = rng.permutation(len(val))[: args.check_images]
    calib_x = data_mod.prepare_split(train.subset(calib_idx), size, ckpt["policy"])
    val_sub = val.subset(check_idx)
    check_x = data_mod.prepare_split(val_sub, size, ckpt["policy"])
    y = val_sub.labels

    t0 = time.time()
    export_onnx(net, meta, backbone.mean, backbone.std, fp32)
    ref = run_torch(net, backbone.mean, backbone.std, check_x)
    p32 = run_onnx(session(fp32), check_x)
    parity = float(np.abs(p32 - ref).max())
    keep: list[str] = []
    if args.float_layers:
        ranked = weight_sensitivity(fp32, calib_x[:128])
        keep = pick_float_layers(ranked, args.float_layers, args.float_budget_kb * 1000)
    methods = list(METHODS) if args.calibration == "auto" else [args.calibration]
    candidates = {}
    for method in methods:
        path = out_dir / f"{stem}.int8.{method}.onnx"
        quantize_int8(fp32, path, calib_x, method=method, keep_float=keep)
        p8 = run_onnx(session(path), check_x)
        candidates[method] = {
            "val_top1": float((p8.argmax(1) == y).mean()),
            "top1_agreement_with_fp32": float((p8.argmax(1) == p32.argmax(1)).mean()),
            "max_abs_diff_vs_fp32": float(np.abs(p8 - p32).max()),
            "bytes": path.stat().st_size,
        }
        print(
            f"int8 ({method}): val top-1 {candidates[method]['val_top1']:.4f}, "
            f"agreement {candidates[method]['top1_agreement_with_fp32']:.4f}"
        )
    chosen = max(
        candidates,
        key=lambda m: (candidates[m]["val_top1"], candidates[m]["top1_agreement_with_fp32"]),
    )
    shutil.copyfile(out_dir / f"{stem}.int8.{chosen}.onnx", int8)
    for method in methods:
        (out_dir / f"{stem}.int8.{method}.onnx").unlink()
    report = {
        "checkpoint": str(args.checkpoint),
        "name": args.name,
        "version": args.version,
        "fp32": str(fp32),
        "int8": str(int8),
        "fp32_bytes": fp32.stat().st_size,
        "int8_bytes": int8.stat().st_size,
        "check_images": len(check_x),
        "check_split": "validation (carved from train; not the test set)",
        "calibration_images": len(calib_x),
        "parity_max_abs_diff_fp32_vs_torch": parity,
        "parity_top1_agreement_fp32_vs_torch": float((p32.argmax(1) == ref.argmax(1)).mean()),
        "fp32_val_top1": float((p32.argmax(1) == y).mean()),
        "torch_val_top1": float((ref.argmax(1) == y).mean()),
        "calibration": chosen,
        "calibration_candidates": candidates,
        "float_layers": keep,
        "seconds": time.time() - t0,
    }
    (out_dir / "export.json").write_text(json.dumps(report, indent=2))
    print(
        json.dumps(
            {
                k: report[k]
                for k in (
                    "parity_max_abs_diff_fp32_vs_torch",
                    "fp32_val_top1",
                    "calibration",
                    "fp32_bytes",
                    "int8_bytes",
                )
            }
        )
    )
    if parity > args.parity_tol:
        print(f"FAILED: fp32 ONNX differs from PyTorch by {parity:.2e} > {args.parity_tol}")
        return 1
    return 0
