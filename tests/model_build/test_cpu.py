"""Which CPU a number came from: an emulated CPU is named by what it offers, not the host."""

from __future__ import annotations

import pytest

from model_build import cpu

#: /proc/cpuinfo of a host with AVX-512 VNNI and AVX-VNNI (AMD EPYC, Zen 5).
HOST_FLAGS = {"avx2", "avx512f", "avx512_vnni", "avx_vnni"}
#: CPUID as numpy sees it under ``qemu-x86_64 -cpu Haswell-v4`` on that host.
HASWELL = {"AVX2": True, "AVX512F": False, "AVX512VNNI": False}


def test_an_emulated_haswell_on_a_host_with_avx_vnni_is_an_avx2_only_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cpu, "_proc_cpuinfo", lambda: ("AMD EPYC", HOST_FLAGS))
    monkeypatch.setattr(cpu, "_CPUID", HASWELL)
    monkeypatch.setattr(cpu.cpuid_mask, "loaded", lambda: False)
    described = cpu.describe()
    assert described["emulated"] and not described["avx_vnni"] and not described["amx"]
    assert described["int8_kernels"] == "avx2"
    assert described["name"] == "AVX2-only CPU emulated by qemu on AMD EPYC"


def test_the_host_itself_keeps_its_avx_vnni(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu, "_proc_cpuinfo", lambda: ("AMD EPYC", HOST_FLAGS))
    monkeypatch.setattr(cpu, "_CPUID", {"AVX2": True, "AVX512F": True, "AVX512VNNI": True})
    monkeypatch.setattr(cpu.cpuid_mask, "loaded", lambda: False)
    described = cpu.describe()
    assert not described["emulated"] and described["avx_vnni"]
    assert described["int8_kernels"] == "avx512-vnni" and described["name"] == "AMD EPYC"
