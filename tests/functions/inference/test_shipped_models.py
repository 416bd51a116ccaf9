"""The models shipped in functions/models keep the contract and give sane answers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from media_classifier.inference import identity
from media_classifier.inference.model import (
    DENSE_INPUT_BITS_KEY,
    INT8_SCALES_DYADIC,
    INT8_SCALES_KEY,
    MODELS_DIR,
    U8S8_PAIRS_KEY,
    U8S8_PAIRS_VALUE,
    Model,
    ModelRegistry,
    session_options,
    u8s8_saturates,
)
from media_classifier.inference.pipeline import Limits, classify_file
from media_classifier.media.images import prepare_image
from media_classifier.media.video import probe_video, sample_frames
from model_build import cpuid_mask
from model_build.cpu import describe, u8s8_saturates_measured
from model_build.cpu_check import GOAL_AGREEMENT, agreement, fashion_inputs, noise_bound

SAMPLES = Path(__file__).resolve().parents[3] / "samples" / "images"
SHIPPED = sorted(MODELS_DIR.glob("*.onnx"))


def test_every_shipped_model_has_its_own_id() -> None:
    """Ids are file names up to the first dot: two files with one id would shadow each other."""
    keys = [path.name.split(".", 1)[0] for path in SHIPPED]
    assert len(keys) == len(set(keys)), keys


def test_the_default_model_is_shipped() -> None:
    assert (MODELS_DIR / "imagenet_mobilenet_v2.int8.onnx").is_file()


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_model_contract(path: Path) -> None:
    model = Model.load(path, threads=1)
    assert model.task == "classification"
    assert (path.with_suffix("").with_suffix(".md")).is_file(), "every model ships its card"
    h, w = model.input_size
    probs = model.predict(np.random.default_rng(0).integers(0, 255, (2, h, w, 3), np.uint8))
    assert probs.shape == (2, len(model.labels))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-3)


def test_imagenet_model_is_small_enough() -> None:
    assert (MODELS_DIR / "imagenet_mobilenet_v2.int8.onnx").stat().st_size <= 4.5e6


@pytest.mark.parametrize(
    ("sample", "expected"),
    [
        ("chelsea-cat.png", {"Egyptian cat", "tabby", "tiger cat"}),
        # The same photo as an iPhone writes it: HEVC, stored sideways, rotated by metadata.
        ("chelsea-cat-portrait.heic", {"Egyptian cat", "tabby", "tiger cat"}),
        ("coffee.jpg", {"espresso", "cup", "coffee mug"}),
        ("fire-engine.jpg", {"fire engine"}),
    ],
)
def test_imagenet_model_recognises_the_samples(sample: str, expected: set[str]) -> None:
    model = ModelRegistry().get("imagenet_mobilenet_v2")
    result = classify_file(str(SAMPLES / sample), model, top_k=5, limits=Limits())
    assert result.labels[0]["label"] in expected


def test_imagenet_model_names_the_demo_clip_over_its_whole_timeline() -> None:
    model = ModelRegistry().get("imagenet_mobilenet_v2")
    clip = SAMPLES.parent / "video" / "ladybug-zoom.mp4"
    result = classify_file(str(clip), model, top_k=5, limits=Limits())
    assert result.labels[0]["label"] == "ladybug"
    assert {s["label"] for s in result.fields()["video"]["segments"]} == {"ladybug"}


# --- the same answers on every CPU ----------------------------------------------------------
# Optimized execution (fused integer kernels chosen for this CPU, what serving runs) against the
# reference execution (graph optimization off: the file's ops as written, in float between its
# rounding steps) on real images. Fails on a CPU whose int8 kernels distort the answers, such as
# U8S8 on x86 without VNNI when the serving options do not switch to the exact U8U8 path.
FASHION_DIR = Path(__file__).resolve().parents[3] / "data/usr/share/datasets/fashion-mnist"
VIDEO = Path(__file__).resolve().parents[3] / "samples" / "video" / "big_buck_bunny_4s.mp4"


def _imagenet_inputs(model: Model) -> np.ndarray:
    """The sample photos and every frame of the sample clip, through the serving code."""
    photos = [
        prepare_image(p.read_bytes(), model.input_size, model.resize_policy, max_pixels=10**8)
        for p in sorted(SAMPLES.iterdir())
        if p.suffix != ".md"
    ]
    info = probe_video(str(VIDEO))
    frames = [
        frame
        for _, frame in sample_frames(
            str(VIDEO),
            info,
            size=model.input_size,
            policy=model.resize_policy,
            every_sec=1 / 25,
            max_frames=120,
        )
    ]
    return np.stack(photos + frames)


def _real_inputs(model: Model, fashion_images: int) -> np.ndarray:
    """The model's check images: Fashion-MNIST test images, or the ImageNet samples."""
    if "fashion" not in model.name:
        return _imagenet_inputs(model)
    if not FASHION_DIR.is_dir():
        pytest.skip("Fashion-MNIST test images missing: `make fashion-data` fetches them")
    return fashion_inputs(model.input_size, model.resize_policy, limit=fashion_images)[0]


