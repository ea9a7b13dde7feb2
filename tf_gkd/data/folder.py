"""A folder of PNG and JPEG images as a tensorflow-datasets dataset: `--dataset=folder:DIR`.

The images of DIR (any sizes and modes) are read once, checked, and written
as a prepared tfds dataset in the data directory
(`<data_dir>/image_folder/<folder name>_<fingerprint>/1.0.0`); every later
load reads that. The fingerprint hashes each image's path, size and
modification time, so a changed folder (an image added, removed or edited)
is prepared again rather than silently served from the old copy.

- Labels: one level of subfolders gives the classes (DIR/cat/1.png is class
  `cat`, classes in name order); images directly in DIR have no label.
  Images both in DIR and in subfolders are refused, as ambiguous.
- Channels: RGB when any image has colour, else grey; every image is
  converted to that (palette, alpha and 16-bit modes included).
- Size: the prepared dataset keeps each image's own size; when all share one,
  it is recorded as the dataset's image shape (the default `--image_size`).
- Split: a tenth of the images (at least one) is the `test` split, those
  whose paths hash lowest: deterministic, and mostly stable when images are
  added.
"""

import hashlib
import os
import re

import numpy as np
import tensorflow_datasets as tfds
import tqdm
from absl import logging
from PIL import Image

from tf_gkd import errors, files

PREFIX = "folder:"
BUILDER_NAME = "image_folder"
EXTENSIONS = (".png", ".jpg", ".jpeg")
TEST_FRACTION = 0.1
_GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
_INCOMPLETE = re.compile(r"incomplete\.")  # tfds's temporary folders while it prepares a dataset.


class FolderError(errors.Error, ValueError):
    """The image folder cannot be used as a dataset; the message names the folder or the file."""


def is_folder(name):
    return name.startswith(PREFIX)


def directory_of(name):
    """DIR of `folder:DIR`, with ~ expanded."""
    return os.path.expanduser(name[len(PREFIX) :])


def scan(directory):
    """[(path relative to `directory`, class name or None)] of its images, sorted; and the class names.

    Raises:
      FolderError: `directory` is missing or holds no image, or mixes images
        at its top level with class subfolders.
    """
    if not os.path.isdir(directory):
        raise FolderError(f"--dataset=folder:{directory}: no such directory.")

    def images_in(path):
        return sorted(
            f for f in os.listdir(path) if f.lower().endswith(EXTENSIONS) and not f.startswith(".")
            and os.path.isfile(os.path.join(path, f))
        )  # fmt: skip

    top = images_in(directory)
    classes = sorted(
        d
        for d in os.listdir(directory)
        if not d.startswith(".") and os.path.isdir(os.path.join(directory, d)) and images_in(os.path.join(directory, d))
    )
    if top and classes:
        raise FolderError(
            f"{directory} holds images both at its top level ({top[0]}, ...) and in class subfolders "
            f"({', '.join(classes[:3])}): put every image in a class subfolder, or none."
        )
    if classes:
        entries = [(os.path.join(c, f), c) for c in classes for f in images_in(os.path.join(directory, c))]
    else:
        entries = [(f, None) for f in top]
    if len(entries) < 2:
        raise FolderError(
            f"{directory} holds {len(entries)} PNG or JPEG image(s) (looked for {', '.join(EXTENSIONS)} at its top "
            "level and in one level of class subfolders): a dataset needs at least 2, one for the test split."
        )
    return entries, classes


def fingerprint(directory, entries):
    """A hash of the images' paths, sizes and modification times: it changes when the folder does."""
    digest = hashlib.sha256()
    for path, _ in entries:
        stat = os.stat(os.path.join(directory, path))
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def test_paths(entries):
    """The paths of the test split: the tenth of the images (at least one) whose paths hash lowest."""
    paths = sorted((path for path, _ in entries), key=lambda p: hashlib.sha256(p.encode()).hexdigest())
    return frozenset(paths[: max(1, round(len(paths) * TEST_FRACTION))])


def _read(path, mode):
    """The pixels of the image file at `path` as uint8 [H, W, C] in `mode` ('L' or 'RGB')."""
    with Image.open(path) as image:
        image.load()
        if image.mode not in ("L", "RGB"):
            # Alpha composited on white, so transparent areas do not turn black.
            if "A" in image.getbands() or "transparency" in image.info:
                rgba = image.convert("RGBA")
                image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
            elif image.mode.startswith("I") or image.mode == "F":  # 16-bit or float grey: to 8 bits.
                pixels = np.asarray(image, np.float64)
                image = Image.fromarray(np.uint8(np.clip(pixels / max(pixels.max(), 1) * 255, 0, 255)))
        pixels = np.asarray(image.convert(mode), np.uint8)
    return pixels[..., None] if pixels.ndim == 2 else pixels


