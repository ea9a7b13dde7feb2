"""The dtype policy of training: `--mixed_precision`, with `auto` decided from the hardware.

`auto` picks what the devices compute fast:

- GPUs of compute capability 8.0 or newer (Ampere on): `mixed_bfloat16`;
  older GPUs with tensor cores (7.0 on): `mixed_float16`, with loss scaling;
  older ones: float32.
- Without a GPU: `mixed_bfloat16` on CPUs with bfloat16 instructions
  (AVX512-BF16 or AMX, read from `/proc/cpuinfo`), unless oneDNN is capped
  below them (`ONEDNN_MAX_CPU_ISA`); float32 on every other CPU, where
  TensorFlow emulates bfloat16 several times slower (and a bfloat16
  convolution under an AVX2 cap fails outright).
"""

import os

import keras
import tensorflow as tf
from absl import logging

POLICIES = ("auto", "off", "mixed_float16", "mixed_bfloat16")
CPU_BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")
# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) below its bfloat16 kernels.
ISAS_WITHOUT_BFLOAT16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_VNNI")


def cpu_flags(cpuinfo="/proc/cpuinfo"):
    """The CPU's feature flags (empty where `cpuinfo` cannot be read, e.g. not on Linux)."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def gpu_capabilities():
    """Compute capabilities (major, minor) of the visible GPUs."""
    capabilities = []
    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        capabilities.append(tuple(capability) if capability else (0, 0))
    return capabilities


def choose(gpus, flags, onednn_max_isa=None):
    """The `auto` policy for GPUs of capabilities `gpus` or a CPU with `flags`: (policy, reason)."""
    if gpus:
        oldest = min(gpus)
        if oldest >= (8, 0):
            return "mixed_bfloat16", f"GPUs of compute capability {oldest[0]}.{oldest[1]} compute bfloat16"
        if oldest >= (7, 0):
            return "mixed_float16", f"GPUs of compute capability {oldest[0]}.{oldest[1]} have float16 tensor cores"
        return "off", f"GPUs of compute capability {oldest[0]}.{oldest[1]} have no fast half precision"
    has = sorted(set(CPU_BFLOAT16_FLAGS) & set(flags))
    if not has:
        return "off", "the CPU has no bfloat16 instructions (AVX512-BF16, AMX)"
    if onednn_max_isa and onednn_max_isa.upper() in ISAS_WITHOUT_BFLOAT16:
        return "off", f"ONEDNN_MAX_CPU_ISA={onednn_max_isa} keeps oneDNN from the CPU's bfloat16 instructions"
    return "mixed_bfloat16", f"the CPU has bfloat16 instructions: {', '.join(has)}"


def resolve(requested):
    """The policy to train with: `requested`, or the hardware's choice (logged with its reason) for `auto`."""
    if requested not in POLICIES:
        raise ValueError(f"Unknown mixed precision {requested!r}: use one of {POLICIES}.")
    if requested != "auto":
        return requested
    policy, reason = choose(gpu_capabilities(), cpu_flags(), os.environ.get("ONEDNN_MAX_CPU_ISA"))
    logging.info("--mixed_precision=auto: %s (%s).", policy, reason)
    return policy


def apply(policy):
    """Sets Keras's global dtype policy (`off` means float32)."""
    keras.mixed_precision.set_global_policy("float32" if policy == "off" else policy)
