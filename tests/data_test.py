"""Offline data: IDX validation, tfds preparation from local files, the input pipeline."""

import gzip
import time

import numpy as np
import pytest

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
    images, labels = datasets.load_numpy("fashion_mnist", "train", data_dir=tiny_data_dir)
    assert images.shape == (256, 28, 28, 1) and images.dtype == np.uint8
    assert labels.shape == (256,) and labels.dtype == np.int64
    test_images, _ = datasets.load_numpy("fashion_mnist", "test", data_dir=tiny_data_dir)
    assert len(test_images) == 64


def test_prepared_data_matches_raw_files(tiny_raw_dir, tiny_data_dir):
    raw_images, raw_labels = idx.read_split(str(tiny_raw_dir), "test")
    images, labels = datasets.load_numpy("fashion_mnist", "test", data_dir=tiny_data_dir)

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


def test_unknown_dataset():
    with pytest.raises(datasets.DataError, match="fashion_mnist"):
        datasets.prepare("cifar10")


def test_pipeline_range_shape_and_determinism(tiny_data_dir):
    images, labels = datasets.load_numpy("fashion_mnist", "train", data_dir=tiny_data_dir)
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
    images, labels = datasets.load_numpy("fashion_mnist", "test", data_dir=tiny_data_dir)
    with pytest.raises(datasets.DataError, match="lower --batch_size"):
        datasets.train_dataset(images, labels, 1000, seed=0)
