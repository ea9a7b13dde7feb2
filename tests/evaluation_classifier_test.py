"""The domain classifier: it learns, its cache round-trips, a broken cache is reported by name."""

import json
import os
import re

import keras
import numpy as np
import pytest
from PIL import Image

from tf_gkd.data import datasets
from tf_gkd.evaluation import classifier as classifier_lib
from tf_gkd.evaluation import evaluate
from tf_gkd.networks import factory


def squares(n, seed):
    """Float images in [-1, 1] of dark noise with a bright 6×6 square whose place is the label."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = rng.uniform(-1.0, -0.6, (n, 28, 28, 1)).astype(np.float32)
    for image, label in zip(images, labels):
        row, col = divmod(int(label), 5)
        image[2 + 12 * row : 8 + 12 * row, 1 + 5 * col : 7 + 5 * col] = 1.0
    return images, labels


@pytest.fixture(scope="module")
def classifier_dir(tiny_data_dir, tmp_path_factory):
    """A classifier cache holding a classifier of the tiny `fashion_mnist` of conftest."""
    directory = str(tmp_path_factory.mktemp("classifiers"))
    classifier_lib.load_or_train(datasets.DataSpec(data_dir=tiny_data_dir), directory, epochs=8, batch_size=32)
    return directory


def test_classifier_shapes():
    model = factory.make_classifier(width=0.25)
    assert model.output_shape == (None, 10)
    assert model.get_layer(classifier_lib.FEATURES_LAYER).output.shape == (None, 32)


def test_one_epoch_on_200_images_beats_chance():
    train_images, train_labels = squares(200, seed=0)
    test_images, test_labels = squares(100, seed=1)
    _, accuracy = classifier_lib.train_classifier(
        train_images, train_labels, test_images, test_labels, epochs=1, batch_size=8, seed=0
    )
    assert accuracy > 0.5  # Chance is 0.1.


def test_first_load_trains_and_caches(classifier_dir):
    directory = os.path.join(classifier_dir, "fashion_mnist")
    assert sorted(os.listdir(directory)) == ["classifier.keras", "info.json"]  # No temporary files.
    with open(os.path.join(directory, "info.json")) as f:
        info = json.load(f)
    assert info["dataset"] == "fashion_mnist"
    assert info["epochs"] == 8 and info["seed"] == 0 and info["num_train"] == 256 and info["num_test"] == 64
    assert info["test_accuracy"] > 0.5  # Chance is 0.1.
    assert "trained_at" in info


def test_second_load_uses_the_cache(classifier_dir, monkeypatch):
    monkeypatch.setattr(classifier_lib, "train_classifier", lambda *a, **k: pytest.fail("retrained"))
    monkeypatch.setattr(datasets, "prepare", lambda *a, **k: pytest.fail("loaded the data"))
    cached = classifier_lib.load_or_train(datasets.DataSpec("fashion_mnist"), classifier_dir)
    assert cached.info["epochs"] == 8

    images = np.random.default_rng(0).uniform(-1, 1, (7, 28, 28, 1)).astype(np.float32)
    features, probs = cached.features_and_probs(images, batch_size=3)
    assert features.shape == (7, 128) and probs.shape == (7, 10)
    assert features.dtype == probs.dtype == np.float64
    # One pass gives both, and they are the model's own: softmax of its logits, its `features` layer.
    np.testing.assert_allclose(probs, keras.ops.softmax(cached.model(images)), atol=1e-6)
    features_model = keras.Model(cached.model.inputs[0], cached.model.get_layer("features").output)
    np.testing.assert_allclose(features, features_model(images), rtol=1e-5, atol=1e-5)


def test_real_images_score_better_than_noise(classifier_dir, tiny_data_dir):
    classifier = classifier_lib.load_or_train(datasets.DataSpec("fashion_mnist"), classifier_dir)
    train, _ = datasets.DataSpec("fashion_mnist", tiny_data_dir).load("train")
    test, _ = datasets.DataSpec("fashion_mnist", tiny_data_dir).load("test")
    evaluator = evaluate.Evaluator(classifier, datasets.to_float(test).numpy())
    real = evaluator.score_images(datasets.to_float(train[:64]).numpy())
    noise = evaluator.score_images(np.random.default_rng(0).uniform(-1, 1, (64, 28, 28, 1)).astype(np.float32))
    assert real["fid"] < noise["fid"] and real["kid"] < noise["kid"]
    assert real["classifier_score"] > noise["classifier_score"]


@pytest.mark.parametrize("damage", ["truncated model", "missing info", "other dataset"])
def test_a_broken_cache_names_the_files_to_delete(classifier_dir, tmp_path, damage):
    source = os.path.join(classifier_dir, "fashion_mnist")
    directory = tmp_path / "fashion_mnist"
    directory.mkdir()
    model_bytes = open(os.path.join(source, "classifier.keras"), "rb").read()
    info = json.load(open(os.path.join(source, "info.json")))
    (directory / "classifier.keras").write_bytes(model_bytes[:1000] if damage == "truncated model" else model_bytes)
    if damage != "missing info":
        info["dataset"] = "mnist" if damage == "other dataset" else info["dataset"]
        (directory / "info.json").write_text(json.dumps(info))
    expected = f"Delete {directory / 'classifier.keras'} and {directory / 'info.json'}"
    with pytest.raises(classifier_lib.ClassifierError, match=re.escape(expected)):
        classifier_lib.load_or_train(datasets.DataSpec("fashion_mnist"), str(tmp_path))


def test_without_labels_the_classifier_learns_rotations(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    for i in range(40):  # A bright bar at the top of each image: its rotation is easy to tell.
        pixels = rng.integers(0, 60, (16, 16), dtype=np.uint8)
        pixels[1:4, 2:14] = 255
        Image.fromarray(pixels).save(tmp_path / "images" / f"{i}.png")
    spec = datasets.DataSpec(f"folder:{tmp_path / 'images'}", data_dir=str(tmp_path / "tfds"))
    classifier = classifier_lib.load_or_train(spec, str(tmp_path / "classifiers"), epochs=3, batch_size=8)
    assert classifier.info["task"] == "rotation" and classifier.info["dataset"] == spec.key()
    assert classifier.model.output_shape == (None, 4)
    assert "(trained on rotation)" in classifier.describe()
    turned, labels = classifier_lib.rotated(
        np.arange(4 * 4, dtype=np.uint8).reshape(4, 2, 2, 1) * np.ones((4, 1, 1, 1), np.uint8)
    )
    assert labels.tolist() == [0, 1, 2, 3]
    np.testing.assert_array_equal(turned[1, ..., 0], np.rot90(np.arange(4).reshape(2, 2) + 4))
