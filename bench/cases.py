"""One benchmark case each: a function that sets up, times, and returns a result dict.

Each case runs in its own fresh process (``bench/worker.py``) so that its peak RSS is its
own and nothing it imports (torch for the notebook way) leaks into another case's numbers.
The project cases call the same functions the deployed code calls
(:func:`media_classifier.pipeline.classify_bytes` / ``classify_file``), so what is measured
is what is served.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.timing import Budget, measure

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
    from media_classifier.model import Model
    from media_classifier.pipeline import Limits, classify_bytes

    loaded = Model.load(model)
    limits = Limits()
    data = Path(image).read_bytes()
    stats, outs = measure(lambda: classify_bytes(data, loaded, top_k=TOP_K, limits=limits), budget)
    stages = _stage_medians([o.timings for o in outs])
    return {"time": stats, "top1": outs[-1].labels[0]["label"], "stages_median_ms": stages}


def inference(image: str, model: str, batch: int, budget: Budget, **_: Any) -> dict[str, Any]:
    """``Model.predict`` alone on a real prepared image repeated ``batch`` times."""
    import numpy as np

    from media_classifier.images import prepare_image
    from media_classifier.model import Model

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
    from media_classifier.model import Model
    from media_classifier.pipeline import Limits, classify_file

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


CASES = {
    "notebook_image": notebook_image,
    "pipeline_image": pipeline_image,
    "inference": inference,
    "video": video,
}
