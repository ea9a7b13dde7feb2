"""Sampling and the Evaluator: shared latents, real statistics computed once, the result's fields."""

import keras
import numpy as np
import pytest

from tf_gkd.evaluation import evaluate
from tf_gkd.networks import factory
from tf_gkd.networks import io as model_io


class FakeClassifier:
    """Stands in for a DomainClassifier: 8 pixel statistics as features, counts its calls."""

    info = {"dataset": "fashion_mnist", "test_accuracy": 0.5}
    image_shape = (28, 28, 1)

    def __init__(self):
        self.calls = []

    def describe(self):
        return "fake classifier of fashion_mnist"

    def features_and_probs(self, images, batch_size=500):
        self.calls.append(len(images))
        flat = np.asarray(images, np.float64).reshape(len(images), -1)
        features = flat[:, ::98][:, :8]
        logits = flat[:, :10] * 5.0
        probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        return features, probs


def latent_echo(z_dim=784):
    """A "generator" whose images are its latents: shows exactly which z it was given."""
    z = keras.Input((z_dim,))
    return keras.Model(z, keras.layers.Reshape((28, 28, 1))(z))


def test_latents_are_a_function_of_the_seed_alone():
    images = evaluate.sample(latent_echo(), 10, seed=3, batch_size=4)
    expected = np.random.default_rng(3).standard_normal((10, 784)).astype(np.float32).reshape(10, 28, 28, 1)
    np.testing.assert_array_equal(images, expected)
    assert not np.array_equal(images, evaluate.sample(latent_echo(), 10, seed=4))


def test_batch_size_does_not_change_the_samples():
    generator = factory.make_generator("dense", z_dim=4, width=0.1)
    np.testing.assert_allclose(
        evaluate.sample(generator, 10, batch_size=3), evaluate.sample(generator, 10, batch_size=10), atol=1e-6
    )


def test_non_finite_samples_are_refused():
    z = keras.Input((4,))
    nan = keras.Model(z, keras.layers.Reshape((28, 28, 1))(keras.layers.Dense(784)(z) * np.nan))
    with pytest.raises(evaluate.NonFiniteSamplesError, match="NaN or Inf"):
        evaluate.sample(nan, 4)


def test_real_statistics_are_computed_once_for_several_generators():
    classifier = FakeClassifier()
    real = np.random.default_rng(0).uniform(-1, 1, (40, 28, 28, 1)).astype(np.float32)
    evaluator = evaluate.Evaluator(classifier, real, batch_size=16)
    teacher = factory.make_generator("dense", z_dim=4, width=0.2)
    student = factory.make_generator("dense", z_dim=4, width=0.1)
    scores = [evaluator.evaluate(g, num_samples=30, seed=1, progress=False) for g in (teacher, student)]
    assert classifier.calls == [40, 30, 30]
    assert [s["params"] for s in scores] == [model_io.count_params(teacher), model_io.count_params(student)]


def test_evaluate_generator_result():
    generator = factory.make_generator("dense", z_dim=4, width=0.1)
    real = np.random.default_rng(0).uniform(-1, 1, (40, 28, 28, 1)).astype(np.float32)

    def run():
        return evaluate.evaluate_generator(generator, FakeClassifier(), real, num_samples=30, batch_size=16, seed=2)

    result = run()
    assert set(result) == {
        "fid",
        "kid",
        "kid_std",
        "classifier_score",
        "num_samples",
        "num_real",
        "real_split",
        "params",
        "seed",
    }
    assert all(np.isfinite(result[k]) for k in ("fid", "kid", "kid_std", "classifier_score"))
    assert (result["num_samples"], result["num_real"], result["real_split"], result["seed"]) == (30, 40, "test", 2)
    assert result == run()  # Deterministic.


def test_too_few_images_are_refused():
    real = np.zeros((1, 28, 28, 1), np.float32)
    with pytest.raises(ValueError, match="at least 2 real images. Received: 1"):
        evaluate.Evaluator(FakeClassifier(), real)


def test_images_of_another_shape_than_the_data_are_refused_before_sampling():
    real = np.zeros((4, 28, 28, 1), np.float32)
    evaluator = evaluate.Evaluator(FakeClassifier(), real)
    rgb = factory.make_generator("dense", z_dim=4, width=0.1, image_shape=(32, 32, 3), name="rgb")
    message = "Generator 'rgb' makes 32x32x3 images, the dataset's are 28x28x1"
    with pytest.raises(evaluate.ImageShapeError, match=message):
        evaluator.evaluate(rgb, num_samples=8)
    with pytest.raises(evaluate.ImageShapeError, match="images to score are 32x32x3"):
        evaluator.score_images(np.zeros((4, 32, 32, 3), np.float32))
    with pytest.raises(evaluate.ImageShapeError, match="classifier takes 28x28x1 images, the real ones are 16x16x1"):
        evaluate.Evaluator(FakeClassifier(), np.zeros((4, 16, 16, 1), np.float32))
