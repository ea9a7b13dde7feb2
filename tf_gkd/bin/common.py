"""What the binaries share: the training options' flags (generated from `TrainConfig`), data flags, training.

The training options are not declared here by hand: `define_config_flags`
makes one absl flag per `TrainConfig` field, with the field's type, default,
help and choices, and `config_from_flags` builds the `TrainConfig`, which
checks every value (bounds included) once.
"""

import dataclasses
import sys

from absl import app, flags, logging

from tf_gkd.runs import config as config_lib
from tf_gkd.runs import train as train_lib

# The data options of every binary that reads a dataset.
DATA_FIELDS = ("dataset", "image_size", "grayscale", "data_dir", "raw_data_dir", "download")
_FIELDS = {field.name: field for field in dataclasses.fields(config_lib.TrainConfig)}
CONFIG_FIELDS = tuple(_FIELDS)  # Every training option, in the config's order.


def define_config_flags(flag_values=flags.FLAGS, names=CONFIG_FIELDS, defaults=None):
    """Defines one flag per `TrainConfig` field in `names` (default: all), in `flag_values`.

    `defaults` ({field: value}) overrides the config's own defaults. Bounds are
    stated in the help and checked by `TrainConfig` (`config_from_flags`).
    """
    defaults = defaults or {}
    for name in names:
        field = _FIELDS[name]
        default = defaults.get(name, field.default)
        bounds = config_lib.describe_bounds(field.metadata)
        help_text = field.metadata["help"] + (f" Must be {bounds}." if bounds else "")
        kind, choices = config_lib.value_type(field), field.metadata["choices"]
        if kind is bool:
            flags.DEFINE_boolean(name, default, help_text, flag_values=flag_values)
        elif choices is not None:
            flags.DEFINE_enum(name, default, choices, help_text, flag_values=flag_values)
        else:
            define = {int: flags.DEFINE_integer, float: flags.DEFINE_float, str: flags.DEFINE_string}[kind]
            define(name, default, help_text, flag_values=flag_values)


def config_from_flags(flag_values=flags.FLAGS, **overrides):
    """The `TrainConfig` of the parsed flags and `overrides`; an invalid value is a usage error naming its flag."""
    values = {name: flag_values[name].value for name in _FIELDS if name in flag_values}
    values.update(overrides)
    try:
        return config_lib.TrainConfig(**values)
    except config_lib.ConfigError as e:
        raise app.UsageError(f"--{e.field}: {e}" if e.field else str(e)) from None


def train(config, workdir):
    """Trains (or resumes) `config`'s run in `workdir`."""
    train_lib.train(config, workdir)
    logging.info("Done: %s", workdir)


def define_data_flags(dataset_use, flag_values=flags.FLAGS):
    """--dataset, --image_size, --grayscale, --data_dir, --raw_data_dir and --download, as in the training binaries.

    `dataset_use` says what the binary does with the dataset; it is added to --dataset's help.
    """
    define_config_flags(flag_values, DATA_FIELDS)
    flag_values["dataset"].help += f" {dataset_use}"


def help_from(module_name):
    """Makes --help of a console script show `module_name`'s docstring and flags.

    A console script's `__main__` is a setuptools wrapper without a docstring
    or flags, so absl's --help would print a bare usage line; `python -m
    <module>` needs none of this.
    """
    sys.modules["__main__"].__doc__ = sys.modules[module_name].__doc__
    for module in (module_name, __name__):
        for flag in flags.FLAGS.get_flags_for_module(module):
            flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)


def int_list(name, minimum, allow_empty=False):
    """The integers of the list flag `name`, each at least `minimum`; anything else is a usage error."""
    try:
        values = [int(v) for v in flags.FLAGS[name].value]
    except ValueError:
        values = None
    if values is None or (not values and not allow_empty) or (values and min(values) < minimum):
        raise app.UsageError(
            f"--{name} must be a comma-separated list of integers >= {minimum}. Received: {flags.FLAGS[name].value}"
        )
    return values
