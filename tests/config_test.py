"""TrainConfig: one source of every training option — its flags, bounds, checks and run identity."""

import dataclasses
import json

import pytest
from absl import app, flags

from tf_gkd import rundir
from tf_gkd.bin import common
from tf_gkd.runs import config as config_lib


def parsed_flags(*args, **defaults):
    """A fresh FlagValues with every TrainConfig flag, parsed from `args`."""
    flag_values = flags.FlagValues()
    common.define_config_flags(flag_values, defaults=defaults)
    flag_values(["prog", *args])
    return flag_values


def test_flags_are_generated_from_the_config():
    flag_values = parsed_flags("--model=vae", "--generator_width=0.5", "--generator_depth=2", "--download")
    config = common.config_from_flags(flag_values)
    assert (config.model, config.generator_width, config.generator_depth, config.download) == ("vae", 0.5, 2, True)
    assert common.config_from_flags(parsed_flags()) == config_lib.TrainConfig()
    assert "Must be positive" in flag_values["generator_width"].help
    assert parsed_flags(generator_kind="conv4")["generator_kind"].value == "conv4"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--generator_width=0"], "--generator_width: generator_width must be positive. Received: generator_width=0"),
        (["--ema_decay=1"], "--ema_decay: ema_decay must be in [0, 1). Received: ema_decay=1.0"),
        (["--r1_weight=-1"], "--r1_weight: r1_weight must be >= 0"),
        (["--pixel_weight_schedule=linear"], "--pixel_weight_schedule: pixel_weight_schedule: Unknown schedule"),
        (["--adversarial_weight_schedule=ramp_up:0.8:0.2"], "needs 0 <= A <= B <= 1"),
        (["--loss=hinge", "--real_label=0.9"], "--real_label: real_label < 1 (label smoothing) needs a sigmoid loss"),
    ],
)
def test_a_bad_value_is_a_usage_error_naming_its_flag(args, message):
    with pytest.raises(app.UsageError) as error:
        common.config_from_flags(parsed_flags(*args))
    assert message in str(error.value)


def test_unknown_choices_are_refused_by_the_flag_parser():
    with pytest.raises(flags.IllegalFlagValueError, match="fast_layers"):
        parsed_flags("--fast_layers=sometimes")


def test_identity_fields_are_declared_with_the_options():
    assert set(config_lib.identity_fields("vae")) >= {"model", "dataset", "z_dim", "encoder_kind", "beta"}
    assert "encoder_kind" not in config_lib.identity_fields("gan")
    assert {"pixel_weight_schedule", "r1_weight", "teacher"} <= set(config_lib.identity_fields("distill"))
    # How a run runs may change on resume.
    assert not {"train_steps", "fast_layers", "mixed_precision", "log_every"} & set(config_lib.identity_fields("gan"))


def test_a_run_of_an_earlier_revision_resumes(tmp_path):
    # Its config.json predates the options added since: they held their defaults.
    config = config_lib.TrainConfig(model="distill", teacher="runs/teacher")
    saved = dataclasses.asdict(config)
    for newer in ("r1_weight", "pixel_weight_schedule", "adversarial_weight_schedule", "fast_layers"):
        del saved[newer]
    (tmp_path / rundir.CONFIG_FILE).write_text(json.dumps(saved))
    changed = config_lib.TrainConfig(model="distill", teacher="runs/teacher", r1_weight=1.0)
    with pytest.raises(config_lib.ConfigError, match="r1_weight: 0.0 in the run, 1.0 now"):
        config_lib.check_resume(changed, tmp_path)
    config_lib.check_resume(config, tmp_path)
    config_lib.record(config, tmp_path, step=100)
    assert json.loads((tmp_path / rundir.CONFIG_FILE).read_text())["r1_weight"] == 0.0
