"""One benchmark case each: a function that sets up, times, and returns a result dict.

Each case runs in its own fresh process (``bench/worker.py``) so that its peak RSS is its
own and nothing it imports (torch for the notebook way) leaks into another case's numbers.
The project cases call the same functions the deployed code calls
(:func:`media_classifier.inference.pipeline.classify_bytes` / ``classify_file``), so what is
measured is what is served.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.timing import Budget, measure, percentile, summarize

TOP_K = 5
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TORCH_THREADS = 2


def notebook_image(image: str, budget: Budget, **_: Any) -> dict[str, Any]:
    """What a user does without this project: Pillow full decode, torchvision transforms,
    PyTorch eager MobileNetV2 on the CPU with 2 threads, softmax, top-5."""
    import io

    import torch
    from PIL import Image
    from torchvision import models, transforms

    from model_build.backbones import get_backbone

    torch.set_num_threads(TORCH_THREADS)
    weights = models.MobileNet_V2_Weights.IMAGENET1K_V1
    labels = weights.meta["categories"]
    net = models.mobilenet_v2()
    net.load_state_dict(torch.load(get_backbone("mobilenet_v2").find_weights(), map_location="cpu"))
    net.eval()
    preprocess = transforms.Compose(
        [
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    data = Path(image).read_bytes()

    def once() -> list[dict[str, Any]]:
        img = Image.open(io.BytesIO(data)).convert("RGB")
        batch = preprocess(img).unsqueeze(0)
        with torch.no_grad():
            probs = torch.softmax(net(batch)[0], dim=0)
        scores, idx = torch.topk(probs, TOP_K)
        return [
            {"label": labels[i], "score": round(float(s), 6)}
            for s, i in zip(scores.tolist(), idx.tolist(), strict=True)
        ]

    stats, outs = measure(once, budget)
    return {"time": stats, "top1": outs[-1][0]["label"], "torch": torch.__version__}


def pipeline_image(image: str, model: str, budget: Budget, **_: Any) -> dict[str, Any]:
    """Bytes to labels through the project's pipeline (sniff, decode, resize, ORT, top-k)."""
    from media_classifier.inference.model import Model
    from media_classifier.inference.pipeline import Limits, classify_bytes

    loaded = Model.load(model)
    limits = Limits()
    data = Path(image).read_bytes()
    stats, outs = measure(lambda: classify_bytes(data, loaded, top_k=TOP_K, limits=limits), budget)
    stages = _stage_medians([o.timings for o in outs])
    return {"time": stats, "top1": outs[-1].labels[0]["label"], "stages_median_ms": stages}


def inference(image: str, model: str, batch: int, budget: Budget, **_: Any) -> dict[str, Any]:
    """``Model.predict`` alone on a real prepared image repeated ``batch`` times."""
    import numpy as np

    from media_classifier.inference.model import Model
    from media_classifier.media.images import prepare_image

    loaded = Model.load(model)
    array = prepare_image(
        Path(image).read_bytes(), loaded.input_size, loaded.resize_policy, max_pixels=50_000_000
    )
    x = np.ascontiguousarray(np.repeat(array[None], batch, axis=0))
    stats, _ = measure(lambda: loaded.predict(x), budget)
    per_image = round(stats["median_ms"] / batch, 3)
    return {"time": stats, "batch": batch, "per_image_median_ms": per_image}


def video(
    video: str, model: str, every_sec: float, budget: Budget, seconds: float, **_: Any
) -> dict[str, Any]:
    """A whole video end to end through ``classify_file`` at one sampling interval."""
    from media_classifier.inference.model import Model
    from media_classifier.inference.pipeline import Limits, classify_file

    loaded = Model.load(model)
    limits = Limits(frame_interval_sec=every_sec, max_frames=max(600, int(seconds / every_sec) + 1))
    stats, outs = measure(lambda: classify_file(video, loaded, top_k=TOP_K, limits=limits), budget)
    frames = outs[-1].video["framesAnalyzed"]
    wall_s = stats["median_ms"] / 1000.0
    return {
        "time": stats,
        "frames": frames,
        "frames_per_sec": round(frames / wall_s, 1),
        "x_realtime": round(seconds / wall_s, 1),
        "top1": outs[-1].labels[0]["label"],
        "stages_median_ms": _stage_medians([o.timings for o in outs]),
    }


def _stage_medians(timings: list[dict[str, float]]) -> dict[str, float]:
    """Median of each pipeline stage's milliseconds (the pipeline's own clock)."""
    import statistics

    keys = {k for t in timings for k in t}
    return {k: round(statistics.median(t.get(k, 0.0) for t in timings), 3) for k in sorted(keys)}


# --- floors: each goal against what its parts cost alone, in the same process -------------