def _probs(model: Model, x: np.ndarray) -> np.ndarray:
    return np.concatenate([model.predict(x[i : i + 50]) for i in range(0, len(x), 50)])


@pytest.mark.slow
@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_optimized_execution_agrees_with_the_reference_on_this_cpu(path: Path) -> None:
    optimized = Model.load(path)
    reference = Model.load(path, reference=True)
    x = _real_inputs(optimized, 2000)
    bound = noise_bound(path)
    result = agreement(_probs(optimized, x), _probs(reference, x), bound)
    cpu = describe()
    summary = f"{path.name} on {cpu['name']} ({cpu['int8_kernels']}, {cpu['serving_int8_path']})"
    assert result["images"] >= 100, result
    # Exact kernels move no probability by more than the bound (saturating ones did by 0.56);
    # near-ties within it may flip on any CPU (model_build/cpu_check.py), no other image may.
    assert result["max_abs_diff"] <= bound, (summary, result)
    assert result["decisive_agreement"] >= GOAL_AGREEMENT, (summary, result)
    if "fashion" in optimized.name:
        # Ten classes, few near-ties: the raw agreement holds the goal too.
        assert result["top1_agreement"] >= GOAL_AGREEMENT, (summary, result)


#: Shipped files with power-of-two activation scales and 4-bit weight scales
#: (``model_build dyadic-scales``, ``dyadic-finetune``): both executions compute the same numbers.
DYADIC = [
    p
    for p in SHIPPED
    if identity.metadata(p.read_bytes()).get(INT8_SCALES_KEY) == INT8_SCALES_DYADIC
]
#: Where U8S8 pairs of products can saturate (AVX2 without VNNI), a value beyond its 7-bit range
#: still can: measured on the Fashion file's 10,000 test images, 30 differ, by at most 0.002.
SATURATED_TOLERANCE = 1e-2


def assert_bit_for_bit(optimized: np.ndarray, reference: np.ndarray, summary: str) -> None:
    """Every image's probabilities equal to the last bit where U8S8 kernels are exact (VNNI,
    AMX, ARM64); where they saturate (AVX2), the same labels and probabilities within
    ``SATURATED_TOLERANCE``."""
    differ = np.flatnonzero((optimized != reference).any(1))
    if u8s8_saturates():
        labels = np.flatnonzero(optimized.argmax(1) != reference.argmax(1))
        assert labels.size == 0, (summary, "labels differ", labels[:20])
        diff = float(np.abs(optimized - reference).max())
        assert diff <= SATURATED_TOLERANCE, (summary, diff, differ.size)
    else:
        assert differ.size == 0, (summary, f"{differ.size} images not bit-identical", differ[:20])


@pytest.mark.slow
@pytest.mark.parametrize("path", DYADIC, ids=[p.name for p in DYADIC])
def test_a_dyadic_file_computes_the_reference_numbers_bit_for_bit(path: Path) -> None:
    """The promise of a dyadic file: serving's optimized execution computes exactly what the
    file means (the reference), near-ties included, so the label never depends on the CPU."""
    optimized = Model.load(path)
    x = _real_inputs(optimized, 2000)
    p_opt, p_ref = _probs(optimized, x), _probs(Model.load(path, reference=True), x)
    cpu = describe()
    summary = f"{path.name} on {cpu['name']} ({cpu['int8_kernels']}, {cpu['serving_int8_path']})"
    assert len(x) >= 100
    assert_bit_for_bit(p_opt, p_ref, summary)


