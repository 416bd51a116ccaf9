"""Run a process with AVX-512, VNNI and AMX hidden from CPUID: AVX2 kernels on this silicon.

Why: ONNX Runtime picks its int8 kernels from CPUID, and on x86 CPUs without VNNI the serving
code switches to the exact (slower) U8U8 kernels. Whether that costs time can only be measured
on AVX2 kernels running natively; an emulator (``qemu-x86_64 -cpu Haswell``) gives their
answers but not their speed. Linux can make the CPUID instruction fault for one process
("CPUID faulting", on Intel since Ivy Bridge and on recent AMD, in KVM guests too);
``cpuid_mask.c``, preloaded, answers it with the AVX-512, VNNI and AMX bits cleared. Everything
else runs as it would: same silicon, same clocks, only the kernel choice changes. It is not an
AVX2-only CPU's microarchitecture, so the ratio between two kernels is what carries over, not
the milliseconds.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_name("cpuid_mask.c")
#: Set in a masked process's environment, so :func:`model_build.cpu.describe` can tell a
#: masked CPU from an emulated one (both offer less than the host's ``/proc/cpuinfo``).
ENV_FLAG = "MC_CPUID_HIDDEN"
HIDDEN = "avx512,vnni,amx"

_SYS_ARCH_PRCTL = 158  # x86-64
_ARCH_SET_CPUID = 0x1012


def _faulting_supported() -> bool:
    """Whether this kernel and CPU let a process make CPUID fault (tried in a child process)."""
    code = (
        "import ctypes, sys; libc = ctypes.CDLL(None, use_errno=True);"
        f" sys.exit(0 if libc.syscall({_SYS_ARCH_PRCTL}, {_ARCH_SET_CPUID}, 0) == 0 else 1)"
    )
    return subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def unavailable_reason() -> str | None:
    """Why this machine cannot hide CPUID features, or None when it can."""
    if sys.platform != "linux" or platform.machine().lower() not in ("x86_64", "amd64"):
        return f"CPUID masking needs x86-64 Linux, not {sys.platform}/{platform.machine()}"
    if not _compiler():
        return "no C compiler (cc, gcc or clang) to build the CPUID mask"
    if not _faulting_supported():
        return "this kernel or CPU does not offer CPUID faulting (arch_prctl ARCH_SET_CPUID)"
    return None


def _compiler() -> str | None:
    return next((c for c in ("cc", "gcc", "clang") if shutil.which(c)), None)


def library() -> Path:
    """The compiled mask, built once per source version into the temp folder."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    out = Path(tempfile.gettempdir()) / f"mc-cpuid-mask-{digest}.so"
    if not out.is_file():
        compiler = _compiler()
        if compiler is None:
            raise RuntimeError("no C compiler (cc, gcc or clang) to build the CPUID mask")
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        subprocess.run(
            [compiler, "-O2", "-shared", "-fPIC", "-o", str(tmp), str(SOURCE)],
            check=True,
            capture_output=True,
        )
        tmp.replace(out)  # atomic: concurrent builders never load a half-written file
    return out


def environ(base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment whose processes see no AVX-512, VNNI or AMX.

    Python's fault handler is left off: it would take over SIGSEGV, which the mask answers.
    """
    env = dict(os.environ if base is None else base)
    preload = [str(library()), *filter(None, env.get("LD_PRELOAD", "").split(":"))]
    env["LD_PRELOAD"] = ":".join(preload)
    env[ENV_FLAG] = HIDDEN
    env.pop("PYTHONFAULTHANDLER", None)
    return env


def loaded() -> bool:
    """Whether this process runs under the mask (its flag set and CPUID offering less)."""
    if os.environ.get(ENV_FLAG) != HIDDEN:
        return False
    from numpy._core._multiarray_umath import __cpu_features__

    return not __cpu_features__.get("AVX512F", False)


def main(argv: list[str] | None = None) -> int:
    """``python -m model_build.cpuid_mask [--or-skip] COMMAND ...``: run COMMAND masked.

    ``--or-skip``: where the mask cannot work, say why and exit 0 instead of 1 (``make test``
    runs the int8 tests masked wherever the machine allows it).
    """
    argv = sys.argv[1:] if argv is None else argv
    or_skip = bool(argv) and argv[0] == "--or-skip"
    argv = argv[1:] if or_skip else argv
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m model_build.cpuid_mask [--or-skip] COMMAND [ARG ...]")
        return 0 if argv else 2
    reason = unavailable_reason()
    if reason:
        print(f"{'skipped: ' if or_skip else ''}cannot hide CPUID features here: {reason}")
        return 0 if or_skip else 1
    os.execvpe(argv[0], argv, environ())


if __name__ == "__main__":
    sys.exit(main())
