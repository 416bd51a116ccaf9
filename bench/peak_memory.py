"""Peak memory of one function instance on the largest inputs the default limits accept.

Why: a Cloud Function instance is sized by memory (1 GiB = 0.58 vCPU, 2 GiB = 1 vCPU),
and an upload that pushes it past its size kills the instance mid-request, leaving
no result document. The target is under 1 GiB with the default ``Limits``. The
worst cases are not the biggest files but the biggest *decoded* ones: 50 MP (the
pixel limit) in formats without JPEG's draft mode, transparency (composited in
RGBA), 16-bit samples, animations at the pixel budget, and 4K/8K video.

Each case runs ``classify_file`` with the shipped model and default limits in a fresh
Python process, so ``ru_maxrss`` is that case's own peak (interpreter, imports,
ONNX session and the work). ffmpeg runs as a child process; its peak is reported
separately (``RUSAGE_CHILDREN``) and the instance total is the sum, an upper bound.

    .venv/bin/python -m bench.peak_memory            # all cases, table to stdout
    .venv/bin/python -m bench.peak_memory png-50mp-rgba video-8k
    .venv/bin/python -m bench.peak_memory --out bench/results/peak_memory.md

Inputs are generated once into ``.cache/peak_memory/`` (git-ignored; a few hundred MB).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache" / "peak_memory"
MODEL = REPO / "functions" / "models" / "imagenet_mobilenet_v2.int8.onnx"
#: 8660 x 5773 = 49,994,180 pixels: the largest 3:2 photo under the 50 MP default.
W50, H50 = 8660, 5773
TARGET_MIB = 1024


def _photo(width: int, height: int, mode: str = "RGB"):
    """A large image with texture (so encoders work as hard as on a photo), built cheaply."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    tile = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    reps = (height // 256 + 1, width // 256 + 1, 1)
    pixels = np.tile(tile, reps)[:height, :width]
    ramp = np.linspace(0, 120, width, dtype=np.float32)[None, :, None]
    pixels = (pixels * 0.5 + ramp).astype(np.uint8)
    img = Image.fromarray(pixels, "RGB")
    if mode == "RGBA":
        alpha = Image.linear_gradient("L").resize((width, height))
        img.putalpha(alpha)
    elif mode != "RGB":
        img = img.convert(mode)
    return img


def _save(path: Path, img, fmt: str, **kwargs: object) -> None:
    img.save(path, format=fmt, **kwargs)


def _png16(path: Path) -> None:
    """16-bit greyscale PNG (mode ``I;16``): the point() conversion path."""
    import numpy as np
    from PIL import Image

    ramp = np.linspace(0, 65535, W50, dtype=np.uint16)[None, :].repeat(H50, axis=0)
    Image.fromarray(ramp).save(path, format="PNG", compress_level=1)  # uint16 -> I;16


def _tiff(path: Path) -> None:
    from PIL import Image

    img = Image.linear_gradient("L").resize((W50, H50)).convert("RGB")
    img.save(path, format="TIFF", compression="tiff_deflate")


def _gif_rgba(path: Path) -> None:
    from PIL import Image

    img = _photo(W50, H50).quantize(64, method=Image.Quantize.FASTOCTREE)
    img.save(path, format="GIF", transparency=0)


def _animated_gif(path: Path) -> None:
    """20 frames of 7000 x 7000: 980 MP in all, just under the animation budget (1,000 MP)."""
    from tools.hostile_corpus import gif_frames_on_screen

    path.write_bytes(gif_frames_on_screen(7_000, 7_000, frames=20))


def _video(path: Path, size: str, seconds: int, fps: int) -> None:
    import imageio_ffmpeg

    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y"]
    cmd += ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}", "-t", str(seconds)]
    cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "30", "-pix_fmt", "yuv420p"]
    cmd.append(str(path))
    subprocess.run(cmd, check=True, timeout=600)


