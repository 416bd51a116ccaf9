"""``train``: transfer learning from an ImageNet backbone, done the careful way.

Phase 1 trains a fresh head on the frozen backbone (BN statistics frozen too); phase 2
unfreezes everything and fine-tunes at a lower learning rate. Both phases use AdamW (or SGD)
with a per-step linear warm-up and cosine decay, label smoothing, device-side augmentation and,
on CUDA, bf16/fp16 autocast. A validation split carved from the training data (never the test
set) drives early stopping and the choice of the best checkpoint. ``last.pt`` makes a run
resumable; ``metrics.jsonl`` logs one line per epoch. Under ``torchrun`` the same code runs
DistributedDataParallel, each process on its shard of every epoch.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from model_build import augment as aug
from model_build import data as data_mod
from model_build import dist
from model_build.backbones import BACKBONES, freeze_backbone, get_backbone, set_bn_eval, unfreeze
from model_build.serving import REPO_ROOT
from model_build.wrapper import Normalize


@dataclass
class TrainConfig:
    """Everything that defines a run; saved as ``config.json`` (resume reads it back)."""

    data: str = "fashion-mnist"
    backbone: str = "mobilenet_v2"
    size: int = 112
    policy: str = "squash"
    out: str = str(REPO_ROOT / "runs/train")
    head_epochs: int = 2
    epochs: int = 30
    batch_size: int = 256
    head_lr: float = 2e-3
    lr: float = 1e-3
    min_lr_ratio: float = 0.01
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    optimizer: str = "adamw"
    label_smoothing: float = 0.1
    augment: str = "default"
    ema: float = 0.0
    patience: int = 8
    val_fraction: float = 0.1
    limit_per_class: int = 0
    amp: str = "auto"
    seed: int = 0
    workers: int = 8
    weights: str | None = None
    device: str | None = None
    max_minutes: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total_epochs(self) -> int:
        return self.head_epochs + self.epochs


def add_arguments(p: argparse.ArgumentParser) -> None:
    """CLI options of ``train`` (defaults: the TrainConfig above)."""
    d = TrainConfig()
    p.add_argument(
        "--data",
        default=d.data,
        help="'fashion-mnist', an IDX folder, or an "
        "ImageFolder root (train/<class>/*, optional val/, test/)",
    )
    p.add_argument("--backbone", default=d.backbone, choices=sorted(BACKBONES))
    p.add_argument("--size", type=int, default=d.size, help="square input size, pixels")
    p.add_argument(
        "--policy",
        default=d.policy,
        choices=("squash", "center_crop"),
        help="resize policy (stored in the model; serving applies the same)",
    )
    p.add_argument("--out", default=d.out, help="run folder (checkpoints, logs)")
    p.add_argument("--head-epochs", type=int, default=d.head_epochs, help="frozen-backbone epochs")
    p.add_argument("--epochs", type=int, default=d.epochs, help="fine-tuning epochs (max)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch size")
    p.add_argument("--head-lr", type=float, default=d.head_lr)
    p.add_argument("--lr", type=float, default=d.lr, help="peak fine-tuning learning rate")
    p.add_argument("--min-lr-ratio", type=float, default=d.min_lr_ratio)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs)
    p.add_argument("--optimizer", default=d.optimizer, choices=("adamw", "sgd"))
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument(
        "--augment",
        default=d.augment,
        help=f"preset ({', '.join(aug.PRESETS)}) and/or key=value list, e.g. "
        "'default,rotate=0,erase=0.5'",
    )
    p.add_argument("--ema", type=float, default=d.ema, help="EMA decay of weights (0: off)")
    p.add_argument(
        "--patience",
        type=int,
        default=d.patience,
        help="early stopping: fine-tuning epochs without val improvement",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=d.val_fraction,
        help="validation split carved from train (when there is no val/)",
    )
    p.add_argument(
        "--limit-per-class",
        type=int,
        default=d.limit_per_class,
        help="use at most N training images per class (smoke runs)",
    )
    p.add_argument("--amp", default=d.amp, choices=("auto", "bf16", "fp16", "off"))
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--workers", type=int, default=d.workers, help="decode/resize threads")
    p.add_argument("--weights", default=None, help="explicit ImageNet weights file")
    p.add_argument("--device", default=None, help="force a device (default: cuda if present)")
    p.add_argument(
        "--max-minutes",
        type=float,
        default=0.0,
        help="stop after the epoch that would overrun this wall-clock budget (0: none)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from last.pt (its config.json wins)",
    )


def run(args: argparse.Namespace) -> int:
    """Entry point of ``python -m model_build train``."""
    out = Path(args.out)
    if args.resume:
        cfg = TrainConfig(**json.loads((out / "config.json").read_text()))
    else:
        names = {f for f in TrainConfig.__dataclass_fields__ if f != "extra"}
        cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in names})
    train(cfg, resume=args.resume)
    return 0


# --- pieces -----------------------------------------------------------------------------------
class Ema:
    """Exponential moving average of weights and buffers, with a warm-up of the decay."""

    def __init__(self, net: nn.Module, decay: float) -> None:
        self.model = copy.deepcopy(net).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.steps = 0

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        self.steps += 1
        d = min(self.decay, (1 + self.steps) / (10 + self.steps))
        for e, p in zip(self.model.state_dict().values(), net.state_dict().values(), strict=True):
            if e.dtype.is_floating_point:
                e.mul_(d).add_(p.detach(), alpha=1 - d)
            else:
                e.copy_(p)


def lr_lambda(total_steps: int, warmup_steps: int, min_ratio: float):
    """Linear warm-up then cosine decay to ``min_ratio`` of the peak, per optimizer step."""

    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return f


def to_input(batch_u8: torch.Tensor) -> torch.Tensor:
    """uint8 [N,H,W,C] (C=1 grey or 3) -> float NCHW 0..255 with 3 channels."""
    x = batch_u8.permute(0, 3, 1, 2).float()
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def compact(images: np.ndarray) -> np.ndarray:
    """Keep one channel when all three are equal (grey sources): a third of the memory."""
    if (
        images.shape[-1] == 3
        and np.array_equal(images[..., 0], images[..., 1])
        and np.array_equal(images[..., 0], images[..., 2])
    ):
        return np.ascontiguousarray(images[..., :1])
    return images


def amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16 where the GPU supports it, fp16 on request, none on CPU."""
    if device.type != "cuda" or cfg.amp == "off":
        return None
    if cfg.amp == "fp16":
        return torch.float16
    if cfg.amp == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


