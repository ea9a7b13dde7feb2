"""Every shipped flagfile parses into a valid configuration of the binary it is for."""

import os
import pathlib

import pytest
from absl import flags

from tf_gkd.bin import common
from tf_gkd.networks import factory

REPO = pathlib.Path(__file__).resolve().parent.parent
FLAGFILES = sorted((REPO / "flags").glob("*.cfg"))


def binary_of(path):
    """gkd-pipeline, gkd-distill or gkd-train: what the flagfile is for, by its name."""
    if path.name.startswith(("pipeline_", "quickstart")):
        return "gkd-pipeline"
    return "gkd-distill" if path.name.startswith(("distill_", "baseline_")) else "gkd-train"


@pytest.mark.parametrize("path", FLAGFILES, ids=lambda p: p.name)
def test_flagfile_makes_a_valid_config(path, monkeypatch):
    binary = binary_of(path)
    if binary == "gkd-pipeline":
        pytest.skip("a pipeline flagfile: its stages' flagfiles are tested on their own")
    monkeypatch.chdir(REPO)  # Nested flagfiles are relative to the repository root.
    flag_values = flags.FlagValues()
    common.define_config_flags(flag_values)
    for role in ("kind", "width", "depth"):
        flags.DEFINE_alias(f"student_{role}", f"generator_{role}", flag_values=flag_values)
    argv = flag_values.read_flags_from_files([f"--flagfile={os.path.relpath(path, REPO)}"])
    flag_values(["prog", *argv])
    overrides = {"model": "distill", "teacher": "runs/teacher"} if binary == "gkd-distill" else {}
    config = common.config_from_flags(flag_values, **overrides)  # Raises on any invalid value.
    if binary == "gkd-train":
        assert config.model in ("gan", "vae")  # A teacher.
    elif path.name.startswith("distill_"):  # A student: smaller than the default teacher.
        student = factory.make_generator(config.generator_kind, config.z_dim, config.generator_width)
        assert student.count_params() < factory.make_generator("conv", config.z_dim).count_params() / 10