def _inspect(directory, entries):
    """(channels, common (H, W) or None) of the images; every file is decoded, so a corrupt one is named."""
    colour, sizes = False, set()
    for path, _ in tqdm.tqdm(entries, desc="checking images", unit="image", leave=False, disable=len(entries) < 500):
        full = os.path.join(directory, path)
        try:
            with Image.open(full) as image:
                image.load()
                colour = colour or (image.mode not in _GREY_MODES and not _palette_is_grey(image))
                sizes.add((image.height, image.width))
        except Exception as e:  # PIL raises many types for a bad file; all mean the same here.
            raise FolderError(
                f"{full} is not a readable image ({type(e).__name__}: {e}): fix or remove it, then run again."
            ) from None
    return (3 if colour else 1), (sizes.pop() if len(sizes) == 1 else None)


def _palette_is_grey(image):
    if image.mode != "P":
        return False
    palette = np.asarray(image.convert("RGB"))
    return bool(np.all(palette[..., 0] == palette[..., 1]) and np.all(palette[..., 1] == palette[..., 2]))


class ImageFolder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """The tfds builder of one version of one image folder (see the module's docstring)."""

    name = BUILDER_NAME
    VERSION = tfds.core.Version("1.0.0")

    def __init__(self, *, directory, entries, classes, channels, size, **kwargs):
        self._directory, self._entries, self._classes = directory, entries, classes
        self._test = test_paths(entries)
        self._channels, self._size = channels, size
        super().__init__(**kwargs)

    def _info(self):
        shape = (*(self._size or (None, None)), self._channels)
        features = {"image": tfds.features.Image(shape=shape)}
        if self._classes:
            features["label"] = tfds.features.ClassLabel(names=self._classes)
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"The images of {self._directory}.",
            features=tfds.features.FeaturesDict(features),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download.
        return {
            "train": self._generate_examples(test=False),
            "test": self._generate_examples(test=True),
        }

    def _generate_examples(self, test):
        mode = "RGB" if self._channels == 3 else "L"
        for path, label in self._entries:
            if (path in self._test) == test:
                example = {"image": _read(os.path.join(self._directory, path), mode)}
                if self._classes:
                    example["label"] = label
                yield path, example


def _version(name):
    """(absolute directory, entries, classes, version name) of `folder:DIR` as it is now."""
    directory = os.path.abspath(directory_of(name))
    entries, classes = scan(directory)
    slug = re.sub(r"[^a-z0-9]+", "_", os.path.basename(directory).lower()).strip("_") or "images"
    return directory, entries, classes, f"{slug}_{fingerprint(directory, entries)}"


def version_name(name):
    """'<folder name>_<fingerprint>': the name of the folder's current images (FolderError as `scan`)."""
    return _version(name)[3]


def builder(name, data_dir=None):
    """The prepared tfds builder of `folder:DIR` (prepared now if the folder is new or changed).

    Raises:
      FolderError: naming the folder or the file that is wrong.
    """
    directory, entries, classes, config_name = _version(name)
    root = os.path.join(data_dir or tfds.core.constants.DATA_DIR, BUILDER_NAME, config_name)
    prepared = os.path.join(root, str(ImageFolder.VERSION))
    if os.path.exists(os.path.join(prepared, "dataset_info.json")):
        return tfds.builder_from_directory(prepared)
    channels, size = _inspect(directory, entries)
    with files.locked(files.sibling_lock(root), f"Image folder dataset {root}"):
        if os.path.exists(os.path.join(prepared, "dataset_info.json")):  # Prepared by the process before us.
            return tfds.builder_from_directory(prepared)
        if os.path.isdir(root):
            files.remove_leftovers(root, _INCOMPLETE)
        logging.info("Preparing %d images of %s as a tfds dataset in %s.", len(entries), directory, prepared)
        ImageFolder(
            directory=directory,
            entries=entries,
            classes=classes,
            channels=channels,
            size=size,
            config=tfds.core.BuilderConfig(name=config_name),
            data_dir=data_dir or tfds.core.constants.DATA_DIR,
        ).download_and_prepare()
    return tfds.builder_from_directory(prepared)
