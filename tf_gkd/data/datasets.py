"""Image datasets through tensorflow-datasets, prepared offline when possible.

A `DataSpec` says which images a run uses: a tensorflow-datasets dataset with
an `image` feature (mnist, fashion_mnist, cifar10, svhn_cropped, celeb_a, ...)
or a folder of images (`folder:DIR`, `tf_gkd.data.folder`), at what size
(`image_size`: centre-cropped to a square and resized; default: the
dataset's own size when its images share one square size) and in grey or
colour (the data's own channels; `grayscale` forces one). `DataSpec.load`
returns a split's images as uint8 [N, S, S, C] with their int64 labels (0
for a dataset without labels; `to_float` maps images to [-1, 1]), and
`train_dataset` makes the training pipeline of such arrays.

Nothing here waits on the network unless the caller asks for
`download=True`. Where mnist or fashion_mnist is not prepared yet but the
four raw IDX files are at hand (Debian's `dataset-fashion-mnist` puts them in
/usr/share/datasets/fashion-mnist), it is prepared from them once, in the
normal tfds layout, so that every later load is an ordinary
`tfds.load(..., download=False)`.
"""

import contextlib
import dataclasses
import functools
import os
import re

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
import tqdm
from absl import logging
from tensorflow_datasets.image_classification import mnist as tfds_mnist

from tf_gkd import errors, files
from tf_gkd.data import folder, idx, shapes

PREFETCH_BATCHES = 2  # Batches the training pipelines prepare ahead of the train step.

# The datasets that can be prepared from local IDX files, and where those
# usually are on a Debian machine (None: no package ships them).
_BUILDERS = {
    "fashion_mnist": tfds_mnist.FashionMNIST,
    "mnist": tfds_mnist.MNIST,
}
DEFAULT_RAW_DIRS = {
    "fashion_mnist": "/usr/share/datasets/fashion-mnist",
    "mnist": None,
}
EXAMPLES = "mnist, fashion_mnist, gkd_shapes, cifar10, svhn_cropped, celeb_a"  # Named in messages.
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


@contextlib.contextmanager
def _as_data_error():
    """A `folder.FolderError` raised inside becomes a `DataError` (one error type for every bad dataset)."""
    try:
        yield
    except folder.FolderError as e:
        raise DataError(str(e)) from None


def check_name(name):
    """Raises ValueError unless `name` can name a dataset: folder:DIR or a tensorflow-datasets name.

    Only the syntax: whether the dataset exists is found when it is loaded.
    """
    if folder.is_folder(name):
        if not folder.directory_of(name):
            raise ValueError("folder: needs a directory, as in --dataset=folder:path/to/images.")
    elif not re.fullmatch(r"[a-z][a-z0-9_]*(/[a-z0-9_.]+)?(:[0-9.*]+)?", name):
        raise ValueError(
            f"{name!r} is neither a tensorflow-datasets name (e.g. {EXAMPLES}) nor folder:DIR (a directory of "
            "PNG and JPEG images)."
        )


def _tfds_builder(name, data_dir):
    """tfds's builder of `name`, checked to have an `image` feature."""
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(
            f"Unknown dataset {name!r}: pass a tensorflow-datasets image dataset (e.g. {EXAMPLES}) or "
            "folder:DIR, a directory of PNG and JPEG images."
        ) from None
    features = builder.info.features
    if not isinstance(features["image"] if "image" in features else None, tfds.features.Image):
        raise DataError(
            f"Dataset {name!r} has no `image` feature (its features: {', '.join(features)}): tf_gkd trains on "
            "image datasets."
        )
    return builder