def rounds(fns: dict[str, Callable[[], Any]], budget: Budget) -> dict[str, list[float]]:
    """Call every function once per round, in turn, under ``budget``; ms samples of each.

    Why rounds: a goal stated as "the product over its floor" is judged on the ratio of
    samples taken a moment apart, so load that comes and goes during a run (the machine
    is shared) moves both sides of each ratio alike, where medians of separate runs would
    each catch a different moment.
    """
    for _ in range(budget.warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    start = time.perf_counter()
    done = 0
    while done < budget.max_iters and (
        done < budget.min_iters or time.perf_counter() - start < budget.seconds
    ):
        for name, fn in fns.items():
            t0 = time.perf_counter_ns()
            fn()
            samples[name].append((time.perf_counter_ns() - t0) / 1e6)
        done += 1
    return samples


def ratio_summary(top: list[float], bottom: list[float]) -> dict[str, Any]:
    """Median, p90 and min of the per-round ratios ``top[i] / bottom[i]``."""
    ratios = [a / b for a, b in zip(top, bottom, strict=True)]
    return {
        "n": len(ratios),
        "median": round(statistics.median(ratios), 4),
        "p90": round(percentile(ratios, 90), 4),
        "min": round(min(ratios), 4),
    }


def _floor_result(
    samples: dict[str, list[float]], product: str, parts: tuple[str, ...]
) -> dict[str, Any]:
    floor = [sum(samples[p][i] for p in parts) for i in range(len(samples[product]))]
    return {
        "time": {name: summarize(ms) for name, ms in samples.items()},
        "floor_parts": list(parts),
        "floor": summarize(floor),
        "ratio": ratio_summary(samples[product], floor),
    }


def image_floor(image: str, model: str, budget: Budget, **_: Any) -> dict[str, Any]:
    """``classify_bytes`` against its floor: the decoder alone at the scale the product uses
    + inference alone (a PNG's floor also holds the resize, as its goal says).

    JPEG: Pillow's libjpeg-turbo decode at the draft scale ``load_rgb`` asks for. PNG:
    ``imagecodecs.png_decode`` (libpng, what ``png_fast`` calls) to an array, then the
    resize to the model input alone (``fit_to_model`` on the decoded image).
    """
    import io

    from PIL import Image

    from media_classifier.inference.model import Model
    from media_classifier.inference.pipeline import Limits, classify_bytes
    from media_classifier.media import images

    loaded = Model.load(model)
    limits = Limits()
    size, policy = loaded.input_size, loaded.resize_policy
    data = Path(image).read_bytes()
    header = images.open_image(data, max_pixels=limits.max_pixels)
    rgb = images.decode_image(data, max_pixels=limits.max_pixels, target=size, policy=policy)
    batch = images.fit_to_model(rgb, size, policy)[None]
    if header.format == "JPEG":
        request = images._draft_request(header, size, policy)

        def decode() -> Any:
            img = Image.open(io.BytesIO(data))
            img.draft("RGB", request)
            img.load()
            return img

        parts: tuple[str, ...] = ("decode", "inference")
    elif header.format == "PNG":
        import imagecodecs

        def decode() -> Any:
            return imagecodecs.png_decode(data)

        parts = ("decode", "resize", "inference")
    else:
        raise ValueError(f"no floor defined for {header.format}")
    fns = {
        "product": lambda: classify_bytes(data, loaded, top_k=TOP_K, limits=limits),
        "decode": decode,
        "resize": lambda: images.fit_to_model(rgb, size, policy),
        "inference": lambda: loaded.predict(batch),
    }
    return _floor_result(rounds(fns, budget), "product", parts) | {"format": header.format}


def image_pair(images: dict[str, str], model: str, budget: Budget, **_: Any) -> dict[str, Any]:
    """``classify_bytes`` on several files in turn; each one's ratio to the first one."""
    from media_classifier.inference.model import Model
    from media_classifier.inference.pipeline import Limits, classify_bytes

    loaded = Model.load(model)
    limits = Limits()
    data = {name: Path(path).read_bytes() for name, path in images.items()}
    top1 = {}

    def one(name: str) -> Callable[[], Any]:
        def run() -> None:
            top1[name] = classify_bytes(data[name], loaded, top_k=1, limits=limits).labels[0]

        return run

    samples = rounds({name: one(name) for name in data}, budget)
    first = next(iter(data))
    return {
        "time": {name: summarize(ms) for name, ms in samples.items()},
        "ratio_to": first,
        "ratio": {name: ratio_summary(ms, samples[first]) for name, ms in samples.items()},
        "top1": {name: label["label"] for name, label in top1.items()},
    }


def video_floor(
    video: str, model: str, every_sec: float, budget: Budget, seconds: float, **_: Any
) -> dict[str, Any]:
    """``classify_file`` against its floor: ffmpeg producing the sampled frames alone (the
    product's own decoders: packet scan, keyframe-aligned chunks on every CPU, crop and
    scale in ffmpeg; frames read and dropped) + inference alone on as many frames, in the
    product's batches."""
    import numpy as np

    from media_classifier.inference.model import Model
    from media_classifier.inference.pipeline import Limits, classify_file
    from media_classifier.media import video as video_mod

    loaded = Model.load(model)
    limits = Limits(frame_interval_sec=every_sec, max_frames=max(600, int(seconds / every_sec) + 1))
    info = video_mod.probe_video(video)

    def sample() -> list[np.ndarray]:
        frames = video_mod.sample_frames(
            video,
            info,
            size=loaded.input_size,
            policy=loaded.resize_policy,
            every_sec=limits.frame_interval_sec,
            max_frames=limits.max_frames,
        )
        return [frame for _, frame in frames]

    frames = np.stack(sample())
    size = limits.batch_size

    def infer() -> None:
        for i in range(0, len(frames), size):
            loaded.predict(frames[i : i + size])

    fns = {
        "product": lambda: classify_file(video, loaded, top_k=TOP_K, limits=limits),
        "sample": sample,
        "inference": infer,
    }
    samples = rounds(fns, budget)
    wall_s = statistics.median(samples["product"]) / 1000.0
    return _floor_result(samples, "product", ("sample", "inference")) | {
        "frames": len(frames),
        "x_realtime": round(seconds / wall_s, 1),
    }


CASES = {
    "notebook_image": notebook_image,
    "pipeline_image": pipeline_image,
    "inference": inference,
    "video": video,
    "image_floor": image_floor,
    "image_pair": image_pair,
    "video_floor": video_floor,
}