@pytest.mark.skipif(
    os.environ.get(cpuid_mask.ENV_FLAG) is None, reason="for `make test-avx2` (CPUID masked)"
)
def test_the_masked_run_runs_on_avx2_kernels() -> None:
    """`make test-avx2` reruns these tests with AVX-512/VNNI/AMX hidden: they must see it."""
    cpu = describe()
    assert cpu["cpuid_masked"] and cpu["int8_kernels"] == "avx2", cpu
    assert cpu["serving_int8_path"].startswith("U8U8"), cpu


def test_serving_asks_for_exact_int8_kernels_exactly_where_u8s8_saturates() -> None:
    # The CPUID test serving uses says what the kernels do (the probe measures it).
    assert u8s8_saturates() is u8s8_saturates_measured(), describe()
    assert not u8s8_saturates_measured(exact_int8=True), describe()
    opts = session_options(1)
    try:
        configured = opts.get_session_config_entry("session.x64quantprecision") == "1"
    except RuntimeError:  # ONNX Runtime's answer for a key that was never set
        configured = False
    cpu = describe()
    exact_u8s8 = cpu["machine"] not in ("x86_64", "amd64") or cpu["avx512_vnni"]
    assert configured is not exact_u8s8, cpu
    # Per file: pairs of products that may overflow 16 bits need the exact path where U8S8
    # saturates; 7-bit dense inputs or reordered weight pairs (``pair-order``) never do.
    for path in SHIPPED:
        model = Model.load(path, threads=1)
        meta = model.session.get_modelmeta().custom_metadata_map
        fits = meta.get(DENSE_INPUT_BITS_KEY) == "7" or meta.get(U8S8_PAIRS_KEY) == U8S8_PAIRS_VALUE
        assert model.exact_int8 is (u8s8_saturates() and not fits), path.name
    # The reference execution never fuses: graph optimization is off.
    assert session_options(1, reference=True).graph_optimization_level.name == "ORT_DISABLE_ALL"


# --- an AVX2-only CPU, emulated --------------------------------------------------------------
# qemu's user-mode emulator runs this machine's Python on a CPU that offers AVX2 and nothing
# newer (``-cpu Haswell-v4``), so every `make test` checks the int8 path of the CPUs that lack
# VNNI, whatever CPU it runs on. ``make qemu`` installs the emulator (Debian's qemu-user).
QEMU = shutil.which("qemu-x86_64")
#: First-500 Fashion-MNIST test images whose top-1 label saturating U8S8 kernels changed with
#: the 8-bit file shipped before (found under this emulator), then the first images of the set.
FLIPPED_BY_SATURATION = [27, 42, 43, 98, 271, 444]
SATURATION_PROBES = [*FLIPPED_BY_SATURATION, *range(8)]
#: ``model_build`` is imported from the repository; ``media_classifier`` is installed.
PYTHONPATH = [Path(__file__).resolve().parents[3]]
AVX2_SCRIPT = """
import json, sys
import numpy as np
from media_classifier.inference.model import Model, u8s8_saturates
import onnxruntime as ort
from model_build.cpu import describe, u8s8_saturates_measured
from model_build.cpu_check import fashion_inputs
path, picks = sys.argv[1], json.loads(sys.argv[2])
served, reference = Model.load(path, threads=1), Model.load(path, threads=1, reference=True)
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
plain = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
x, _ = fashion_inputs(served.input_size, served.resize_policy, limit=max(picks) + 1)
x = x[picks]
top = lambda p: p.argmax(1).tolist()
print(json.dumps({
    "cpu": describe(),
    "saturates": u8s8_saturates(),
    "exact_path_saturates": u8s8_saturates_measured(exact_int8=True),
    "exact_int8": served.exact_int8,
    "served": top(served.predict(x)),
    "reference": top(reference.predict(x)),
    "plain": top(plain.run(None, {plain.get_inputs()[0].name: x})[0]),
}))
"""