def prepare(name, data_dir=None, raw_dir=None, download=False):
    """Makes sure the dataset `name` is prepared in `data_dir`; returns its tfds builder.

    A folder (`folder:DIR`) is prepared from its images when new or changed.
    A tensorflow-datasets dataset, in order of preference: already prepared;
    (mnist, fashion_mnist) prepared from the raw IDX files in `raw_dir`
    (validated first, so a corrupt file gives a clear `DataError`);
    downloaded by tfds if `download` is True. tf_gkd's own `gkd_shapes` is
    drawn, offline. Otherwise raises `DataError` at once, saying how to get it.
    """
    if folder.is_folder(name):
        with _as_data_error():
            return folder.builder(name, data_dir)
    builder = _tfds_builder(name, data_dir)
    if builder.is_prepared():
        return builder
    has_raw = name in _BUILDERS and raw_dir and idx.has_raw_files(raw_dir)
    if has_raw:
        for split in ("train", "test"):
            try:
                idx.read_split(raw_dir, split)  # Validate before tfds writes anything.
            except idx.IdxError as e:
                raise DataError(str(e)) from None
    generated = builder.name == shapes.GkdShapes.name
    if has_raw or download or generated:
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
            if generated:
                logging.info("Drawing %s in %s.", name, builder.data_dir)
            builder.download_and_prepare()
            return builder
    if name not in _BUILDERS:
        raise DataError(
            f"Dataset {name!r} is not prepared in {builder.data_dir}. To get it, pass --download on a machine with "
            "internet (tensorflow-datasets downloads and prepares it once), or --data_dir=DIR where it is prepared "
            f"(e.g. by `tfds build {name} --data_dir=DIR`)."
        )
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


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """Which images: a dataset, where it is, and at what size and channels (see the module's docstring).

    Attributes:
      name: a tensorflow-datasets name, or `folder:DIR`.
      data_dir: the tensorflow-datasets data directory (None: tfds's own).
      raw_dir: mnist and fashion_mnist only: the raw IDX files to prepare it
        from (None: the usual Debian location, if it exists).
      download: let tensorflow-datasets download the data.
      image_size: S of the S×S images (None: the dataset's own size).
      grayscale: convert colour images to grey.
    """

    name: str = "fashion_mnist"
    data_dir: str | None = None
    raw_dir: str | None = None
    download: bool = False
    image_size: int | None = None
    grayscale: bool = False

    @classmethod
    def of(cls, options):
        """The spec of anything with the data options as attributes (a `TrainConfig`, absl's FLAGS)."""
        return cls(
            options.dataset,
            options.data_dir,
            options.raw_data_dir,
            options.download,
            options.image_size,
            options.grayscale,
        )

    @functools.cached_property
    def _builder(self):
        return prepare(self.name, self.data_dir, resolve_raw_dir(self.name, self.raw_dir), self.download)

    def builder(self):
        """The prepared tfds builder (prepared now if need be, once per spec; `DataError` if it cannot be)."""
        return self._builder

    def source_shape(self):
        """(H, W, C) of the dataset's own images; H and W are None when they differ between images."""
        shape = self.builder().info.features["image"].shape
        return tuple(None if d is None else int(d) for d in shape)

    def image_shape(self):
        """(S, S, C) of the images `load` returns.

        Raises:
          DataError: the images have no one square size and no `image_size` was given.
        """
        height, width, channels = self.source_shape()
        size = self.image_size
        if size is None:
            if height is None or height != width:
                found = "of several sizes" if height is None else f"{height}x{width}"
                raise DataError(
                    f"The images of {self.name} are {found}: pass --image_size=S to centre-crop and resize them "
                    "to S x S (e.g. 32 or 64)."
                )
            size = height
        return (size, size, 1 if self.grayscale else channels)

    def label_names(self):
        """Class names in label order, or None for a dataset without labels."""
        features = self.builder().info.features
        label = features["label"] if "label" in features else None
        return list(label.names) if isinstance(label, tfds.features.ClassLabel) else None

    def key(self):
        """A name for what depends on the data (the domain classifier's cache): 'cifar10', 'cifar10_28px_grey'.

        Known without preparing the data. A folder's name carries its
        fingerprint, so a changed folder has another key.
        """
        if folder.is_folder(self.name):
            with _as_data_error():
                base = f"folder_{folder.version_name(self.name)}"
        else:
            base = re.sub(r"[^a-z0-9_]", "_", self.name)
        return base + (f"_{self.image_size}px" if self.image_size else "") + ("_grey" if self.grayscale else "")

    def load(self, split):
        """(images uint8 [N, S, S, C], labels int64 [N]) of `split` ('train' or 'test'), in tfds's fixed order.

        A dataset without a test split is tested on its validation split, or
        else on the last tenth of its train split (then left out of train).
        A progress bar shows for large splits.
        """
        builder = self.builder()
        shape = self.image_shape()
        tfds_split = _split_names(builder)[split]
        has_labels = self.label_names() is not None

        def convert(example):
            label = tf.cast(example["label"], tf.int64) if has_labels else tf.constant(0, tf.int64)
            return _fit(example["image"], shape), label

        ds = builder.as_dataset(split=tfds_split, shuffle_files=False)
        batches = ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(4096)
        total = _num_examples(builder, tfds_split)
        images, labels = [], []
        show = total is not None and total >= _PROGRESS_MIN_IMAGES
        with tqdm.tqdm(total=total, desc=f"loading {self.name} {split}", unit="image", disable=not show) as bar:
            for batch_images, batch_labels in tfds.as_numpy(batches):
                images.append(batch_images)
                labels.append(batch_labels)
                bar.update(len(batch_images))
        if not images:
            raise DataError(f"The {split} split of {self.name} is empty.")
        return np.concatenate(images), np.concatenate(labels)


_PROGRESS_MIN_IMAGES = 100_000  # Fewer load in seconds: no progress bar.


def _split_names(builder):
    """{'train': tfds split, 'test': tfds split} of a prepared builder."""
    splits = set(builder.info.splits)
    if "test" in splits or not splits:  # No splits: tfds's mock data (tests), which has them all.
        return {"train": "train", "test": "test"}
    if "validation" in splits:
        return {"train": "train", "test": "validation"}
    return {"train": "train[:90%]", "test": "train[90%:]"}


def _num_examples(builder, split):
    try:
        return builder.info.splits[split].num_examples
    except (KeyError, ValueError):
        return None


def _fit(image, shape):
    """uint8 image [h, w, c] → uint8 [S, S, C] of `shape`: grey if asked, centre-cropped to a square, resized.

    Resizing is bilinear with antialiasing (an area average when shrinking).
    An image that already has the shape passes through untouched.
    """
    size, _, channels = shape
    if image.shape[-1] == 3 and channels == 1:
        image = tf.cast(tf.round(tf.image.rgb_to_grayscale(tf.cast(image, tf.float32))), tf.uint8)
    if tuple(image.shape) == tuple(shape):
        return image
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    side = tf.minimum(height, width)
    image = tf.image.crop_to_bounding_box(image, (height - side) // 2, (width - side) // 2, side, side)
    resized = tf.image.resize(image, [size, size], antialias=True)
    return tf.ensure_shape(tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8), shape)


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
