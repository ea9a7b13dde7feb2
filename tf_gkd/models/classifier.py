"""Classifiers: the training recipe, and classic knowledge distillation (Hinton et al., 2015).

`fit_classifier` is the one recipe every classifier of tf_gkd is trained with:
the evaluation's domain classifier, soft-label students and their
from-scratch baselines.

The student minimises

    alpha · CE(y, s)  +  (1 - alpha) · T² · KL(softmax(t / T) ‖ softmax(s / T))

over the logits t of the frozen teacher and s of the student: the hard-label
loss plus the temperature-softened teacher distribution. KL and cross-entropy
differ by the teacher's entropy, a constant, so their gradients are the same;
the T² keeps the soft term's gradients at the scale of the hard term's as T
grows. `keras.distillation.Distiller` does the training step (teacher called
with training=False, and frozen: it sets `teacher.trainable = False`).

The student is the classifier architecture (`factory.make_classifier`) at a
smaller width.
"""

import keras

from tf_gkd.networks import factory

# The recipe: a few epochs of Adam with a cosine decay to 0 (the last epochs at a
# small rate gain more than a point of test accuracy; docs/results.md).
DEFAULT_EPOCHS = 5
DEFAULT_BATCH_SIZE = 128
DEFAULT_LEARNING_RATE = 2e-3
# About 16x fewer parameters than the classifier at width 1.
DEFAULT_STUDENT_WIDTH = 0.25
DEFAULT_TEMPERATURE = 4.0
DEFAULT_ALPHA = 0.1


def make_student(width=DEFAULT_STUDENT_WIDTH, seed=0):
    """The classifier architecture at `width`, initialised from `seed`: images → logits."""
    keras.utils.set_random_seed(seed)
    return factory.make_classifier(width)


def make_distiller(teacher, student, temperature=DEFAULT_TEMPERATURE, alpha=DEFAULT_ALPHA):
    """An uncompiled `keras.distillation.Distiller` of the loss in the module docstring.

    Args:
      teacher: images → logits (not probabilities); frozen.
      student: images → logits of the same shape; trained.
      temperature: T > 0.
      alpha: weight in [0, 1] of the hard-label loss; 1 - alpha weighs the soft one.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be positive. Received: temperature={temperature}")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1]. Received: alpha={alpha}")
    # A KLDivergence *instance*, not the default loss="kl_divergence": in Keras
    # 3.15.1 that string resolves to the function keras.losses.kl_divergence,
    # which misses LogitsDistillation's isinstance(KLDivergence) branch, so the
    # softmax and the T² are skipped and the scaled logits are compared as if
    # they were probabilities. The instance takes the intended branch.
    soft = keras.distillation.LogitsDistillation(float(temperature), loss=keras.losses.KLDivergence())
    return keras.distillation.Distiller(teacher, student, soft, student_loss_weight=float(alpha))


def distill_classifier(
    teacher,
    student,
    train_images,
    train_labels,
    temperature=DEFAULT_TEMPERATURE,
    alpha=DEFAULT_ALPHA,
    epochs=DEFAULT_EPOCHS,
    batch_size=DEFAULT_BATCH_SIZE,
    learning_rate=DEFAULT_LEARNING_RATE,
    seed=0,
):
    """Trains `student` in place from `teacher` and the labels; the teacher is not changed.

    Same recipe (`fit_classifier`) as `train_from_scratch`, which differs only in the loss.

    Returns:
      The Keras history dict: per epoch `loss` (the total), `student_loss`,
      `distillation_loss` and the student's train `accuracy`.
    """
    distiller = make_distiller(teacher, student, temperature, alpha)
    return fit_classifier(distiller, train_images, train_labels, epochs, batch_size, learning_rate, seed)


def train_from_scratch(
    student,
    train_images,
    train_labels,
    epochs=DEFAULT_EPOCHS,
    batch_size=DEFAULT_BATCH_SIZE,
    learning_rate=DEFAULT_LEARNING_RATE,
    seed=0,
):
    """Trains `student` in place on the hard labels only: the baseline of distillation.

    Returns:
      The Keras history dict (`loss`, `accuracy` per epoch).
    """
    return fit_classifier(student, train_images, train_labels, epochs, batch_size, learning_rate, seed)


def fit_classifier(
    model,
    images,
    labels,
    epochs=DEFAULT_EPOCHS,
    batch_size=DEFAULT_BATCH_SIZE,
    learning_rate=DEFAULT_LEARNING_RATE,
    seed=0,
    callbacks=(),
):
    """Trains `model` in place: Adam, cosine decay of the rate to 0, cross-entropy on the hard labels.

    `model` maps float images in [-1, 1] to logits (or is a
    `keras.distillation.Distiller`, which adds its soft term to that loss).
    Seeds Keras's global random state with `seed` (shuffling and dropout);
    None leaves it as it is (the caller seeded it before building the model).

    Returns:
      The Keras history dict (`loss`, `accuracy`, ... per epoch).
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1. Received: epochs={epochs}, batch_size={batch_size}")
    if seed is not None:
        keras.utils.set_random_seed(seed)
    steps = epochs * -(-len(images) // batch_size)
    model.compile(
        optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(learning_rate, steps)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    history = model.fit(
        images, labels, batch_size=batch_size, epochs=epochs, shuffle=True, callbacks=list(callbacks), verbose=0
    )
    return history.history


def accuracy(model, images, labels, batch_size=1000):
    """The fraction of `images` whose highest logit is at the label."""
    logits = model.predict(images, batch_size=batch_size, verbose=0)
    return float((logits.argmax(axis=1) == labels).mean())
