"""Flags shared by the binaries: where the data is, the domain-classifier cache, integer lists; --help of console scripts."""

import sys

from absl import app, flags

from tf_gkd.data import datasets


def define_data_flags(dataset_help, download_default=False):
    """--dataset, --data_dir, --raw_data_dir and --download."""
    flags.DEFINE_enum("dataset", "fashion_mnist", datasets.DATASETS, dataset_help)
    flags.DEFINE_string("data_dir", None, "tensorflow-datasets data directory (default: tfds's own).")
    flags.DEFINE_string(
        "raw_data_dir",
        None,
        "Directory with the four raw IDX .gz files to prepare the dataset from, offline "
        "(default for fashion_mnist: /usr/share/datasets/fashion-mnist, from Debian's dataset-fashion-mnist).",
    )
    flags.DEFINE_boolean("download", download_default, "Let tensorflow-datasets download the data (needs internet).")


def define_classifier_dir_flag():
    """--classifier_dir."""
    flags.DEFINE_string("classifier_dir", "saved_models/classifiers", "Cache of the domain classifiers.")


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
