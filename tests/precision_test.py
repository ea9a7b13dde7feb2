"""--mixed_precision=auto: the policy decided from faked GPUs, CPU flags and oneDNN caps."""

import pytest

from tf_gkd import precision

AMX = frozenset({"sse4_2", "avx2", "avx512f", "amx_tile", "amx_bf16", "avx512_bf16"})
AVX512_BF16 = frozenset({"avx2", "avx512f", "avx512_bf16"})
AVX2 = frozenset({"sse4_2", "avx", "avx2", "fma"})


@pytest.mark.parametrize(
    "gpus, flags, isa, policy",
    [
        ([], AMX, None, "mixed_bfloat16"),
        ([], AVX512_BF16, None, "mixed_bfloat16"),
        ([], AVX2, None, "off"),
        ([], frozenset(), None, "off"),  # No /proc/cpuinfo (not Linux).
        ([], AMX, "AVX2", "off"),  # oneDNN capped below its bfloat16 kernels.
        ([], AMX, "avx512_core", "off"),
        ([], AMX, "AVX512_CORE_BF16", "mixed_bfloat16"),
        ([(8, 0)], AVX2, None, "mixed_bfloat16"),  # A GPU decides, whatever the CPU.
        ([(9, 0), (8, 6)], AVX2, None, "mixed_bfloat16"),
        ([(7, 5)], AMX, None, "mixed_float16"),
        ([(8, 0), (7, 0)], AMX, None, "mixed_float16"),  # The oldest GPU decides.
        ([(6, 1)], AMX, None, "off"),
    ],
)
def test_auto_policy(gpus, flags, isa, policy):
    chosen, reason = precision.choose(gpus, flags, isa)
    assert chosen == policy and reason


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: x\nflags\t\t: fpu avx2 amx_bf16\n\nprocessor\t: 1\n")
    assert precision.cpu_flags(str(cpuinfo)) == {"fpu", "avx2", "amx_bf16"}
    assert precision.cpu_flags(str(tmp_path / "missing")) == frozenset()


def test_resolve_uses_the_machine_for_auto_only(monkeypatch):
    monkeypatch.setattr(precision, "gpu_capabilities", lambda: [])
    monkeypatch.setattr(precision, "cpu_flags", lambda: AVX2)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert precision.resolve("auto") == "off"
    monkeypatch.setattr(precision, "cpu_flags", lambda: AMX)
    assert precision.resolve("auto") == "mixed_bfloat16"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert precision.resolve("auto") == "off"
    for explicit in ("off", "mixed_float16", "mixed_bfloat16"):
        assert precision.resolve(explicit) == explicit
    with pytest.raises(ValueError, match="Unknown mixed precision 'fp8'"):
        precision.resolve("fp8")
