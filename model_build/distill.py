"""Quantization-aware distillation of the pretrained ImageNet model (``distill`` command).

Two halves, because the GPU machine has no sample-media packages and no network:

* ``pack`` (here, in ``export-pretrained --distill-pack``): the calibration images' sources at
  288x288, the activation scales of the post-training-quantized file and the convolutions it
  keeps in float, in one ``.npz``;
* ``run`` (``python -m model_build distill PACK --out STUDENT.pt``, on a GPU or the CPU): the
  student (the folded serving network, BatchNorm folded, int8 simulated by ``qsim``) learns to
  reproduce the float original's probabilities on random crops, flips and small colour changes
  of those images, and with ``--extra`` of more unlabelled photos (``extra_images``); never of
  the check set.

``export-pretrained --student STUDENT.pt`` then exports and quantizes the student with the very
activation scales it was trained with, and keeps it only if it agrees better with the original
on the calibration images.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import nn
from torch.nn.utils import parametrize

from model_build import exact_float, qsim
from model_build.augment import AugmentConfig
from model_build.augment import augment as batch_augment
from model_build.backbones import get_backbone
from model_build.dyadic import rescalable, residual_additions
from model_build.extra_images import holdout_id, read_extra
from model_build.narrow import is_narrowed
from model_build.wrapper import ServingModel

PACK_SIZE = 288  # source resolution: room for random crops around the 224 model input


def student_model(net: nn.Module, mean, std, size: tuple[int, int]) -> ServingModel:
    """The folded serving network with BatchNorm folded: what the int8 file computes in float."""
    serving = ServingModel(copy.deepcopy(net).eval(), mean, std, size=size).eval()
    if not serving.folded:
        raise ValueError("distillation needs a stem that normalization folds into")
    return qsim.fold_batchnorm(serving)


class Pack(NamedTuple):
    """What a distillation run needs from the build machine."""

    sources: np.ndarray  # calibration images' centre crops at PACK_SIZE, uint8 NHWC
    calib: np.ndarray  # the same images exactly as serving feeds them, uint8 NHWC
    params: qsim.QuantParams  # activation scales of the post-training int8 file it starts from
    float_nodes: list[str]  # convolutions that file keeps in float
    dense_inputs: Sequence[str] = ()  # the activations ``narrow-inputs`` would give 7 bits


def write_pack(
    path: Path,
    sources: np.ndarray,
    calib_x: np.ndarray,
    params: qsim.QuantParams,
    float_nodes: Sequence[str] = (),
    dense_inputs: Sequence[str] = (),
) -> None:
    """Save what ``run`` needs (uint8 arrays; scales, float nodes, dense inputs as JSON)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        sources=sources,
        calib=calib_x,
        params=np.array(json.dumps(params)),
        float_nodes=np.array(json.dumps(list(float_nodes))),
        dense_inputs=np.array(json.dumps(list(dense_inputs))),
    )


def narrowed_inputs(dense_inputs: Sequence[str], params: qsim.QuantParams, which: str) -> list[str]:
    """The dense inputs a 7-bit student simulates at 7 bits: ``all``, or the ``stream`` ones.

    ``stream``: the inputs whose weight pairs no channel order can keep within 16 bits, so
    only 7 bits make U8S8 exact there: the residual stream (uint8 zero point above 0: values
    sit around the middle of the range, and pairs of large weights saturate on most pixels)
    and the pooled features (every pair of the classifier's input channels has some class
    with two large weights of one sign). The other inputs (ReLU outputs) keep 8 bits;
    ``pair-order`` reorders their channels so that no pair can saturate, which changes no
    result. Measured on the shipped 8-bit ImageNet file: ``notes/int8_on_every_cpu.md``."""
    if which == "all":
        return list(dense_inputs)
    return [t for t in dense_inputs if params[t][1] != 0 or qsim.is_pooled(t)]


def init_from_file(student: nn.Module, path: Path) -> tuple[qsim.QuantParams, str | None]:
    """Start from an int8 file of this network (e.g. the shipped one): its dequantized weights
    and biases become the student's; returns its activation scales, for the simulation, and
    its stamped ``sha``, for the checkpoint's record of where the student started.

    Why: a student for a new int8 scheme (``--dense-input-bits 7 --narrow stream``) then starts
    where the shipped file is, not at the float network, and needs a fraction of the steps
    (few enough for a CPU). The weights round back to the file's integers: a per-channel
    symmetric scale is the largest weight over 127, which the file's scales are."""
    model = onnx.load(str(path))
    arrays = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    values = {name: a for name, a in arrays.items() if a.dtype == np.float32}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in arrays:
            name = node.output[0].removesuffix("_DequantizeLinear_Output")
            values[name] = dequantized(arrays, node)
    state = student.state_dict()
    missing = [k for k in state if k.startswith("net.") and k not in values]
    if missing:
        raise SystemExit(f"{path}: not this network (no {missing[0]})")
    student.load_state_dict(
        {k: torch.from_numpy(values[k]) if k in values else v for k, v in state.items()}
    )
    sha = {p.key: p.value for p in model.metadata_props}.get("sha")
    return restored_params(model)[0], sha


