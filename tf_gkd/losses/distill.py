"""Generator-distillation losses as pure functions: how far a student is from its teacher.

The student sees the same latent z as the teacher and is pulled towards the
teacher's image for that z (pixel mimicry), towards the teacher image's
discriminator features (feature mimicry), and its whole batch towards a
target batch in those features (`energy_distance`, a distribution-level
term). The adversarial term of L = L_distill + λ·L_GAN comes from
`tf_gkd.losses.gan`.

Each returns a scalar in float32 (`psnr`: one value per image).
"""

import tensorflow as tf

PIXEL_LOSSES = ("l1", "mse")
# What the distribution term (`energy_distance`) compares a student's batch with.
DISTRIBUTION_TARGETS = ("teacher", "real")


def _f32(x):
    return tf.cast(x, tf.float32)


def l1_loss(student, teacher):
    """E|s - t|: mimicry that keeps edges sharper than MSE (less averaging of modes)."""
    return tf.reduce_mean(tf.abs(_f32(student) - _f32(teacher)))


def mse_loss(student, teacher):
    """E(s - t)²."""
    return tf.reduce_mean(tf.square(_f32(student) - _f32(teacher)))


def pixel_loss(kind):
    """The pixel mimicry loss named `kind` (one of `PIXEL_LOSSES`)."""
    if kind not in PIXEL_LOSSES:
        raise ValueError(f"Unknown pixel loss. Expected one of {PIXEL_LOSSES}. Received: {kind!r}")
    return {"l1": l1_loss, "mse": mse_loss}[kind]


def feature_loss(student_features, teacher_features):
    """E(f(s) - f(t))² over features, with no gradient into the teacher's side."""
    return mse_loss(student_features, tf.stop_gradient(teacher_features))


def _mean_distance(x, y, epsilon, distinct=False):
    """E‖x - y‖ over the pairs of rows of x [N, D] and y [M, D]; `distinct`: x is y, pairs of two different rows."""
    squared = (
        tf.reduce_sum(tf.square(x), 1)[:, None]
        + tf.reduce_sum(tf.square(y), 1)[None, :]
        - 2.0 * tf.matmul(x, y, transpose_b=True)
    )
    distances = tf.sqrt(tf.maximum(squared, 0.0) + epsilon)
    if not distinct:
        return tf.reduce_mean(distances)
    n = tf.cast(tf.shape(x)[0], tf.float32)
    return (tf.reduce_sum(distances) - tf.linalg.trace(distances)) / (n * (n - 1.0))


def energy_distance(student_features, target_features, epsilon=1e-8):
    """2·E‖s - t‖ - E‖s - s'‖ - E‖t - t'‖ between two batches of features [N, D] (Székely & Rizzo, 2013).

    A distance between the two distributions, not between paired samples: it
    is 0 only when they are equal, and it pulls the student's batch towards
    the whole target batch, spread included (a collapsed student batch pays
    for its missing variety: its self-distance term is what keeps it from
    collapsing onto the target's mean). The self-distances are over pairs of
    distinct rows, so two batches of one distribution score 0 on average. No
    gradient reaches the target's side; `epsilon` inside the square root keeps
    the gradient finite at zero distance.
    """
    s = tf.reshape(_f32(student_features), [tf.shape(student_features)[0], -1])
    t = tf.stop_gradient(tf.reshape(_f32(target_features), [tf.shape(target_features)[0], -1]))
    return (
        2.0 * _mean_distance(s, t, epsilon)
        - _mean_distance(s, s, epsilon, distinct=True)
        - _mean_distance(t, t, epsilon, distinct=True)
    )


def psnr(student, teacher, max_value=2.0):
    """Per-image PSNR in dB of `student` against `teacher` images in [-1, 1] (range 2).

    Returns a vector [N], capped at 100 dB (identical images) so that it stays finite.
    """
    mse = tf.reduce_mean(tf.square(_f32(student) - _f32(teacher)), axis=tf.range(1, tf.rank(student)))
    mse = tf.maximum(mse, max_value**2 * 1e-10)
    return 10.0 * tf.math.log(max_value**2 / mse) / tf.math.log(10.0)
