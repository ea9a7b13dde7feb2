"""Offline data: IDX validation, tfds preparation from local files, the input pipeline."""

import gzip
import os
import time

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from tf_gkd.data import datasets, idx


def test_idx_round_trip(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    idx.write_idx(tmp_path / "a.gz", array)
    np.testing.assert_array_equal(idx.read_idx(tmp_path / "a.gz"), array)


def test_truncated_gzip_is_a_clear_error(tmp_path):
    idx.write_idx(tmp_path / "a.gz", np.zeros((50, 28, 28), np.uint8))
    data = (tmp_path / "a.gz").read_bytes()
    (tmp_path / "a.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(idx.IdxError, match="truncated or corrupt"):
        idx.read_idx(tmp_path / "a.gz")


def test_short_payload_is_a_clear_error(tmp_path):
    idx.write_idx(tmp_path / "a.gz", np.zeros((5, 28, 28), np.uint8))
    raw = gzip.decompress((tmp_path / "a.gz").read_bytes())
    (tmp_path / "a.gz").write_bytes(gzip.compress(raw[:-10]))
    with pytest.raises(idx.IdxError, match=r"declares shape \(5, 28, 28\)"):
        idx.read_idx(tmp_path / "a.gz")


def test_bad_magic_is_a_clear_error(tmp_path):
    (tmp_path / "a.gz").write_bytes(gzip.compress(b"PK\x03\x04 not an idx file"))
    with pytest.raises(idx.IdxError, match="magic number"):
        idx.read_idx(tmp_path / "a.gz")


def test_prepared_from_raw_files(tiny_data_dir):
    images, labels = datasets.DataSpec("fashion_mnist", tiny_data_dir).load("train")
    assert images.shape == (256, 28, 28, 1) and images.dtype == np.uint8
    assert labels.shape == (256,) and labels.dtype == np.int64
    test_images, _ = datasets.DataSpec("fashion_mnist", tiny_data_dir).load("test")
    assert len(test_images) == 64


def test_prepared_data_matches_raw_files(tiny_raw_dir, tiny_data_dir):
    raw_images, raw_labels = idx.read_split(str(tiny_raw_dir), "test")
    images, labels = datasets.DataSpec("fashion_mnist", tiny_data_dir).load("test")

    def rows(images, labels):  # tfds stores examples in its own (deterministic) order.
        return sorted(zip(map(bytes, images.reshape(len(images), -1)), labels))

    assert rows(images, labels) == rows(raw_images, raw_labels)


def test_no_data_fails_fast_with_instructions(tmp_path):
    start = time.perf_counter()
    with pytest.raises(datasets.DataError, match="apt-get install -y dataset-fashion-mnist"):
        datasets.prepare("fashion_mnist", data_dir=str(tmp_path / "tfds"), raw_dir=str(tmp_path / "nothing"))
    assert time.perf_counter() - start < 10


def test_corrupt_raw_file_fails_before_writing(tiny_raw_dir, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in idx.RAW_FILES.values():
        (raw / name).write_bytes((tiny_raw_dir / name).read_bytes())
    train = raw / idx.RAW_FILES["train_images"]
    train.write_bytes(train.read_bytes()[:1000])
    with pytest.raises(datasets.DataError, match="train-images-idx3-ubyte.gz"):
        datasets.prepare("fashion_mnist", data_dir=str(tmp_path / "tfds"), raw_dir=str(raw))
    assert not (tmp_path / "tfds" / "fashion_mnist" / "3.0.1" / "dataset_info.json").exists()


def test_unknown_dataset_and_one_without_images_are_named():
    with pytest.raises(datasets.DataError, match="Unknown dataset 'no_such_images'.*or folder:DIR"):
        datasets.prepare("no_such_images")
    with pytest.raises(datasets.DataError, match="'glue/cola' has no `image` feature"):
        datasets.prepare("glue/cola")


def test_an_unprepared_tfds_dataset_says_how_to_get_it(tmp_path):
    with pytest.raises(datasets.DataError, match="'cifar10' is not prepared in .* pass --download"):
        datasets.prepare("cifar10", data_dir=str(tmp_path))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name", ["folder:", "CIFAR-10", "cifar10 "])
def test_dataset_names_are_checked(name):
    with pytest.raises(ValueError):
        datasets.check_name(name)


def test_tfds_image_datasets_through_the_loader():
    with tfds.testing.mock_data(num_examples=6):
        cifar = datasets.DataSpec("cifar10", download=True)
        images, labels = cifar.load("train")
        assert images.shape == (6, 32, 32, 3) and images.dtype == np.uint8
        assert labels.dtype == np.int64 and len(cifar.label_names()) == 10
        assert cifar.key() == "cifar10"
        grey = datasets.DataSpec("cifar10", download=True, image_size=16, grayscale=True)
        small, _ = grey.load("test")
        assert small.shape == (6, 16, 16, 1) and grey.key() == "cifar10_16px_grey"
        # celeb_a: 218x178 faces without a label.
        faces = datasets.DataSpec("celeb_a", download=True)
        with pytest.raises(datasets.DataError, match=r"celeb_a are 218x178: pass --image_size=S"):
            faces.image_shape()
        faces = datasets.DataSpec("celeb_a", download=True, image_size=32)
        images, labels = faces.load("train")
        assert images.shape == (6, 32, 32, 3) and faces.label_names() is None and not labels.any()


def test_images_are_centre_cropped_and_resized():
    image = np.zeros((40, 60, 3), np.uint8)
    image[:, 10:50] = 200  # The centre square, 40x40 of the 60 columns.
    image[:, 30:] = [200, 0, 0]
    fitted = np.asarray(datasets._fit(tf.constant(image), (20, 20, 3)))
    assert fitted.shape == (20, 20, 3)
    np.testing.assert_array_equal(fitted[:, :9], 200)  # The left half stayed grey-white: nothing of the margins.
    np.testing.assert_array_equal(fitted[:, 11:], np.broadcast_to([200, 0, 0], (20, 9, 3)))
    grey = np.asarray(datasets._fit(tf.constant(image), (20, 20, 1)))
    assert grey.shape == (20, 20, 1) and grey[0, 0, 0] == 200 and grey[0, -1, 0] == round(0.2989 * 200)


def _write_images(directory, specs):
    """Writes images: {relative path: (mode, (width, height))}, each with a gradient so that they differ."""
    for i, (path, (mode, size)) in enumerate(specs.items()):
        full = directory / path
        full.parent.mkdir(parents=True, exist_ok=True)
        ramp = np.linspace(0, 255, size[0] * size[1]).reshape(size[1], size[0]).astype(np.int64)
        Image.fromarray(((ramp + 16 * i) % 256).astype(np.uint8)).convert(mode).save(full)


def test_a_folder_of_mixed_images_with_class_subfolders(tmp_path):
    specs = {f"cats/{i}.png": ("RGB", (40, 30)) for i in range(8)}
    specs |= {f"dogs/{i}.jpg": ("L", (20, 20)) for i in range(8)}
    specs |= {"dogs/palette.png": ("P", (24, 24)), "dogs/alpha.png": ("RGBA", (32, 32))}
    _write_images(tmp_path / "pets", specs)
    (tmp_path / "pets" / "notes.txt").write_text("not an image")
    spec = datasets.DataSpec(f"folder:{tmp_path / 'pets'}", data_dir=str(tmp_path / "tfds"), image_size=16)
    train, train_labels = spec.load("train")
    test, test_labels = spec.load("test")
    assert train.shape[1:] == (16, 16, 3) and len(train) + len(test) == 18
    assert 1 <= len(test) <= 3  # A tenth, at least one.
    assert spec.label_names() == ["cats", "dogs"]
    assert sorted(np.concatenate([train_labels, test_labels]).tolist()) == [0] * 8 + [1] * 10
    # Deterministic, and prepared once: a second spec reads the prepared copy.
    again, _ = datasets.DataSpec(spec.name, data_dir=spec.data_dir, image_size=16).load("train")
    np.testing.assert_array_equal(again, train)
    assert len(os.listdir(tmp_path / "tfds" / "image_folder")) == 1
    # Of several sizes: --image_size is needed.
    with pytest.raises(datasets.DataError, match="of several sizes: pass --image_size=S"):
        datasets.DataSpec(spec.name, data_dir=spec.data_dir).image_shape()


def test_a_folder_without_subfolders_grey_with_one_size_and_a_change_noticed(tmp_path):
    _write_images(tmp_path / "digits", {f"{i}.png": ("L", (28, 28)) for i in range(12)})
    spec = datasets.DataSpec(f"folder:{tmp_path / 'digits'}", data_dir=str(tmp_path / "tfds"))
    images, labels = spec.load("train")
    assert images.shape[1:] == (28, 28, 1) and spec.label_names() is None and not labels.any()
    key = spec.key()
    assert key.startswith("folder_digits_")
    _write_images(tmp_path / "digits", {"12.png": ("L", (28, 28))})
    changed = datasets.DataSpec(spec.name, data_dir=spec.data_dir)
    assert changed.key() != key
    train, _ = changed.load("train")
    test, _ = changed.load("test")
    assert len(train) + len(test) == 13


@pytest.mark.parametrize(
    "layout, message",
    [
        ({}, "holds 0 PNG or JPEG image"),
        ({"a.png": ("L", (8, 8)), "cats/b.png": ("L", (8, 8))}, "both at its top level"),
        ({"a.png": ("L", (8, 8)), "b.png": "corrupt"}, "b.png is not a readable image"),
    ],
)
def test_bad_folders_are_named_and_nothing_is_prepared(tmp_path, layout, message):
    (tmp_path / "images").mkdir()
    _write_images(tmp_path / "images", {k: v for k, v in layout.items() if v != "corrupt"})
    for path in [k for k, v in layout.items() if v == "corrupt"]:
        (tmp_path / "images" / path).write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(datasets.DataError, match=message):
        datasets.DataSpec(f"folder:{tmp_path / 'images'}", data_dir=str(tmp_path / "tfds")).load("train")
    assert not (tmp_path / "tfds" / "image_folder").exists() or not any(
        (tmp_path / "tfds" / "image_folder").rglob("dataset_info.json")
    )


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(datasets.DataError, match="no such directory"):
        datasets.DataSpec(f"folder:{tmp_path / 'nothing'}").load("train")


def test_pipeline_range_shape_and_determinism(tiny_data_dir):
    images, labels = datasets.DataSpec("fashion_mnist", tiny_data_dir).load("train")
    batches = [datasets.train_dataset(images, labels, 32, seed=7).take(3) for _ in range(2)]
    first, second = ([np.asarray(x) for x, _ in b] for b in batches)
    assert first[0].shape == (32, 28, 28, 1) and first[0].dtype == np.float32
    assert first[0].min() >= -1.0 and first[0].max() <= 1.0
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    other = np.asarray(next(iter(datasets.train_dataset(images, labels, 32, seed=8)))[0])
    assert not np.array_equal(first[0], other)


def test_pipeline_epochs_are_permutations_reshuffled_each_time():
    images = np.arange(50, dtype=np.uint8).reshape(50, 1, 1, 1) * np.ones((1, 28, 28, 1), np.uint8)
    labels = np.arange(50)
    batches = [np.asarray(y) for _, y in datasets.train_dataset(images, labels, 8, seed=1).take(12)]
    epochs = np.concatenate(batches[:6]), np.concatenate(batches[6:])  # 6 whole batches of 8 per epoch of 50.
    for epoch in epochs:
        assert len(set(epoch)) == 48  # No image twice in an epoch; the 2 left over are dropped.
    assert not np.array_equal(epochs[0], epochs[1])
    x, y = next(iter(datasets.train_dataset(images, labels, 8, seed=1)))
    np.testing.assert_array_equal(np.asarray(x)[:, 0, 0, 0], datasets.to_float(np.asarray(y, np.uint8)))  # Pairs kept.


def test_conversion_same_eagerly_and_in_tf_data():
    pixels = np.array([[0, 127, 128, 255]], np.uint8)
    eager = np.asarray(datasets.to_float(pixels))
    import tensorflow as tf

    graph = next(iter(tf.data.Dataset.from_tensors(pixels).map(datasets.to_float))).numpy()
    np.testing.assert_array_equal(eager, graph)
    np.testing.assert_allclose(eager, [[-1.0, -0.00392157, 0.00392157, 1.0]], atol=1e-6)
    np.testing.assert_array_equal(datasets.to_uint8(eager), pixels)


def test_batch_larger_than_dataset(tiny_data_dir):
    images, labels = datasets.DataSpec("fashion_mnist", tiny_data_dir).load("test")
    with pytest.raises(datasets.DataError, match="lower --batch_size"):
        datasets.train_dataset(images, labels, 1000, seed=0)
