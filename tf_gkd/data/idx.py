"""Reading and validating IDX files (the MNIST / Fashion-MNIST raw format).

The format: a 4-byte magic number (two zero bytes, a type code, the number of
dimensions), one big-endian uint32 per dimension, then the data. Files may be
gzip-compressed. Every way a file can be wrong raises `IdxError` naming the
file, so a truncated download never turns into a crash deep in TensorFlow.
"""

import gzip
import os
import struct
import zlib

import numpy as np

from tf_gkd import errors
from tf_gkd.contract import DEFAULT_IMAGE_SHAPE as IMAGE_SHAPE

_UBYTE = 0x08

# The four files of an MNIST-style dataset, as Debian and the original sites name them.
RAW_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


class IdxError(errors.Error, ValueError):
    """A raw IDX file is missing, truncated or not in the IDX format."""


def read_idx(path):
    """Returns the uint8 array stored in the (optionally gzipped) IDX file `path`."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except FileNotFoundError:
        raise IdxError(f"IDX file not found: {path}") from None
    except (OSError, EOFError, zlib.error) as e:
        raise IdxError(
            f"IDX file {path} is not a readable gzip file ({e}); "
            "it is probably truncated or corrupt: re-install or re-download it."
        ) from None
    if len(raw) < 4:
        raise IdxError(f"IDX file {path} is too short ({len(raw)} bytes) to hold a header.")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != _UBYTE or not 1 <= ndim <= 4:
        raise IdxError(
            f"IDX file {path} has an invalid magic number {raw[:4].hex()} "
            "(expected 000008 followed by 01..04): not an unsigned-byte IDX file."
        )
    header_end = 4 + 4 * ndim
    if len(raw) < header_end:
        raise IdxError(f"IDX file {path} is truncated inside its header.")
    shape = struct.unpack(f">{ndim}I", raw[4:header_end])
    expected = int(np.prod(shape))
    got = len(raw) - header_end
    if got != expected:
        raise IdxError(
            f"IDX file {path} declares shape {shape} ({expected} bytes of data) "
            f"but holds {got} bytes: the file is truncated or corrupt."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_end).reshape(shape)


def write_idx(path, array):
    """Writes a uint8 array as a gzipped IDX file (used to make test fixtures)."""
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, _UBYTE, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def read_split(raw_dir, split):
    """Reads images [N, 28, 28, 1] and labels [N] of `split` ('train' or 'test')."""
    images = read_idx(os.path.join(raw_dir, RAW_FILES[f"{split}_images"]))
    labels = read_idx(os.path.join(raw_dir, RAW_FILES[f"{split}_labels"]))
    if images.ndim != 3 or labels.ndim != 1:
        raise IdxError(
            f"{raw_dir}: expected {split} images of rank 3 and labels of rank 1, "
            f"got shapes {images.shape} and {labels.shape}."
        )
    if len(images) != len(labels):
        raise IdxError(f"{raw_dir}: {len(images)} {split} images but {len(labels)} labels.")
    if images.shape[1:] != IMAGE_SHAPE[:2]:
        raise IdxError(
            f"{os.path.join(raw_dir, RAW_FILES[f'{split}_images'])} holds {images.shape[1]}x{images.shape[2]} images; "
            f"tf_gkd's datasets are {IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]}: pass --raw_data_dir with MNIST-style files."
        )
    return images[..., None], labels.astype(np.int64)


def has_raw_files(raw_dir):
    """True when all four IDX files are present in `raw_dir`."""
    return bool(raw_dir) and all(os.path.exists(os.path.join(raw_dir, name)) for name in RAW_FILES.values())