def dequantized(arrays: dict[str, np.ndarray], node: onnx.NodeProto) -> np.ndarray:
    """The float value a DequantizeLinear of an initializer holds (per-channel on its axis)."""
    q, scale, zero = (arrays[i] for i in node.input[:3])
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1) if scale.ndim else 0
    shape = [1] * q.ndim
    if scale.ndim:
        shape[axis % q.ndim] = -1
    real = (q.astype(np.float64) - zero.reshape(shape)) * scale.reshape(shape)
    return real.astype(np.float32)


def restored_params(model: onnx.ModelProto) -> tuple[qsim.QuantParams, list[str]]:
    """The file's activation parameters as the simulation takes them, and its 7-bit tensors: a
    narrowed file holds their 7-bit parameters, the simulation the 8-bit ones."""
    params = qsim.activation_params(model)
    seven = [
        q.input[0]
        for q in model.graph.node
        if q.op_type == "QuantizeLinear" and q.input[0] in params and is_narrowed(q)
    ]
    for t in seven:
        scale, zero = params[t]
        params[t] = (scale / 2, zero * 2)
    return params, seven


def read_pack(path: Path) -> Pack:
    with np.load(path) as z:
        params = {k: (float(v[0]), int(v[1])) for k, v in json.loads(str(z["params"])).items()}
        floats = json.loads(str(z["float_nodes"])) if "float_nodes" in z else []
        dense = json.loads(str(z["dense_inputs"])) if "dense_inputs" in z else []
        return Pack(z["sources"], z["calib"], params, floats, dense)


#: Crops of 20-100 % of the area (45-100 % of the side), flips, +-10 % brightness/contrast.
DISTILL_AUGMENT = AugmentConfig(
    scale_min=0.2,
    ratio=1.0,
    hflip=0.5,
    rotate=0.0,
    brightness=0.1,
    contrast=0.1,
    saturation=0.0,
    erase=0.0,
)


def augment(
    src: torch.Tensor,
    out: int,
    gen: torch.Generator,
    mix: float = 0.0,
    stamps: torch.Tensor | None = None,
    paste: float = 0.0,
) -> torch.Tensor:
    """Training's batch augmentation (``DISTILL_AUGMENT``), resized to ``out`` -> uint8 NHWC.

    ``stamps``/``paste``: cut-out photos pasted over that share of the images (``composite``).
    ``mix``: share of images blended with another one of the batch (weight uniform in 0..1):
    with few source images, matching the teacher on such blends is what generalizes ("function
    matching", Beyer et al. 2022). Why uint8: the student must see exactly what serving feeds it.
    ``gen`` must live on ``src``'s device.
    """
    x = batch_augment(src.permute(0, 3, 1, 2).float(), DISTILL_AUGMENT, gen)
    x = F.interpolate(x, size=(out, out), mode="bilinear", antialias=True)
    if stamps is not None and len(stamps) and paste > 0:
        x = composite(x, stamps, gen, paste)
    if mix > 0:
        n, dev = x.shape[0], x.device
        lam = torch.rand(n, 1, 1, 1, device=dev, generator=gen)
        lam[torch.rand(n, device=dev, generator=gen) >= mix] = 1.0
        x = lam * x + (1 - lam) * x[torch.randperm(n, device=dev, generator=gen)]
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def composite(
    x: torch.Tensor, stamps: torch.Tensor, gen: torch.Generator, share: float
) -> torch.Tensor:
    """Paste a random cut-out photo (``extra_images`` stamps, RGBA NHWC uint8) over ``share``
    of the float NCHW batch ``x``: one size per call (35-100 % of the side, antialiased),
    a random place and mirror per image, alpha-blended.

    Why: an object on a varied background is what most uploads look like, and the few
    calibration images cannot provide new objects; the teacher labels whatever results.
    """
    n, _, h, w = x.shape
    dev = x.device
    chosen = torch.nonzero(torch.rand(n, device=dev, generator=gen) < share).flatten()
    if len(chosen) == 0:
        return x
    pick = torch.randint(0, len(stamps), (len(chosen),), device=dev, generator=gen)
    side = int(min(h, w) * (0.35 + 0.65 * float(torch.rand(1, device=dev, generator=gen))))
    s = stamps[pick].permute(0, 3, 1, 2).float()
    s[:, :3] *= s[:, 3:] / 255  # premultiplied: transparent pixels' colours must not bleed
    s = F.interpolate(s, size=(side, side), mode="bilinear", antialias=True)
    flip = torch.rand(len(chosen), device=dev, generator=gen) < 0.5
    s[flip] = s[flip].flip(-1)
    alpha = (s[:, 3:] / 255).clamp(0, 1)
    ys = torch.randint(0, h - side + 1, (len(chosen),), device=dev, generator=gen).tolist()
    xs = torch.randint(0, w - side + 1, (len(chosen),), device=dev, generator=gen).tolist()
    x = x.clone()
    for k, i in enumerate(chosen.tolist()):
        region = x[i, :, ys[k] : ys[k] + side, xs[k] : xs[k] + side]
        region.mul_(1 - alpha[k]).add_(s[k, :3])
    return x