def _on_avx2(script: str, *args: str) -> str:
    """Run ``script`` with this Python on the emulated AVX2-only CPU; its standard output."""
    run = subprocess.run(
        [str(QEMU), "-cpu", "Haswell-v4", sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(map(str, PYTHONPATH))},
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


@pytest.mark.slow
@pytest.mark.skipif(QEMU is None, reason="qemu-x86_64 missing: `make qemu` installs qemu-user")
def test_an_avx2_only_cpu_serves_the_fashion_file_with_this_cpus_answers() -> None:
    if not FASHION_DIR.is_dir():
        pytest.skip("Fashion-MNIST test images missing: `make fashion-data` fetches them")
    path = MODELS_DIR / "fashion_mnist_mobilenet_v2.int8.onnx"
    stdout = _on_avx2(AVX2_SCRIPT, str(path), json.dumps(SATURATION_PROBES))
    out = json.loads(stdout.strip().splitlines()[-1])
    assert out["cpu"]["int8_kernels"] == "avx2" and out["cpu"]["emulated"], out["cpu"]
    # Serving's CPUID test and the probe agree: U8S8 saturates here, the exact path does not.
    assert out["saturates"] and out["cpu"]["u8s8_saturates"], out
    assert not out["exact_path_saturates"], out
    # The file's 7-bit dense inputs cannot saturate U8S8: served by it, as the plain session
    # is, with the labels this CPU gives (saturation changed 6 of them with the 8-bit file).
    assert out["exact_int8"] is False, out
    here = Model.load(path, threads=1)
    x, _ = fashion_inputs(here.input_size, here.resize_policy, limit=max(SATURATION_PROBES) + 1)
    assert out["served"] == out["plain"] == here.predict(x[SATURATION_PROBES]).argmax(1).tolist()
    # The reference (float between rounding steps) differs only on near-ties (noise bound).
    assert sum(a == b for a, b in zip(out["served"], out["reference"], strict=True)) >= 12, out


# The question behind all of the above: does a user get the same answer whichever CPU the
# platform picks? Every shipped model, on the same real images as the reference check, served
# on this CPU and on the emulated AVX2-only one (the serving options, so the exact U8U8 path
# there). The images are prepared once, here: emulation only runs the model.
CROSS_CPU_SCRIPT = """
import sys
import numpy as np
from media_classifier.inference.model import Model
from model_build.cpu import describe
model = Model.load(sys.argv[1], threads=1)
x = np.load(sys.argv[2])
np.save(sys.argv[3], np.concatenate([model.predict(x[i : i + 50]) for i in range(0, len(x), 50)]))
print(describe()["int8_kernels"], describe()["emulated"])
"""
#: Float layers (the ImageNet file's first convolutions, softmax) may round differently with
#: another CPU's SIMD width; integer layers may not differ at all.
CROSS_CPU_TOLERANCE = 1e-4


@pytest.mark.slow
@pytest.mark.skipif(QEMU is None, reason="qemu-x86_64 missing: `make qemu` installs qemu-user")
@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_an_avx2_only_cpu_gives_the_answers_of_this_cpu(path: Path, tmp_path: Path) -> None:
    here = Model.load(path)
    x = _real_inputs(here, 200)
    inputs, outputs = tmp_path / "x.npy", tmp_path / "avx2.npy"
    np.save(inputs, x)
    stdout = _on_avx2(CROSS_CPU_SCRIPT, str(path), str(inputs), str(outputs))
    assert stdout.split()[-2:] == ["avx2", "True"], stdout
    result = agreement(np.load(outputs), _probs(here, x))
    cpu = describe()
    summary = f"{path.name}: AVX2-only (emulated) against {cpu['name']} ({cpu['int8_kernels']})"
    assert result["images"] >= 100, result
    assert result["top1_agreement"] >= GOAL_AGREEMENT, (summary, result)
    assert result["max_abs_diff"] <= CROSS_CPU_TOLERANCE, (summary, result)
