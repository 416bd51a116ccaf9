"""``dyadic-finetune``: fine-tune a trained int8 classifier through the ``dyadic-scales``
simulation on its labelled training images, and write its dyadic file.

Why: ``dyadic-scales`` after the fact makes a file whose optimized execution computes the
reference's numbers on every CPU, but its rounding costs accuracy (the Fashion-MNIST file:
95.29 % -> 94.66 % test top-1, goal 95.0 %). A short fine-tune through a simulation of exactly
that file (``qsim.attach(..., dyadic=True)``: power-of-two scales tied around additions,
rescaled in-block tensors, 4-bit weight scales, lifted ReLU6 outputs) wins it back: the
network learns the rounding it will meet. Unlike ``distill`` (the ImageNet model: a float
teacher from torchvision, unlabelled photos), this reads any file ``train`` + ``export`` made
and the dataset it was trained on; the target is the labels plus the file's own float twin
(its dequantized weights, before any rounding), so the fine-tune stays near what was shipped.

The file's weights are read back by layer order (``train``'s export names BatchNorm-folded
convolutions by export order, ``onnx::Conv_545``), each shape checked against the network
rebuilt from ``--backbone``; its activations by tensor name, which follow module paths.

    python -m model_build dyadic-finetune --model FILE --data fashion-mnist --out NEW \\
        --version 1.2.0 [--steps 600 --batch 32 --lr 1e-4 --images 800]

Beside NEW it writes ``<stem>.finetune.json``: what was fine-tuned from and how (file names,
never paths). ``evaluate --finetune`` keeps it in the new file's ``eval.json``, from which the
model card says what the fine-tune changed.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import nn

from model_build import card, qsim
from model_build.backbones import BACKBONES, get_backbone
from model_build.contract import ModelMeta
from model_build.data import Split, limit_per_class, open_dataset, prepare_split
from model_build.distill import dequantized, restored_params, simulation_scheme
from model_build.onnx_export import export_serving
from model_build.pretrained import make_exact
from model_build.quantize import quantize_int8
from model_build.wrapper import ServingModel

#: Weight of the labels' cross-entropy next to the KL to the float twin.
LABEL_WEIGHT = 0.5
#: Adam's learning rate for the activation scales (log scales), learned with the weights.
SCALE_LR = 1e-3
#: The report written beside the new file: ``<stem>`` + this.
REPORT_SUFFIX = ".finetune.json"


def load_network(
    model: onnx.ModelProto, net: nn.Module, mean, std
) -> tuple[ServingModel, qsim.QuantParams, list[str]]:
    """The serving network of ``model`` (BatchNorm folded) with its dequantized weights, its
    activations' 8-bit parameters (a 7-bit tensor's restored, as ``qsim`` takes them) and the
    7-bit tensors."""
    serving = qsim.fold_batchnorm(ServingModel(copy.deepcopy(net).eval(), mean, std).eval())
    arrays = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    layers = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm")]
    modules = [m for m in serving.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    if len(layers) != len(modules):
        raise SystemExit(f"{len(layers)} layers in the file, {len(modules)} in the network")
    with torch.no_grad():
        for node, module in zip(layers, modules, strict=True):
            weight, bias = (
                arrays[name] if name in arrays else dequantized(arrays, producers[name])
                for name in node.input[1:3]
            )
            if tuple(module.weight.shape) != weight.shape or module.bias is None:
                raise SystemExit(f"{node.name}: not this network ({weight.shape})")
            module.weight.copy_(torch.from_numpy(weight))
            module.bias.copy_(torch.from_numpy(bias))
    params, seven = restored_params(model)
    return serving, params, seven


def dyadic_scheme(model: onnx.ModelProto, params: qsim.QuantParams, narrowed: list[str]) -> dict:
    """The simulation of ``model``'s dyadic file (``distill.simulation_scheme``), its 7-bit
    ranges never narrower than the file's own: a value beyond its 7-bit range can saturate
    AVX2's U8S8 pairs (learned freely, the Fashion file's moved 265 of 10,000 images there)."""
    return simulation_scheme(params, narrowed, True, params, model)


def finetune(
    serving: ServingModel,
    params: qsim.QuantParams,
    scheme: dict,
    images: np.ndarray,
    labels: np.ndarray,
    steps: int,
    batch: int,
    lr: float,
    seed: int = 0,
) -> qsim.QuantParams:
    """Train ``serving`` through the simulation (in place; stripped afterwards); returns the
    learned activation parameters as the file will hold them."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    twin = copy.deepcopy(serving).eval()
    for p in twin.parameters():
        p.requires_grad_(False)
    qsim.attach(serving, params, learn_scales=True, **scheme)
    scales = list(getattr(serving, qsim.SCALES).values())
    weights = [p for p in serving.parameters() if all(p is not s for s in scales)]
    opt = torch.optim.SGD(weights, lr=lr, momentum=0.9)
    scale_opt = torch.optim.Adam(scales, lr=SCALE_LR)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    y = torch.from_numpy(labels.astype(np.int64))
    start = time.time()
    for step in range(steps):
        pick = rng.integers(0, len(images), batch)
        x = torch.from_numpy(images[pick])
        with torch.no_grad():
            target = twin(x)
        probs = serving(x)
        loss = qsim.kl_to(target, probs) + LABEL_WEIGHT * F.nll_loss(
            torch.log(probs.clamp_min(1e-12)), y[pick]
        )
        opt.zero_grad()
        scale_opt.zero_grad()
        loss.backward()
        opt.step()
        scale_opt.step()
        sched.step()
        if step % 50 == 0 or step == steps - 1:
            print(
                json.dumps(
                    {
                        "step": step,
                        "loss": round(float(loss.detach()), 4),
                        "seconds": round(time.time() - start),
                    }
                ),
                flush=True,
            )
    learned = qsim.learned_params(serving, params, **scheme)
    qsim.strip(serving)
    return learned


