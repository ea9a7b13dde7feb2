"""Flags shared by the binaries: where the data is, and the domain-classifier cache."""

from absl import flags

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