def _heic(path: Path) -> None:
    """A 32 MP HEIC (8000 x 4000, one HEVC picture, x265 via pillow-heif).

    Not 50 MP: phones write large HEICs as grids of 512 x 512 tiles, which pillow-heif's
    x265 cannot write, and single pictures this large fail in libde265 once they carry
    more than ~10-15 MB of HEVC data (CORRUPT_MEDIA: a 6000 x 4000 picture of 17 MB
    did, this one of 6.6 MB does not). libheif assembles a grid into one full-size
    image, so the decoded memory per pixel is the same: 50 MP costs ~50/32 of the
    decoding part of this case.
    """
    import pillow_heif

    pillow_heif.from_pillow(_photo(8000, 4000)).save(path, quality=30)


def _image_case(fmt: str, mode: str = "RGB", **kwargs: object) -> Callable[[Path], None]:
    return lambda path: _save(path, _photo(W50, H50, mode), fmt, **kwargs)


#: name -> (file name, builder, what it stresses)
CASES: dict[str, tuple[str, Callable[[Path], None], str]] = {
    "jpeg-50mp": ("50mp.jpg", _image_case("JPEG", quality=90), "baseline JPEG, draft mode"),
    "jpeg-50mp-progressive": (
        "50mp-progressive.jpg",
        _image_case("JPEG", quality=90, progressive=True),
        "progressive JPEG: whole-image coefficient buffer",
    ),
    "jpeg-50mp-cmyk": ("50mp-cmyk.jpg", _image_case("JPEG", "CMYK"), "CMYK JPEG"),
    "png-50mp": ("50mp.png", _image_case("PNG", compress_level=1), "RGB PNG, full decode"),
    "png-50mp-rgba": (
        "50mp-rgba.png",
        _image_case("PNG", "RGBA", compress_level=1),
        "RGBA PNG: alpha composited on white",
    ),
    "png-50mp-16bit": ("50mp-16bit.png", _png16, "16-bit greyscale PNG"),
    "gif-50mp-transparent": ("50mp.gif", _gif_rgba, "palette + transparency -> RGBA"),
    "webp-50mp": ("50mp.webp", _image_case("WEBP", quality=80, method=0), "lossy WebP"),
    "tiff-50mp": ("50mp.tiff", _tiff, "deflate TIFF (smooth, so it fits the byte limit)"),
    "heic-32mp": ("32mp.heic", _heic, "HEIC, 32 MP: libheif decodes full size, no draft mode"),
    "avif-50mp": (
        "50mp.avif",
        _image_case("AVIF", quality=60, speed=10),
        "AVIF: libavif decodes full size",
    ),
    "gif-anim-980mp": ("anim-7000.gif", _animated_gif, "20 frames of 49 MP (animation budget)"),
    "video-1080p": (
        "1080p-60s.mp4",
        lambda p: _video(p, "1920x1080", 60, 30),
        "H.264 1080p30, 60 s",
    ),
    "video-4k": ("4k-10s.mp4", lambda p: _video(p, "3840x2160", 10, 30), "H.264 2160p30, 10 s"),
    "video-8k": ("8k-2s.mp4", lambda p: _video(p, "7680x4320", 2, 30), "H.264 4320p30, 2 s"),
}


def ensure_input(name: str) -> Path:
    """Build a case's input once, in a child process.

    Why a child: building a 50 MP image takes GBs, and a measuring worker forked
    from a big parent would inherit its high-water mark in ``ru_maxrss``.
    """
    file_name, _, _ = CASES[name]
    path = CACHE / file_name
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = path.with_name("partial-" + path.name)
        subprocess.run(
            [sys.executable, "-m", "bench.peak_memory", "--build", name, str(partial)],
            check=True,
            timeout=900,
            cwd=REPO,
        )
        partial.rename(path)
    return path