def run(args: argparse.Namespace) -> int:
    """Train the int8-simulated student against the float teacher; save its float weights."""
    dev = torch.device(args.device if torch.cuda.is_available() or args.device == "cpu" else "cpu")
    torch.manual_seed(args.seed)
    # Full fp32 on the GPU, as ONNX Runtime computes: TF32 convolutions (PyTorch's default for
    # cuDNN) keep ~10 mantissa bits, enough to move values across simulated uint8 rounding
    # steps that the file does not cross.
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    backbone = get_backbone("mobilenet_v2")
    net = backbone.pretrained(224, args.weights).eval()
    sources, calib, params, float_nodes, dense_inputs = read_pack(args.pack)
    calibrated = params  # the post-training file's: the floors of narrowed ranges
    seven = args.dense_input_bits == 7
    narrowed = narrowed_inputs(dense_inputs, params, args.narrow) if seven else []
    if seven and not narrowed:
        raise SystemExit(f"{args.pack} names no dense inputs: write it again (--distill-pack)")
    student = student_model(net, backbone.mean, backbone.std, (224, 224))
    if args.init is not None:
        # The file's stamped identity goes into the checkpoint's config (and the card).
        started, args.init_sha = init_from_file(student, args.init)
        if started.keys() - params.keys():
            raise SystemExit(f"{args.init}: other activations than the pack's")
        # The file's scales where it has them; the pack's where the file kept layers in float
        # that the pack quantizes (their weights come from the file all the same).
        params = params | started
    teacher = ServingModel(net, backbone.mean, backbone.std).eval().to(dev)
    if args.dyadic and args.init is None:
        raise SystemExit("--dyadic needs --init: its residual additions are read from that file")
    layout = args.layout or args.init
    layout_model = onnx.load(str(layout)) if args.dyadic and layout is not None else None
    floors = calibrated if args.floor == "calibrated" else None
    scheme = simulation_scheme(params, narrowed, args.dyadic, floors, layout_model)
    qsim.attach(student, params, float_nodes, learn_scales=args.scale_lr > 0, **scheme)
    held = holdout_indices(len(calib), args.holdout)
    train = np.setdiff1d(np.arange(len(calib)), held)
    # With --dyadic and a float prefix: the plan ``exact_float`` makes it exact by, from the
    # layout file on the training images (the exported file gets it from the checkpoint).
    prefix = exact_float.prefix_plan(layout_model, calib[train]) if float_nodes else None
    if prefix is not None:
        qsim.attach_exact_prefix(student, prefix, exact_float.roundings(layout_model, prefix))
    student.to(dev).eval()  # eval: BN is folded, dropout off; gradients still flow
    for p in teacher.parameters():
        p.requires_grad_(False)
    # The stem's weights act on raw 0..255 pixels (normalization folded in): their gradients
    # are ~10^4 times their size, so any shared learning rate would wreck them. They stay fixed.
    stem = student.net[1].get_submodule(_first_conv_name(student.net[1]))
    stem_weight = (
        stem.parametrizations.weight.original
        if parametrize.is_parametrized(stem, "weight")
        else stem.weight  # a float stem (in ``float_nodes``) is not rounded, so not parametrized
    )
    stem_weight.requires_grad_(False)
    if args.train == "bias":  # far fewer degrees of freedom to overfit the few images with
        for name, p in student.named_parameters():
            p.requires_grad_(p.requires_grad and name.endswith(".bias"))
    scales = list(getattr(student, qsim.SCALES, {}).values()) if args.scale_lr > 0 else []
    trainable = [
        p for p in student.parameters() if p.requires_grad and all(p is not q for q in scales)
    ]
    # SGD, not Adam: Adam's per-weight step size moves near-zero (BN-folded, nearly dead)
    # channels as far as live ones, which wrecked the int8 simulation in a single step.
    opt = torch.optim.SGD(trainable, lr=args.lr, momentum=0.9)
    optimizers = [opt]
    if scales:  # log scales: Adam's normalised steps are relative changes, whatever the tensor
        optimizers.append(torch.optim.Adam(scales, lr=args.scale_lr))
    scheds = [torch.optim.lr_scheduler.CosineAnnealingLR(o, args.steps) for o in optimizers]
    # Weight averaging: the int8 function jumps as SGD noise moves weights across rounding
    # steps; an exponential average of the trajectory is the smoother point to round.
    averaged = trainable + scales
    ema = [p.detach().clone() for p in averaged] if args.ema > 0 else []
    pool, stamps = sources[train], None
    if args.extra is not None:  # more unlabelled photos: stamps to paste, background tiles
        extra_stamps, backgrounds = read_extra(args.extra)
        pool = np.concatenate([pool, backgrounds])
        stamps = torch.from_numpy(extra_stamps).to(dev)
    src = torch.from_numpy(pool).to(dev)
    calib_t = torch.from_numpy(calib[train]).to(dev)
    held_t = torch.from_numpy(calib[held]).to(dev)
    gen = torch.Generator(device=dev).manual_seed(args.seed)

    def score(x: torch.Tensor) -> tuple[float, float]:
        if len(x) == 0:
            return float("nan"), float("nan")
        with torch.no_grad():
            t, s = teacher(x), student(x)
        return float(qsim.kl_to(t, s)), qsim.agreement(t.cpu().numpy(), s.cpu().numpy())

    def scores() -> dict[str, tuple[float, float]]:
        return {"calib_kl_agreement": score(calib_t), "holdout_kl_agreement": score(held_t)}

    log = [{"step": 0, **scores()}]
    print(json.dumps(log[-1]), flush=True)
    start, done = time.time(), 0
    for step in range(1, args.steps + 1):
        if time.time() - start > args.max_minutes * 60:
            print(f"time budget reached after {step - 1} steps", flush=True)
            break
        idx = torch.randint(0, len(src), (args.batch,), device=dev, generator=gen)
        x = augment(src[idx], 224, gen, args.mix, stamps, args.paste)
        if args.calib_share > 0:  # the exact serving crops too, not only augmented ones
            k = max(1, int(args.batch * args.calib_share))
            pick = torch.randint(0, len(calib_t), (k,), device=dev, generator=gen)
            x = torch.cat([x, calib_t[pick]])
        with torch.no_grad():
            target = teacher(x)
        loss = qsim.kl_to(target, student(x))
        for o in optimizers:
            o.zero_grad(set_to_none=True)
        loss.backward()
        for o, sc in zip(optimizers, scheds, strict=True):
            o.step()
            sc.step()
        if ema:
            torch._foreach_lerp_(ema, [p.detach() for p in averaged], 1 - args.ema)
        done = step
        if step % args.log_every == 0 or step == args.steps:
            log.append(
                {
                    "step": step,
                    "loss": loss.item(),
                    **scores(),
                    "seconds": round(time.time() - start, 1),
                }
            )
            print(json.dumps(log[-1]), flush=True)
    if ema:
        with torch.no_grad():
            for p, e in zip(averaged, ema, strict=True):
                p.copy_(e)
        log.append({"step": done, "ema": args.ema, **scores()})
        print(json.dumps(log[-1]), flush=True)
    started, params = params, qsim.learned_params(student, params, **scheme)
    qsim.strip(student)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    torch.save(
        {
            "state_dict": student.cpu().state_dict(),
            "params": params,
            "calibrated_params": started,
            "extra_holdout": holdout_id(args.extra) if args.extra is not None else None,
            "float_nodes": float_nodes,
            "narrowed": list(narrowed),
            "lifted": scheme["lifted"],
            "exact_prefix": prefix,
            "holdout": held.tolist(),
            "log": log,
            "config": config,
        },
        args.out,
    )
    print(f"wrote {args.out}")
    return 0


