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
import onnx

from media_classifier.inference.model import INT8_SCALES_KEY, U8S8_PAIRS_KEY
from model_build import card, exact_float, extra_images, samples
from model_build.backbones import get_backbone
from model_build.contract import ModelMeta
from model_build.distill import PACK_SIZE, student_model, write_pack
from model_build.dyadic import dyadic_file
from model_build.latency import compare_latency
from model_build.narrow import NARROW_KEY, dense_input_quantizers, narrow_file
from model_build.onnx_export import export_onnx, export_serving, run_onnx, run_torch, session
from model_build.pair_order import order_file
from model_build.qsim import activation_params, lift, representable
from model_build.quantize import (
    conv_prefix,
    mean_kl,
    pick_float_layers,
    quantize_int8,
    weight_sensitivity,
)
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
    p.add_argument("--version", default=VERSION, help="the file's version (metadata)")
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
    p.add_argument(
        "--no-card", action="store_true", help="do not render the model card (its data is written)"
    )
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
    meta = ModelMeta(NAME, args.version, _labels(), "center_crop", SIZE)
    prepare_name = "media_classifier.media.images.prepare_image"

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
        "float_prefix": args.float_prefix,
        "float_layers_are_prefix": list(keep) == list(prefix),
        "frames_per_clip": args.frames,
        "goal_agreement": MIN_AGREEMENT,
        "confident_p": CONFIDENT,
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
    labels = meta.labels
    report["check_rows"] = [
        [s.name, labels[a], float(ref[i, a]), labels[b], float(p8[i, b])]
        for i, (s, a, b) in enumerate(zip(check, top_ref, top8, strict=True))
    ]
    (args.fp32_out.parent / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    # The card's data beside the shipped file; the card is rendered from it (``card``).
    data = card.sibling(args.out, ".eval.json")
    data.write_text(json.dumps({"export_pretrained": report}, indent=1) + "\n")
    if not args.no_card:
        print(f"card {card.write(args.out)}")
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
    dense = [q.input[0] for q, _ in dense_input_quantizers(onnx.load(str(base)))]
    write_pack(args.distill_pack, sources, calib_x, activation_params(base), prefix, dense)
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
        "holdout_every": extra_images.HOLDOUT_EVERY,
        "agreement": float((top8 == top_ref).mean()),
        "confident": _share(top8 == top_ref, list(confident)),
        "flips": [
            [name, labels[a], float(ref[i, a]), labels[b]]
            for i, ((name, _), a, b) in enumerate(zip(photos, top_ref, top8, strict=True))
            if a != b
        ],
    }


def _dense_outputs(path: Path, narrowed: list[str]) -> list[str]:
    """The QuantizeLinear outputs of the ``narrowed`` activation tensors in ``path``."""
    wanted, model = set(narrowed), onnx.load(str(path))
    return sorted(q.output[0] for q, _ in dense_input_quantizers(model) if q.input[0] in wanted)


def _comparable(
    current: Path, narrowed: list[str], dyadic: bool = False, images: np.ndarray | None = None
) -> Path:
    """The file a student is compared with: the file in place, made exact the way the student
    was trained to be. A 7-bit student: made exact on AVX2 (an 8-bit file is not what it could
    replace without losing the AVX2 speed); a dyadic one: given dyadic scales too (a file
    whose optimized execution differs from its reference is not what it could replace without
    losing that)."""
    meta = {p.key: p.value for p in onnx.load(str(current)).metadata_props}
    exact_avx2 = not narrowed or NARROW_KEY in meta or U8S8_PAIRS_KEY in meta
    exact_reference = not dyadic or INT8_SCALES_KEY in meta
    if exact_avx2 and exact_reference:
        return current
    out = current.with_name(f"{current.stem}.comparable.onnx")
    prefix = exact_float.prefix_plan(onnx.load(str(current)), images) if dyadic else None
    if exact_avx2:
        dyadic_file(current, out, None, strict=False, prefix=prefix)
        return out
    # A yardstick only: a post-training file may keep layers that no order makes safe (an int8
    # stem), which does not change its divergence on this CPU.
    make_exact(current, out, narrowed, strict=False, dyadic=dyadic, prefix=prefix)
    return out