def write_file(
    serving: ServingModel,
    learned: qsim.QuantParams,
    narrowed: list[str],
    meta: ModelMeta,
    calibration: np.ndarray,
    out: Path,
) -> Path:
    """Export, quantize with the learned scales, then what ``export-pretrained`` does with a
    dyadic student (``make_exact``: the same tensors narrowed, ``dyadic-scales``,
    ``pair-order`` where 8-bit dense inputs remain); refuses a file whose activation scales the
    pass would move (not what was trained)."""
    fp32 = export_serving(serving, meta, out.with_suffix(".fp32.onnx"))
    quantize_int8(fp32, out, calibration, activation_overrides=learned)
    fp32.unlink()
    make_exact(out, out, narrowed, dyadic=True)
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, required=True, help="int8 file made by train + export")
    p.add_argument("--data", default="fashion-mnist", help="dataset it was trained on")
    p.add_argument("--out", type=Path, required=True, help="dyadic file to write")
    p.add_argument("--version", required=True, help="version of the new file")
    p.add_argument("--backbone", default="mobilenet_v2", choices=sorted(BACKBONES))
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4, help="SGD (momentum 0.9) learning rate")
    p.add_argument("--images", type=int, default=800, help="training images per class")
    p.add_argument("--seed", type=int, default=0)


def report(
    args: argparse.Namespace,
    source: dict[str, str],
    written: dict[str, str],
    scheme: dict,
    training_images: int,
    seconds: float,
) -> dict:
    """What the model card needs to say what the fine-tune did: the file it started from (by
    name, version and sha), the options, the simulation's shape, and the file it wrote."""
    return {
        "command": "dyadic-finetune",
        "from": {"file": args.model.name, "version": source["version"], "sha": source["sha"]},
        "to": {"file": args.out.name, "version": written["version"], "sha": written["sha"]},
        "data": str(args.data),
        "backbone": args.backbone,
        "steps": args.steps,
        "batch": args.batch,
        "lr": args.lr,
        "scale_lr": SCALE_LR,
        "label_weight": LABEL_WEIGHT,
        "images_per_class": args.images,
        "training_images": training_images,
        "seed": args.seed,
        "dense_inputs_7bit": len(scheme["narrowed"]),
        "rescaled": len(scheme["rescaled"]),
        "additions": len(scheme["additions"]),
        "lifted": len(scheme["lifted"]),
        "seconds": round(seconds, 1),
    }


def run(args: argparse.Namespace) -> int:
    """Fine-tune, write, say what changed (and write it down beside the new file)."""
    started = time.time()
    model = onnx.load(str(args.model))
    props = {p.key: p.value for p in model.metadata_props}
    labels_text = tuple(json.loads(props["labels"]))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    size = (dims[1].dim_value, dims[2].dim_value)
    meta = ModelMeta(props["name"], args.version, labels_text, props["resize"], size)
    backbone = get_backbone(args.backbone)
    net = backbone.skeleton(len(labels_text), size[0]).eval()
    serving, params, narrowed = load_network(model, net, backbone.mean, backbone.std)
    data = open_dataset(args.data)
    keep = limit_per_class(data.train.labels, args.images, args.seed)
    split = Split(
        labels=data.train.labels[keep],
        arrays=None if data.train.arrays is None else data.train.arrays[keep],
        files=None if data.train.files is None else [data.train.files[i] for i in keep],
    )
    images = prepare_split(split, size, meta.resize)
    scheme = dyadic_scheme(model, params, narrowed)
    learned = finetune(
        serving, params, scheme, images, split.labels, args.steps, args.batch, args.lr, args.seed
    )
    write_file(serving, learned, narrowed, meta, images[:64], args.out)
    marks = {p.key: p.value for p in onnx.load(str(args.out)).metadata_props}
    source = {"version": props["version"], "sha": props.get("sha", "")}
    summary = report(args, source, marks, scheme, len(images), time.time() - started)
    card.sibling(args.out, REPORT_SUFFIX).write_text(json.dumps(summary, indent=1) + "\n")
    print(
        f"{args.out}: {meta.name} {meta.version}, sha {marks['sha']}, {len(scheme['rescaled'])} "
        f"activations rescaled, {len(narrowed)} dense inputs at 7 bits; "
        f"{card.sibling(args.out, REPORT_SUFFIX).name} beside it"
    )
    return 0