def _tree_rss_kib(pid: int) -> int:
    """Resident memory of a process and all its descendants (``/proc``, Linux only)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            total = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))
        tasks = os.listdir(f"/proc/{pid}/task")
    except (OSError, StopIteration):
        return 0
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                children = [int(c) for c in fh.read().split()]
        except OSError:
            continue
        total += sum(_tree_rss_kib(child) for child in children)
    return total


class TreeSampler:
    """Samples this process tree's total RSS every few ms while the case runs.

    Why: ``ru_maxrss`` of the children is the largest *single* ffmpeg, but the video
    path runs several decoders at once; the instance pays for all of them together.
    """

    def __init__(self, interval: float = 0.005) -> None:
        import threading

        self.peak_kib = 0
        self._stop = threading.Event()
        self._interval = interval
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, _tree_rss_kib(os.getpid()))
            self._stop.wait(self._interval)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_case_here(path: Path) -> dict[str, object]:
    """The worker: classify one file in this fresh process and report its peaks."""
    from media_classifier.errors import MediaError
    from media_classifier.inference.model import Model
    from media_classifier.inference.pipeline import Limits, classify_file

    model = Model.load(MODEL)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    with TreeSampler() as sampler:
        try:
            result = classify_file(str(path), model, top_k=5, limits=Limits())
            outcome = f"done ({result.labels[0]['label']})"
        except MediaError as exc:
            outcome = f"error {exc.code}"
    return {
        "tree_sampled_mib": round(sampler.peak_kib / 1024, 1),
        "outcome": outcome,
        "seconds": round(time.perf_counter() - started, 1),
        "model_loaded_mib": round(base, 1),
        "peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "ffmpeg_peak_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
    }


def measure(name: str) -> dict[str, object]:
    try:
        path = ensure_input(name)
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        return {"case": name, "outcome": f"input not built: {exc}"}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.peak_memory", "--worker", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        return {"case": name, "outcome": f"CRASHED rc={proc.returncode}: {proc.stderr[-300:]}"}
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    row.update(case=name, file_mib=round(path.stat().st_size / 2**20, 1), what=CASES[name][2])
    # Upper bound: own peak + largest ffmpeg, or the sampled sum of all at once if larger.
    bound = float(row["peak_mib"]) + float(row["ffmpeg_peak_mib"])
    row["instance_mib"] = round(max(bound, float(row["tree_sampled_mib"])), 1)
    return row


def table(rows: list[dict[str, object]]) -> str:
    head = (
        "| case | input | file MiB | outcome | s | model loaded MiB | peak MiB (python) "
        "| ffmpeg peak MiB | tree sampled MiB | instance MiB | < 1 GiB |"
    )
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        ok = "yes" if float(r.get("instance_mib", 1e9)) < TARGET_MIB else "NO"
        lines.append(
            f"| {r['case']} | {r.get('what', '')} | {r.get('file_mib', '')} | {r['outcome']} "
            f"| {r.get('seconds', '')} | {r.get('model_loaded_mib', '')} | {r.get('peak_mib', '')} "
            f"| {r.get('ffmpeg_peak_mib', '')} | {r.get('tree_sampled_mib', '')} "
            f"| {r.get('instance_mib', '')} | {ok} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="*", help=f"default: all of {', '.join(CASES)}")
    parser.add_argument("--out", type=Path, help="also write the table (markdown) here")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--build", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.build:
        CASES[args.build[0]][1](Path(args.build[1]))
        return 0
    if args.worker:
        print(json.dumps(run_case_here(args.worker)))
        return 0
    names = args.cases or list(CASES)
    unknown = set(names) - set(CASES)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}")
    rows = []
    for name in names:
        print(f"  {name}...", file=sys.stderr, flush=True)
        rows.append(measure(name))
        print(f"    {json.dumps(rows[-1])}", file=sys.stderr, flush=True)
    text = table(rows)
    print(text)
    if args.out:
        cpus = os.cpu_count()
        header = (
            "# Peak memory per instance, default limits\n\n"
            f"`bench/peak_memory.py` on {cpus} CPUs, model `{MODEL.name}`; one fresh process "
            "per case. python peak = ru_maxrss (interpreter, model, work); ffmpeg peak = the "
            "largest single ffmpeg child; tree sampled = python + all children together, "
            "sampled every 5 ms; instance = the larger of (python + ffmpeg) and tree sampled."
            "\n\n"
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(header + text + "\n")
    worst = max((float(r.get("instance_mib", 1e9)) for r in rows), default=0.0)
    return 0 if worst < TARGET_MIB else 1


if __name__ == "__main__":
    sys.exit(main())
