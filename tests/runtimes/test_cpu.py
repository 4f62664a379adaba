"""The int8 class of a CPU: detection (faked per class), targets, and the once-only warning on a foreign CPU."""

import logging

import pytest

import runtimes.common.cpu as cpu
from runtimes import InputError
from runtimes.common.cpu import CpuIsa, CpuTarget, detect_isa, parse_target, same_int8_class, warn_if_foreign


@pytest.mark.parametrize("isa", ["avx2", "avx512", "avx512_vnni", "arm64"])
def test_each_class_is_detected_from_the_features_this_process_sees(fake_cpu, isa):
    fake_cpu(isa)
    assert detect_isa() is CpuIsa(isa)
    assert CpuTarget().isa is CpuIsa(isa) and CpuTarget().is_local
    assert CpuIsa(isa).saturates is (isa in ("avx2", "avx512"))


def test_avx_vnni_is_read_from_cpuinfo_only_when_cpuinfo_describes_this_process(monkeypatch):
    """An Alder Lake laptop (AVX-VNNI, no AVX-512) is a VNNI machine; under an emulator that offers AVX2,
    /proc/cpuinfo still lists the host's flags and must not be believed."""
    import numpy._core._multiarray_umath as umath

    avx2_only = {name: name in ("AVX", "AVX2", "FMA3") for name in umath.__cpu_features__}
    monkeypatch.setattr(umath, "__cpu_features__", avx2_only)
    for flags, expected in (({"avx2", "avx_vnni"}, CpuIsa.AVX512_VNNI),  # a laptop: cpuinfo agrees with CPUID
                            ({"avx2", "avx512f", "avx_vnni"}, CpuIsa.AVX2)):  # an emulated AVX2 CPU on a VNNI host
        monkeypatch.setattr(cpu, "cpu_flags", lambda flags=flags: frozenset(flags))
        cpu.cpu_features.cache_clear()
        cpu.detect_isa.cache_clear()
        assert detect_isa() is expected
    cpu.cpu_features.cache_clear()
    cpu.detect_isa.cache_clear()


def test_targets_parse_or_say_what_is_allowed(fake_cpu):
    fake_cpu("avx512_vnni")
    assert parse_target(" AVX2 ").isa is CpuIsa.AVX2 and not parse_target("avx2").is_local
    assert parse_target("native").isa is CpuIsa.AVX512_VNNI
    assert parse_target("avx512").is_local is False and same_int8_class("avx2", "avx512")
    with pytest.raises(InputError, match="unknown CPU 'sse'; choose one of: native, avx2, avx512, avx512_vnni, arm64"):
        parse_target("sse")


@pytest.mark.parametrize(("built_for", "here", "risk"), [
    ("avx512_vnni", "avx2", "can saturate this CPU's int8 kernels"),
    ("avx2", "avx512_vnni", "give up precision this CPU does not need"),
    ("arm64", "avx2", "can saturate this CPU's int8 kernels"),
    ("avx512_vnni", "arm64", "chosen for another instruction set"),
])
def test_a_foreign_int8_artifact_warns_once_with_the_remedy(fake_cpu, caplog, built_for, here, risk):
    fake_cpu(here)
    with caplog.at_level(logging.WARNING, logger="runtimes.common.cpu"):
        assert warn_if_foreign(built_for, "art/")
        assert warn_if_foreign(built_for, "art/")
    (record,) = caplog.records
    assert risk in record.getMessage() and f"--target cpu:{here}" in record.getMessage()


def test_no_warning_within_a_class_or_without_int8(fake_cpu, caplog):
    fake_cpu("avx512")
    with caplog.at_level(logging.WARNING, logger="runtimes.common.cpu"):
        assert not warn_if_foreign("avx2", "art/")  # both saturate: the same 7-bit format is right for both
        assert not warn_if_foreign(None, "art/")  # fp32 runs alike everywhere
    assert not caplog.records
