"""Classifier distillation: the loss is Hinton's, the teacher stays frozen, the student learns from it."""

import keras
import numpy as np
import pytest

from tf_gkd.data import datasets
from tf_gkd.evaluation import classifier as classifier_lib
from tf_gkd.models import classifier as distill_lib
from tf_gkd.networks import factory


@pytest.fixture(scope="module")
def tiny(tiny_data_dir):
    """(train images, train labels, test images, test labels) of conftest's tiny dataset, images in [-1, 1]."""
    splits = [datasets.DataSpec("fashion_mnist", tiny_data_dir).load(split) for split in ("train", "test")]
    return [x for images, labels in splits for x in (datasets.to_float(images).numpy(), labels)]


@pytest.fixture(scope="module")
def teacher(tiny):
    model, accuracy = classifier_lib.train_classifier(*tiny, epochs=8, batch_size=32, width=0.5)
    assert accuracy > 0.9  # The bars are easy: a good teacher is the premise of the tests below.
    return model


def log_softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


@pytest.mark.parametrize("temperature, alpha", [(1.0, 0.5), (4.0, 0.1), (2.5, 0.0), (3.0, 1.0)])
def test_loss_is_hard_cross_entropy_plus_t2_scaled_soft_kl(temperature, alpha):
    # Identity teacher: the inputs are the teacher's logits; the student's logits are given as y_pred.
    inputs = keras.Input((3,))
    teacher = keras.Model(inputs, keras.layers.Identity()(inputs))
    distiller = distill_lib.make_distiller(
        teacher, keras.Sequential([inputs, keras.layers.Dense(3)]), temperature, alpha
    )
    distiller.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    t = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]], np.float32)
    s = np.array([[0.0, 1.0, 0.0], [1.0, -2.0, 0.5]], np.float32)
    y = np.array([0, 2])

    hard = -log_softmax(s)[np.arange(2), y].mean()
    p, log_p, log_q = np.exp(log_softmax(t / temperature)), log_softmax(t / temperature), log_softmax(s / temperature)
    soft = temperature**2 * (p * (log_p - log_q)).sum(axis=1).mean()
    loss = distiller.compute_loss(x=t, y=y, y_pred=s)
    np.testing.assert_allclose(float(loss), alpha * hard + (1 - alpha) * soft, rtol=1e-5)


def test_students_beat_chance_and_the_teacher_is_untouched(tiny, teacher):
    train_images, train_labels, test_images, test_labels = tiny
    teacher_weights = [w.copy() for w in teacher.get_weights()]
    student = distill_lib.make_student(width=0.25, seed=0)
    initial = student.get_weights()
    # alpha=0: the student never sees a label, so all it knows comes from the teacher.
    history = distill_lib.distill_classifier(
        teacher, student, train_images, train_labels, temperature=4.0, alpha=0.0, epochs=8, batch_size=32
    )

    assert all(np.array_equal(a, b) for a, b in zip(teacher.get_weights(), teacher_weights))
    assert not all(np.array_equal(a, b) for a, b in zip(student.get_weights(), initial))
    assert history["distillation_loss"][-1] < history["distillation_loss"][0]
    assert distill_lib.accuracy(student, test_images, test_labels) > 0.5  # Chance is 0.1.

    scratch = distill_lib.make_student(width=0.25, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(scratch.get_weights(), initial))  # Same start.
    history = distill_lib.train_from_scratch(scratch, train_images, train_labels, epochs=8, batch_size=32)
    assert history["loss"][-1] < history["loss"][0]
    assert distill_lib.accuracy(scratch, test_images, test_labels) > 0.5


def test_default_student_is_over_ten_times_smaller():
    ratio = factory.make_classifier().count_params() / distill_lib.make_student().count_params()
    assert ratio > 10


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"temperature": 0.0}, "Received: temperature=0.0"),
        ({"temperature": -2.0}, "Received: temperature=-2.0"),
        ({"alpha": -0.1}, "Received: alpha=-0.1"),
        ({"alpha": 1.5}, "Received: alpha=1.5"),
        ({"epochs": 0}, "Received: epochs=0"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    model = distill_lib.make_student(width=0.125)
    images, labels = np.zeros((4, 28, 28, 1), np.float32), np.zeros(4, np.int64)
    with pytest.raises(ValueError, match=message):
        distill_lib.distill_classifier(model, distill_lib.make_student(width=0.125), images, labels, **kwargs)
