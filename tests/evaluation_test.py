"""The domain classifier, its cache, the evaluator, generator loading and gkd-evaluate."""

import json
import os
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest

from tf_gkd.data import datasets
from tf_gkd.evaluation import classifier as classifier_lib
from tf_gkd.evaluation import evaluate
from tf_gkd.networks import factory
from tf_gkd.networks import io as model_io


@pytest.fixture(scope="module")
def tiny_classifier_dir(tiny_data_dir, tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("classifiers"))
    classifier_lib.load_or_train("fashion_mnist", directory, data_dir=tiny_data_dir, epochs=8)
    return directory


def test_classifier_learns_the_tiny_task(tiny_classifier_dir):
    info = json.load(open(os.path.join(tiny_classifier_dir, "fashion_mnist", "info.json")))
    assert info["test_accuracy"] > 0.5  # Chance is 0.1.


def test_cached_classifier_is_loaded_not_retrained(tiny_classifier_dir, monkeypatch):
    monkeypatch.setattr(classifier_lib, "train_classifier", lambda *a, **k: pytest.fail("retrained"))
    cached = classifier_lib.load_or_train("fashion_mnist", tiny_classifier_dir)
    features, probs = cached.features_and_probs(np.zeros((3, 28, 28, 1), np.float32))
    assert features.shape == (3, 128) and probs.shape == (3, 10)
    np.testing.assert_allclose(probs.sum(1), 1.0)


def test_corrupt_cached_classifier_says_what_to_delete(tmp_path):
    directory = tmp_path / "fashion_mnist"
    directory.mkdir()
    (directory / "classifier.keras").write_bytes(b"not a zip")
    with pytest.raises(classifier_lib.ClassifierError, match=f"Delete {directory}"):
        classifier_lib.load_or_train("fashion_mnist", str(tmp_path))


def test_evaluator_scores_real_images_better_than_noise(tiny_data_dir, tiny_classifier_dir):
    classifier = classifier_lib.load_or_train("fashion_mnist", tiny_classifier_dir)
    train, _ = datasets.load_numpy("fashion_mnist", "train", data_dir=tiny_data_dir)
    test, _ = datasets.load_numpy("fashion_mnist", "test", data_dir=tiny_data_dir)
    evaluator = evaluate.Evaluator(classifier, datasets.to_float(test).numpy())
    real = evaluator.score_images(datasets.to_float(train[:64]).numpy())
    noise = evaluator.score_images(np.random.default_rng(0).uniform(-1, 1, (64, 28, 28, 1)).astype(np.float32))
    assert real["fid"] < noise["fid"]
    assert real["classifier_score"] > noise["classifier_score"]


def test_same_seed_gives_same_latents():
    generator = factory.make_generator("dense", z_dim=4, width=0.1)
    np.testing.assert_array_equal(evaluate.sample(generator, 10, seed=1), evaluate.sample(generator, 10, seed=1))
    assert not np.array_equal(evaluate.sample(generator, 10, seed=1), evaluate.sample(generator, 10, seed=2))


def test_generator_round_trip(tmp_path):
    generator = factory.make_generator("dense", z_dim=8, width=0.1)
    path = str(tmp_path / "g.keras")
    model_io.save_model_atomic(generator, path)
    assert os.listdir(tmp_path) == ["g.keras"]  # No temporary file left behind.
    loaded = model_io.load_generator(path)
    z = np.ones((2, 8), np.float32)
    np.testing.assert_array_equal(loaded(z), generator(z))
    assert model_io.z_dim(loaded) == 8


def test_bad_generators_are_named(tmp_path):
    with pytest.raises(model_io.GeneratorLoadError, match="does not exist"):
        model_io.load_generator(str(tmp_path / "missing.keras"))

    not_a_model = tmp_path / "text.keras"
    not_a_model.write_text("hello")
    with pytest.raises(model_io.GeneratorLoadError, match=str(not_a_model)):
        model_io.load_generator(str(not_a_model))

    good = tmp_path / "good.keras"
    model_io.save_model_atomic(factory.make_generator("dense", z_dim=8, width=0.1), str(good))
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(good.read_bytes()[:300])
    with pytest.raises(model_io.GeneratorLoadError, match="truncated.keras"):
        model_io.load_generator(str(truncated))

    classifier = tmp_path / "classifier.keras"
    classifier_lib.make_classifier(width=0.1).save(classifier)
    with pytest.raises(model_io.GeneratorLoadError, match="takes one input z"):
        model_io.load_generator(str(classifier))

    wrong_output = tmp_path / "wrong.keras"
    z = keras.Input((8,))
    keras.Model(z, keras.layers.Dense(10)(z)).save(wrong_output)
    with pytest.raises(model_io.GeneratorLoadError, match=r"returns images \[N, 28, 28, 1\]"):
        model_io.load_generator(str(wrong_output))
    assert zipfile.is_zipfile(good)


@pytest.mark.slow
def test_gkd_evaluate_end_to_end(tiny_data_dir, tiny_classifier_dir, tmp_path):
    run = tmp_path / "run"
    model_io.save_model_atomic(factory.make_generator("dense", width=0.1), str(run / "generator.keras"))
    base = [sys.executable, "-m", "tf_gkd.bin.evaluate", f"--data_dir={tiny_data_dir}",
            f"--classifier_dir={tiny_classifier_dir}", "--num_samples=50"]
    result = subprocess.run([*base, f"--generator={run}"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    scores = json.loads((run / "eval.json").read_text())
    for key in ("fid", "kid", "classifier_score"):
        assert np.isfinite(scores[key])
    assert scores["num_samples"] == 50 and scores["num_real"] == 64
    assert "domain classifier" in scores["extractor"]

    bad = subprocess.run([*base, f"--generator={tmp_path / 'nope.keras'}"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1
    assert "nope.keras" in bad.stderr
