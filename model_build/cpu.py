"""Which CPU a number came from, as far as int8 inference is concerned.

ONNX Runtime picks its integer kernels at run time from the CPU's instruction sets: AVX2,
AVX-512 (without VNNI), AVX-512 VNNI, AMX on x86; the dot-product extension on ARM64. Speed
and, for U8S8 models, the answers themselves differ between them, so every accuracy or
latency figure this build step writes says which of them it ran on.

Instruction sets are read from CPUID through numpy's dispatcher, not from ``/proc/cpuinfo``:
under a user-mode emulator (``qemu-x86_64 -cpu Haswell``, how an AVX2-only CPU is checked on
a newer machine) ``/proc/cpuinfo`` still describes the host, while CPUID describes what the
program, ONNX Runtime included, actually gets.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from numpy._core._multiarray_umath import __cpu_features__ as _CPUID

from model_build import cpuid_mask


def _proc_cpuinfo() -> tuple[str, set[str]]:
    """Model name and flags of the first processor in ``/proc/cpuinfo`` (Linux), else blanks."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), set()
    name, flags = "", set[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not name:
            name = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return name or platform.machine(), flags


#: How an emulated CPU is named, where "<KERNELS>-only CPU" would mislead.
_EMULATED = {"arm64-dot": "ARM64 CPU with dot product", "arm64": "ARM64 CPU without dot product"}


def describe() -> dict[str, Any]:
    """The CPU as int8 kernels see it: name, the instruction sets that matter, the kernel class.

    ``int8_kernels`` names the class ONNX Runtime's MLAS library dispatches to, from the
    instruction sets: ``amx``, ``avx512-vnni``, ``avx-vnni``, ``avx512``, ``avx2``, ``arm64-dot``,
    ``arm64`` or ``other``. ``emulated`` is true when CPUID offers less than the host
    (a user-mode emulator), ``cpuid_masked`` when :mod:`model_build.cpuid_mask` hides the
    newer sets on real silicon (times count there); the name then says which.
    """
    name, flags = _proc_cpuinfo()
    machine = platform.machine().lower()
    feats = {
        "avx2": bool(_CPUID.get("AVX2")),
        "avx512f": bool(_CPUID.get("AVX512F")),
        "avx512_vnni": bool(_CPUID.get("AVX512VNNI")),
        # numpy does not probe AMX or AVX-VNNI; the kernel only trusts them where CPUID (as
        # numpy sees it) agrees with the host flags on the AVX-512 level.
        "amx": "amx_int8" in flags and bool(_CPUID.get("AVX512F")),
        "avx_vnni": "avx_vnni" in flags and bool(_CPUID.get("AVX2")),
        "arm64_dot": bool(_CPUID.get("ASIMDDP")),
    }
    masked = cpuid_mask.loaded()
    if masked:  # the mask clears these CPUID bits too; /proc/cpuinfo still lists them
        feats["amx"] = feats["avx_vnni"] = False
    emulated = not masked and (
        ("avx512f" in flags and not feats["avx512f"]) or ("avx2" in flags and not feats["avx2"])
    )
    if emulated:
        # /proc/cpuinfo lists the host's sets, not the emulated CPU's, and numpy does not probe
        # these two: taken as absent (an emulated Haswell on a host with AVX-VNNI has none).
        feats["amx"] = feats["avx_vnni"] = False
    if feats["amx"]:
        kernels = "amx"
    elif feats["avx512_vnni"]:
        kernels = "avx512-vnni"
    elif feats["avx_vnni"]:
        kernels = "avx-vnni"
    elif feats["avx512f"]:
        kernels = "avx512"
    elif feats["avx2"]:
        kernels = "avx2"
    elif machine in ("aarch64", "arm64"):
        kernels = "arm64-dot" if feats["arm64_dot"] else "arm64"
    else:
        kernels = "other"
    if emulated:
        kind = _EMULATED.get(kernels, f"{kernels.upper()}-only CPU")
        name = f"{kind} emulated by qemu on {name}"
    elif masked:
        name = f"{name}, AVX-512/VNNI/AMX hidden from CPUID ({kernels.upper()} kernels)"
    from media_classifier.inference.model import u8s8_saturates

    # What an 8-bit file gets here; a file with 7-bit dense inputs is served by U8S8 anywhere
    # (``cpu_check.measure`` records the path the file itself got).
    path = int8_path(exact=u8s8_saturates())
    return {
        "name": name,
        "machine": machine,
        "int8_kernels": kernels,
        "serving_int8_path": path,
        # Measured, not inferred: whether this CPU's U8S8 kernels saturate (the probe below).
        "u8s8_saturates": u8s8_saturates_measured(),
        "emulated": emulated,
        "cpuid_masked": masked,
    } | feats


def int8_path(*, exact: bool) -> str:
    """The int8 kernels serving runs, in the words of the cards' CPU tables."""
    return "U8U8 (x64quantprecision)" if exact else "U8S8"


#: The saturation probe: uint8 activations of 255 times int8 weights of 127 over K terms, every
#: pair of products 64,770, twice what 16-bit arithmetic holds.
PROBE_K, PROBE_EXACT = 64, 64 * 255 * 127


def saturation_probe() -> bytes:
    """A tiny int8 QDQ file whose answer shows whether U8S8 kernels saturate on this CPU.

    QuantizeLinear -> DequantizeLinear -> MatMul with DequantizeLinear'd int8 weights, which
    ONNX Runtime fuses into its U8S8 integer kernel as it does the models' layers. Exact
    kernels return ``PROBE_EXACT`` in every cell; saturating ones (``vpmaddubsw``) clamp each
    pair at 32,767 and return about half of it.
    """
    from onnx import TensorProto, helper

    k, n = PROBE_K, 16
    init = [
        helper.make_tensor("s", TensorProto.FLOAT, [], [1.0]),
        helper.make_tensor("z", TensorProto.UINT8, [], [0]),
        helper.make_tensor("w", TensorProto.INT8, [k, n], [127] * (k * n)),
        helper.make_tensor("ws", TensorProto.FLOAT, [], [1.0]),
        helper.make_tensor("wz", TensorProto.INT8, [], [0]),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"]),
        helper.make_node("MatMul", ["xd", "wd"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "saturation_probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, n])],
        init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def u8s8_saturates_measured(*, exact_int8: bool = False) -> bool:
    """Run :func:`saturation_probe` with the serving options: does this CPU's U8S8 saturate?

    ``exact_int8=True`` asks for ONNX Runtime's U8U8 path, which must never saturate.
    Serving decides from CPUID (``u8s8_saturates``); this measures what the kernels do.
    """
    import numpy as np
    import onnxruntime as ort

    from media_classifier.inference.model import session_options

    session = ort.InferenceSession(
        saturation_probe(), session_options(1, exact_int8=exact_int8), ["CPUExecutionProvider"]
    )
    y = session.run(None, {"x": np.full((4, PROBE_K), 255.0, np.float32)})[0]
    return not bool(np.all(y == PROBE_EXACT))


def summary(cpu: dict[str, Any]) -> str:
    """One line for tables: name, then the instruction sets present."""
    flags = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx", "arm64_dot")
    present = [k for k in flags if cpu.get(k)]
    return f"{cpu['name']} ({', '.join(present) or cpu['machine']})"