def simulation_scheme(
    params: qsim.QuantParams,
    narrowed: Sequence[str],
    dyadic: bool,
    floors: qsim.QuantParams | None,
    layout: onnx.ModelProto | None,
) -> dict:
    """The keyword arguments of ``qsim.attach`` and ``learned_params`` besides ``params``.

    ``layout``: with ``dyadic``, the int8 file whose residual additions are tied and whose
    in-block tensors are rescaled (``dyadic.rescalable``); a layout with a float prefix leaves
    the prefix's tensors to rounding (their scales, powers of two, stay put). The ReLU6 outputs
    that are not rescaled are lifted (``qsim.lift``)."""
    additions = residual_additions(layout) if dyadic and layout is not None else []
    rescaled = rescalable(layout) if dyadic and layout is not None else []
    if any(tensor not in params for tensor, _, _ in rescaled):
        raise SystemExit("the layout file has other activations than the pack's")
    return {
        "narrowed": list(narrowed),
        "dyadic": dyadic,
        "floors": floors,
        "additions": additions,
        "rescaled": rescaled,
        "lifted": qsim.liftable(params, rescaled, narrowed) if dyadic else [],
    }


def holdout_indices(n: int, count: int) -> np.ndarray:
    """The calibration images a run never trains on, the same for every run (fixed seed).

    Why: students fit the few training images ever better as the learning rate grows while
    agreeing less on other images; choosing among them needs images they did not see, and the
    check set must not be the one that chooses.
    """
    if count <= 0:
        return np.zeros(0, dtype=np.int64)
    if count >= n:
        raise ValueError(f"cannot hold out {count} of {n} calibration images: none left to train")
    return np.sort(np.random.default_rng(20261202).permutation(n)[:count])