@torch.no_grad()
def evaluate_arrays(
    net: nn.Module,
    norm: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch: int,
    info: dist.DistInfo,
    dtype: torch.dtype | None,
) -> dict[str, float]:
    """Loss/top-1/top-5 on prepared uint8 images, sharded over processes and summed."""
    net.eval()
    idx = torch.arange(info.rank, len(y), info.world, device=x.device)
    loss = c1 = c5 = 0.0
    for i in range(0, len(idx), batch):
        b = idx[i : i + batch]
        inp = norm(to_input(x[b]))
        if x.device.type == "cuda":
            inp = inp.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None):
            logits = net(inp).float()
        loss += F.cross_entropy(logits, y[b], reduction="sum").item()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        c1 += (top[:, 0] == y[b]).sum().item()
        c5 += (top == y[b][:, None]).any(dim=1).sum().item()
    loss, c1, c5, n = dist.all_sum([loss, c1, c5, float(len(idx))], info)
    return {"val_loss": loss / n, "val_top1": c1 / n, "val_top5": c5 / n}


# --- the run ----------------------------------------------------------------------------------
def train(cfg: TrainConfig, resume: bool = False) -> Path:
    """Run (or resume) training; returns the path of ``best.pt``."""
    info = dist.setup(cfg.device)
    out = Path(cfg.out)
    torch.manual_seed(cfg.seed + info.rank)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    dev = info.device
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    log = print if info.main else (lambda *a, **k: None)

    # Data: prepared once, kept on the device as uint8.
    t0 = time.time()
    ds = data_mod.open_dataset(cfg.data)
    train_split = ds.train
    if cfg.limit_per_class:
        train_split = train_split.subset(
            data_mod.limit_per_class(train_split.labels, cfg.limit_per_class, cfg.seed)
        )
    if ds.val is not None and len(ds.val):
        val_split = ds.val
    else:
        tr_idx, va_idx = data_mod.carve_validation(train_split.labels, cfg.val_fraction, cfg.seed)
        train_split, val_split = train_split.subset(tr_idx), train_split.subset(va_idx)
    size = (cfg.size, cfg.size)
    xtr = compact(data_mod.prepare_split(train_split, size, cfg.policy, cfg.workers))
    xva = compact(data_mod.prepare_split(val_split, size, cfg.policy, cfg.workers))
    xtr_t, ytr_t = torch.from_numpy(xtr).to(dev), torch.from_numpy(train_split.labels).to(dev)
    xva_t, yva_t = torch.from_numpy(xva).to(dev), torch.from_numpy(val_split.labels).to(dev)
    log(
        f"data: {len(xtr)} train / {len(xva)} val images of {len(ds.classes)} classes, "
        f"{cfg.size}px {cfg.policy}, prepared in {time.time() - t0:.1f}s; device {dev}, "
        f"world {info.world}"
    )

    backbone = get_backbone(cfg.backbone)
    net = backbone.build(len(ds.classes), cfg.size, cfg.weights).to(dev)
    if dev.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    norm = Normalize(backbone.mean, backbone.std).to(dev)
    augment_cfg = aug.parse(cfg.augment)
    dtype = amp_dtype(cfg, dev)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    per_rank = max(1, cfg.batch_size // info.world)
    steps_per_epoch = max(1, len(xtr) // (per_rank * info.world))

    # State that resume restores.
    start_epoch, best, bad_epochs = 0, -1.0, 0
    ckpt: dict[str, Any] | None = None
    if resume and (out / "last.pt").is_file():
        ckpt = torch.load(out / "last.pt", map_location=dev, weights_only=False)
        net.load_state_dict(ckpt["net"])
        start_epoch, best, bad_epochs = ckpt["epoch"] + 1, ckpt["best"], ckpt["bad_epochs"]
        scaler.load_state_dict(ckpt["scaler"])
        log(f"resumed from epoch {ckpt['epoch']} (best val top-1 {best:.4f})")
    if info.main:
        out.mkdir(parents=True, exist_ok=True)
        meta = asdict(cfg)
        meta["extra"] = {
            **cfg.extra,
            "classes": list(ds.classes),
            "train_images": len(xtr),
            "val_images": len(xva),
            "augment_resolved": augment_cfg.to_dict(),
        }
        (out / "config.json").write_text(json.dumps(meta, indent=2))
        if not resume:
            (out / "metrics.jsonl").write_text("")

    phase: str | None = None
    model: nn.Module = net
    opt: torch.optim.Optimizer | None = None
    sched: torch.optim.lr_scheduler.LambdaLR | None = None
    ema: Ema | None = None
    gen = torch.Generator(device=dev)

    t_start = time.time()
    for epoch in range(start_epoch, cfg.total_epochs):
        want = "head" if epoch < cfg.head_epochs else "finetune"
        if want != phase:
            phase = want
            model, opt, sched, ema = _setup_phase(phase, cfg, net, backbone, info, steps_per_epoch)
            if ckpt is not None and ckpt["phase"] == phase:
                opt.load_state_dict(ckpt["optimizer"])
                sched.load_state_dict(ckpt["scheduler"])
                if ema is not None and ckpt.get("ema") is not None:
                    ema.model.load_state_dict(ckpt["ema"])
                    ema.steps = ckpt.get("ema_steps", 0)
        assert opt is not None and sched is not None
        model.train()
        if phase == "head":
            set_bn_eval(net)
        gen.manual_seed(cfg.seed * 100_003 + epoch * 1009 + info.rank)
        perm = torch.randperm(len(xtr), device=dev, generator=_epoch_gen(cfg.seed, epoch, dev))
        perm = perm[: steps_per_epoch * per_rank * info.world][info.rank :: info.world]
        t_epoch = time.time()
        loss_sum = correct = seen = 0.0
        bar = tqdm(
            range(steps_per_epoch),
            desc=f"epoch {epoch + 1}/{cfg.total_epochs} {phase}",
            disable=not info.main,
            mininterval=2.0,
            leave=False,
            dynamic_ncols=True,
        )
        for step in bar:
            b = perm[step * per_rank : (step + 1) * per_rank]
            x = aug.augment(to_input(xtr_t[b]), augment_cfg, gen)
            x = norm(x)
            if dev.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            y = ytr_t[b]
            with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
                logits = model(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            if ema is not None:
                ema.update(net)
            loss_sum += loss.detach() * len(b)
            correct += (logits.detach().argmax(1) == y).sum()
            seen += len(b)
            if info.main and step % 20 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{sched.get_last_lr()[0]:.2e}")
        bar.close()
        tl, tc, tn = dist.all_sum([float(loss_sum), float(correct), float(seen)], info)
        eval_net = ema.model if ema is not None else net
        metrics = evaluate_arrays(eval_net, norm, xva_t, yva_t, 2 * per_rank, info, dtype)
        seconds = time.time() - t_epoch
        improved = metrics["val_top1"] > best
        if improved:
            best, bad_epochs = metrics["val_top1"], 0
        elif phase == "finetune":
            bad_epochs += 1
        row = {
            "epoch": epoch + 1,
            "phase": phase,
            "lr": sched.get_last_lr()[0],
            "train_loss": tl / tn,
            "train_top1": tc / tn,
            **metrics,
            "best_val_top1": best,
            "seconds": seconds,
            "images_per_s": tn / seconds,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if info.main:
            with (out / "metrics.jsonl").open("a") as f:
                f.write(json.dumps(row) + "\n")
            log(
                f"epoch {epoch + 1:3d} {phase:8s} loss {row['train_loss']:.4f} "
                f"val top-1 {metrics['val_top1']:.4f} top-5 {metrics['val_top5']:.4f} "
                f"({seconds:.1f}s, {row['images_per_s']:.0f} img/s)" + (" *" if improved else "")
            )
            if improved:
                _save_best(out / "best.pt", eval_net, cfg, ds.classes, backbone, epoch, metrics)
            torch.save(
                {
                    "net": net.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "scaler": scaler.state_dict(),
                    "ema": ema.model.state_dict() if ema is not None else None,
                    "ema_steps": ema.steps if ema is not None else 0,
                    "epoch": epoch,
                    "phase": phase,
                    "best": best,
                    "bad_epochs": bad_epochs,
                },
                out / "last.pt.tmp",
            )
            (out / "last.pt.tmp").replace(out / "last.pt")
        dist.barrier(info)
        if phase == "finetune" and bad_epochs >= cfg.patience:
            log(f"early stop: no val improvement for {cfg.patience} epochs")
            break
        elapsed = time.time() - t_start
        if cfg.max_minutes and elapsed + seconds > cfg.max_minutes * 60:
            log(f"time budget: stopping after {elapsed / 60:.1f} min (--max-minutes)")
            break
    log(f"best val top-1 {best:.4f}; checkpoint {out / 'best.pt'}")
    dist.cleanup(info)
    return out / "best.pt"


def _epoch_gen(seed: int, epoch: int, dev: torch.device) -> torch.Generator:
    """Same permutation on every process (each takes its own stride of it)."""
    g = torch.Generator(device=dev)
    g.manual_seed(seed * 7919 + epoch)
    return g


def _setup_phase(phase, cfg, net, backbone, info, steps_per_epoch):
    """Freeze or unfreeze, then a fresh optimizer, schedule, DDP wrapper and EMA for the phase."""
    if phase == "head":
        freeze_backbone(net, backbone.head(net))
        epochs, peak, warm = cfg.head_epochs, cfg.head_lr, min(cfg.warmup_epochs, 0.5)
    else:
        unfreeze(net)
        epochs, peak, warm = cfg.epochs, cfg.lr, cfg.warmup_epochs
    params = [p for p in net.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=peak, momentum=0.9, nesterov=True)
    else:
        opt = torch.optim.AdamW(groups, lr=peak)
    total = max(1, epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lr_lambda(total, int(warm * steps_per_epoch), cfg.min_lr_ratio)
    )
    model: nn.Module = net
    if info.enabled:
        ids = [info.device.index] if info.device.type == "cuda" else None
        model = DistributedDataParallel(net, device_ids=ids)
    ema = Ema(net, cfg.ema) if (phase == "finetune" and cfg.ema > 0) else None
    return model, opt, sched, ema


def _save_best(path: Path, net: nn.Module, cfg: TrainConfig, classes, backbone, epoch, metrics):
    """Weights + everything ``export`` needs to rebuild the model without the run folder."""
    state = {
        k: v.detach().float().cpu() if v.is_floating_point() else v.cpu()
        for k, v in net.state_dict().items()
    }
    torch.save(
        {
            "net": state,
            "backbone": backbone.name,
            "classes": list(classes),
            "size": cfg.size,
            "policy": cfg.policy,
            "epoch": epoch + 1,
            "metrics": metrics,
            "config": asdict(cfg),
        },
        path.with_suffix(".tmp"),
    )
    path.with_suffix(".tmp").replace(path)
