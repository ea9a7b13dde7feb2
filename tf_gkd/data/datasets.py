"""MNIST-style datasets through tensorflow-datasets, prepared offline when possible.

`load_numpy` returns a split's images as uint8 [N, 28, 28, 1] with their int64
labels (`to_float` maps them to [-1, 1]), and `train_dataset` makes the
training pipeline of such arrays. Where the tfds dataset is not prepared yet but the four raw IDX
files are at hand (Debian's `dataset-fashion-mnist` puts them in
/usr/share/datasets/fashion-mnist), it is prepared from them once, in the normal
tfds layout, so that every later load is an ordinary
`tfds.load(..., download=False)`. Nothing here waits on the network unless the
caller asks for `download=True`.
"""

import functools
import os
import re

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging
from tensorflow_datasets.image_classification import mnist as tfds_mnist

from tf_gkd import errors, files
from tf_gkd.data import idx

PREFETCH_BATCHES = 2  # Batches the training pipelines prepare ahead of the train step.

# Registered tfds builder for each supported dataset, and where its raw files
# usually are on a Debian machine (None: no package ships them).
_BUILDERS = {
    "fashion_mnist": tfds_mnist.FashionMNIST,
    "mnist": tfds_mnist.MNIST,
}
DEFAULT_RAW_DIRS = {
    "fashion_mnist": "/usr/share/datasets/fashion-mnist",
    "mnist": None,
}
DATASETS = tuple(_BUILDERS)
_INCOMPLETE = re.compile(r"incomplete\.")  # tfds's temporary folders while it prepares a dataset.


class DataError(errors.Error, RuntimeError):
    """The dataset cannot be loaded; the message says how to get it."""


def default_raw_dir(name):
    return DEFAULT_RAW_DIRS.get(name)


@functools.cache
def _local_builder_class(name):
    """The stock tfds builder of `name`, reading its splits from local IDX files.

    Same name and version as the registered builder, so the prepared files are
    the ones `tfds.load(name)` looks for. The stock builder cannot be pointed at
    Debian's copies (they are re-compressed, so tfds's registered checksums fail).
    """
    base = _BUILDERS[name]

    class LocalIdx(base, skip_registration=True):
        def __init__(self, *, raw_dir, **kwargs):
            self._raw_dir = raw_dir
            super().__init__(**kwargs)

        def _split_generators(self, dl_manager):
            del dl_manager  # Nothing to download.
            return {split: self._generate_examples(split) for split in ("train", "test")}

        def _generate_examples(self, split):
            images, labels = idx.read_split(self._raw_dir, split)
            for index, (image, label) in enumerate(zip(images, labels)):
                yield index, {"image": image, "label": label}

    LocalIdx.name = base.name
    LocalIdx.__name__ = f"LocalIdx{base.__name__}"
    return LocalIdx


def _check_name(name):
    if name not in _BUILDERS:
        raise DataError(f"Unknown dataset {name!r}; choose one of {', '.join(DATASETS)}.")


def prepare(name, data_dir=None, raw_dir=None, download=False):
    """Makes sure the tfds dataset `name` is prepared in `data_dir`; returns the builder.

    Order of preference: already prepared; prepared from the raw IDX files in
    `raw_dir` (validated first, so a corrupt file gives a clear `DataError`);
    downloaded by tfds if `download` is True. Otherwise raises `DataError` at once.
    """
    _check_name(name)
    builder = tfds.builder(name, data_dir=data_dir)
    if builder.is_prepared():
        return builder
    has_raw = raw_dir and idx.has_raw_files(raw_dir)
    if has_raw:
        for split in ("train", "test"):
            try:
                idx.read_split(raw_dir, split)  # Validate before tfds writes anything.
            except idx.IdxError as e:
                raise DataError(str(e)) from None
    if has_raw or download:
        # One process prepares a dataset at a time; what a killed one left is removed first.
        dataset_dir = os.path.dirname(builder.data_dir)
        with files.locked(files.sibling_lock(dataset_dir), f"Dataset {name} in {dataset_dir}"):
            builder = tfds.builder(name, data_dir=data_dir)
            if builder.is_prepared():  # By the process that held the lock before.
                return builder
            files.remove_leftovers(dataset_dir, _INCOMPLETE)
            if has_raw:
                logging.info("Preparing %s in %s from the IDX files in %s.", name, builder.data_dir, raw_dir)
                _local_builder_class(name)(raw_dir=raw_dir, data_dir=data_dir).download_and_prepare()
                return tfds.builder(name, data_dir=data_dir)
            builder.download_and_prepare()
            return builder
    hint = {
        "fashion_mnist": (
            "install the raw files with `apt-get install -y dataset-fashion-mnist` "
            "(they go to /usr/share/datasets/fashion-mnist), or pass --raw_data_dir=DIR "
            "holding the four IDX .gz files, or pass --download on a machine with internet."
        ),
        "mnist": (
            "pass --download on a machine with internet, or --raw_data_dir=DIR holding "
            "the four MNIST IDX .gz files (train-images-idx3-ubyte.gz, ...)."
        ),
    }[name]
    where = f"raw directory {raw_dir!r} lacks the IDX files" if raw_dir else "no raw directory given"
    raise DataError(f"Dataset {name!r} is not prepared in {builder.data_dir} and {where}. To get it, {hint}")


