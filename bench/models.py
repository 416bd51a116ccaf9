"""The two models the benchmark compares: the shipped int8 file and its fp32 twin.

The fp32 twin is not shipped (it is ~14 MB and slower); ``python -m model_build
export-pretrained`` leaves it in a git-ignored build folder. A clean clone does not have
it, so :func:`ensure_fp32` re-exports it with model_build's own export code (same weights,
same wrapper, same metadata), without the slower quantization and agreement steps.
"""

from __future__ import annotations

from pathlib import Path

from bench.paths import FP32_MODEL, INT8_MODEL


def ensure_fp32(path: Path = FP32_MODEL) -> Path:
    """The fp32 ONNX model, exported now if missing (needs the model_build venv: torch)."""
    if path.is_file():
        return path
    from model_build import pretrained
    from model_build.backbones import get_backbone
    from model_build.contract import ModelMeta
    from model_build.onnx_export import export_onnx

    print(f"fp32 model missing: exporting {path} with model_build ...", flush=True)
    backbone = get_backbone("mobilenet_v2")
    net = backbone.pretrained(pretrained.SIZE[0]).eval()
    meta = ModelMeta(
        pretrained.NAME, pretrained.VERSION, pretrained._labels(), "center_crop", pretrained.SIZE
    )
    return export_onnx(net, meta, backbone.mean, backbone.std, path)


def model_files(fp32: Path = FP32_MODEL, int8: Path = INT8_MODEL) -> dict[str, dict[str, object]]:
    """File sizes of both models, for the table."""
    return {
        name: {"path": str(p), "bytes": p.stat().st_size, "mib": round(p.stat().st_size / 2**20, 2)}
        for name, p in (("fp32", fp32), ("int8", int8))
        if p.is_file()
    }