def make_exact(
    src: Path,
    out: Path,
    narrowed: list[str],
    strict: bool = True,
    dyadic: bool = False,
    prefix: exact_float.Plan | None = None,
) -> list[str]:
    """``narrow-inputs`` on the ``narrowed`` dense inputs; ``dyadic-scales`` (``dyadic``; a
    float prefix made exact under the ``prefix`` plan, ``exact_float``); ``pair-order`` when
    others remain (last: it orders the weights the file will hold).

    Returns the QuantizeLinear outputs narrowed; raises (``strict``) if the file could still
    saturate U8S8 kernels."""
    dense = {q.input[0] for q, _ in dense_input_quantizers(onnx.load(str(src)))}
    only = None if dense <= set(narrowed) else set(narrowed)
    done = narrow_file(src, out, None, only)
    if dyadic:
        counts = dyadic_file(out, out, None, strict, prefix)
        if strict and (counts["activation_scales"] or counts["addition_scales"]):
            raise RuntimeError(f"{out}: activation scales other than the student trained with")
    if only is not None:
        unsafe = order_file(out, out, None).unsafe
        if unsafe and strict:
            raise RuntimeError(f"{out}: pair-order left layers that can saturate: {unsafe}")
    return done


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
    kl = mean_kl(ref, p)
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
    lifted = list(ckpt.get("lifted", []))
    lift(student, lifted)  # the ReLU6 outputs it trained clipped at 8, not 6
    fp32 = export_serving(student, meta, args.fp32_out.with_name("student.fp32.onnx"))
    path = args.out.with_name(f"{args.out.stem}.distilled.onnx")
    floats = list(ckpt.get("float_nodes", []))
    dyadic = bool(ckpt.get("config", {}).get("dyadic"))
    if dyadic and not floats:
        # The int8 stem it trained as, kept in float: ``dyadic-scales`` gives it int8-valued
        # weights, so it computes the same numbers where no AVX2 pairing can saturate.
        floats = conv_prefix(fp32, 1)
    # Learned scales (distill --scale-lr) as the file can hold them; a no-op for fixed ones.
    narrowed = list(ckpt.get("narrowed", []))
    params = representable(ckpt["params"], ckpt.get("calibrated_params"), narrowed, lifted=lifted)
    quantize_int8(fp32, path, calib_x, keep_float=floats, activation_overrides=params)
    written = activation_params(path)
    if dyadic:  # a float stem reads the pixels unquantized (the padding is rounded instead)
        params = {t: v for t, v in params.items() if "Concat" not in t}
    if written.keys() != params.keys() or any(
        abs(written[t][0] / s - 1) > 1e-6 or written[t][1] != zp for t, (s, zp) in params.items()
    ):
        raise RuntimeError("the student's int8 file does not use the scales it was trained with")
    # Trained for 7-bit dense inputs: the file gets them (narrow-inputs), the very same ones;
    # trained with dyadic scales: the file gets them (its activation scales already are), and
    # a float prefix is made exact on the images it trained on (``exact_float``).
    held = np.asarray(ckpt.get("holdout", []), dtype=np.int64)
    trained_x = np.delete(calib_x, held, axis=0)
    prefix = ckpt.get("exact_prefix") or (
        exact_float.prefix_plan(onnx.load(str(path)), trained_x) if dyadic else None
    )
    if narrowed:
        done = make_exact(path, path, narrowed, dyadic=dyadic, prefix=prefix)
        if sorted(done) != _dense_outputs(path, narrowed):
            raise RuntimeError("the student trained with other dense inputs than its file has")
    elif dyadic:
        dyadic_file(path, path, None, prefix=prefix)
    ref = run_torch(net, backbone.mean, backbone.std, calib_x)
    score, kl = _calib_score(path, calib_x, ref)
    cfg = ckpt.get("config", {})
    method = "distilled"
    # What the card says of the student: its recipe (its checkpoint's name is a build detail).
    recipe = {"lr": cfg.get("lr"), "mix": cfg.get("mix"), "train": cfg.get("train", "all")}
    recipe |= {
        "scale_lr": cfg.get("scale_lr") if _given(cfg, "scale_lr") else None,
        "paste": cfg.get("paste") if _given(cfg, "extra") else None,
        "ema": cfg.get("ema") if _given(cfg, "ema") else None,
    }
    trial = {
        "method": method,
        "student": recipe,
        "float_layers": len(floats),
        "agreement_confident": score[1],
        "agreement_all": score[0],
        "kl": kl,
    }
    if len(held):
        mine = _calib_score(path, calib_x[held], ref[held])[1]
        other = _comparable(args.out, narrowed, dyadic, trained_x)
        current = _calib_score(other, calib_x[held], ref[held])[1]
        if other != args.out:
            other.unlink()
        trial |= {"holdout_images": len(held), "holdout_kl": mine, "holdout_kl_current": current}
        better = mine < current
    else:
        best = max((t["agreement_all"], t["agreement_confident"], -t["kl"]) for t in trials)
        better = score > best
    trials.append(trial)
    print(f"trial {student_path.name} {json.dumps(trial)}: {'kept' if better else 'not kept'}")
    if not better:
        trial["kept"] = False
        path.unlink()
        return None
    for other in trials:
        other["kept"] = other is trial
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
                for t in trials:
                    t["kept"] = t is trials[-1]
    assert best is not None
    _, path, method, layers = best
    path.replace(args.out)
    for t in args.out.parent.glob(f"{args.out.stem}.*.*.onnx"):
        t.unlink()
    return args.out, method, layers, trials


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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="model_build export-pretrained")
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