def _first_conv_name(net: nn.Module) -> str:
    return next(name for name, m in net.named_modules() if isinstance(m, nn.Conv2d))


def add_arguments(p: argparse.ArgumentParser) -> None:
    """CLI options of ``distill``."""
    p.add_argument("pack", type=Path, help=".npz written by export-pretrained --distill-pack")
    p.add_argument("--out", type=Path, required=True, help="student checkpoint to write")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3, help="SGD (momentum 0.9) learning rate")
    p.add_argument(
        "--calib-share", type=float, default=0.25, help="extra share of exact calibration crops"
    )
    p.add_argument("--mix", type=float, default=0.0, help="share of blended images (mixup)")
    p.add_argument(
        "--extra",
        type=Path,
        default=None,
        help=".npz written by extra-images: background tiles join the sources, stamps are pasted",
    )
    p.add_argument(
        "--paste", type=float, default=0.5, help="with --extra: share of images given a stamp"
    )
    p.add_argument(
        "--holdout",
        type=int,
        default=12,
        help="calibration images never trained on; export-pretrained chooses students on them",
    )
    p.add_argument(
        "--train",
        choices=("all", "bias"),
        default="all",
        help="parameters to fine-tune: all (but the stem) or only the (BN-folded) biases",
    )
    p.add_argument(
        "--scale-lr",
        type=float,
        default=0.0,
        help="learn the activation scales too (LSQ), Adam on log scales at this rate; 0 = fixed",
    )
    p.add_argument(
        "--ema", type=float, default=0.0, help="keep this exponential average of the weights"
    )
    p.add_argument(
        "--dense-input-bits",
        type=int,
        choices=(8, 7),
        default=8,
        help="7: simulate the file `narrow-inputs` makes (exact U8S8 kernels on AVX2 CPUs)",
    )
    p.add_argument(
        "--narrow",
        choices=("all", "stream"),
        default="all",
        help="with --dense-input-bits 7: which dense inputs get 7 bits (stream: the residual "
        "stream and the pooled features; `pair-order` makes the others exact)",
    )
    p.add_argument(
        "--init",
        type=Path,
        default=None,
        help="start from this int8 file's weights and activation scales (e.g. the shipped one)",
    )
    p.add_argument(
        "--dyadic",
        action="store_true",
        help="simulate the file `dyadic-scales` makes: power-of-two activation scales tied "
        "around additions, 4-bit weight scales (its optimized execution computes the "
        "reference's numbers)",
    )
    p.add_argument(
        "--layout",
        type=Path,
        default=None,
        help="with --dyadic: an int8 file with the pack's layers in int8 (e.g. an earlier "
        "student's) to read the additions and rescaled tensors from; default: --init",
    )
    p.add_argument(
        "--floor",
        choices=("none", "calibrated"),
        default="none",
        help="calibrated: 7-bit ranges never narrower than the pack's post-training ones "
        "(values beyond a range reach codes where AVX2 pairs can saturate); none: free",
    )
    p.add_argument("--device", default="cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-minutes", type=float, default=60.0, help="stop early after this")
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--weights", type=Path, default=None, help="explicit mobilenet_v2 .pth")