def load_numpy(name, split, data_dir=None, raw_dir=None, download=False):
    """Returns (images uint8 [N, 28, 28, 1], labels int64 [N]) of a split, in tfds's fixed order."""
    builder = prepare(name, data_dir=data_dir, raw_dir=raw_dir, download=download)
    ds = builder.as_dataset(split=split, batch_size=-1, as_supervised=True, shuffle_files=False)
    images, labels = tfds.as_numpy(ds)
    return images, labels.astype(np.int64)


def to_float(images):
    """uint8 [0, 255] → float32 [-1, 1]; works on numpy arrays and tensors."""
    return tf.cast(images, tf.float32) / 127.5 - 1.0


def to_uint8(images):
    """float [-1, 1] → uint8 [0, 255], clipping out-of-range values."""
    images = np.asarray(images, dtype=np.float32)
    return np.clip(np.round((images + 1.0) * 127.5), 0, 255).astype(np.uint8)


def without_autotune(dataset):
    """`dataset` with tf.data's autotuning off (the pipelines `fit` trains on).

    With autotuning on, destroying an iterator that has run for a minute or
    more can block for up to tf.data's 60 s optimisation period: its tuning
    thread is waiting out the period (never with autotuning off; measurements
    in docs/performance.md). tf_gkd's training pipelines are a few cheap ops
    per batch with fixed sizes, and need no tuning.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def train_dataset(images, labels, batch_size, seed):
    """Infinite, batched tf.data pipeline of (float32 images in [-1, 1], labels), reshuffled every epoch.

    The uint8 arrays are held in memory (all of Fashion-MNIST is under 60 MB).
    Each epoch is a permutation of the indices drawn from (`seed`, epoch),
    cut into whole batches; a batch is gathered from the arrays by its indices
    and converted to float in one vectorised op. tf.data thus handles one
    element per batch, not one per image: for a small model that is the
    difference between an input pipeline busy a tenth of each train step and
    one that is not seen. The last incomplete batch of an epoch is left out
    (each epoch leaves out other images).
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive. Received: batch_size={batch_size}")
    num_images = len(images)
    if num_images < batch_size:
        raise DataError(
            f"The dataset has {num_images} images, fewer than one batch of {batch_size}: lower --batch_size."
        )
    images, labels = tf.constant(images), tf.constant(labels)
    num_batches = num_images // batch_size

    def epoch(index):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(num_images), seed=tf.stack([tf.constant(seed, tf.int64), index])
        )
        return tf.data.Dataset.from_tensor_slices(tf.reshape(order[: num_batches * batch_size], [num_batches, -1]))

    def gather(batch):
        return to_float(tf.gather(images, batch)), tf.gather(labels, batch)

    # Fixed sizes: `without_autotune` tells why training pipelines are not autotuned.
    return tf.data.Dataset.counter().flat_map(epoch).map(gather).prefetch(PREFETCH_BATCHES)


def resolve_raw_dir(name, raw_dir):
    """`raw_dir` if given, else the dataset's usual Debian location if it exists."""
    if raw_dir:
        return raw_dir
    default = default_raw_dir(name)
    return default if default and os.path.isdir(default) else None


def label_names(name, data_dir=None):
    """Class names of a prepared dataset, in label order (from its tfds metadata)."""
    _check_name(name)
    return list(tfds.builder(name, data_dir=data_dir).info.features["label"].names)
