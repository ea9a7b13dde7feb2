"""Generator-distillation losses as pure functions: how far a student is from its teacher.

The student sees the same latent z as the teacher and is pulled towards the
teacher's image for that z (pixel mimicry) and towards the teacher image's
discriminator features (feature mimicry). The adversarial term of
L = L_distill + λ·L_GAN comes from `tf_gkd.losses.gan`.

Each returns a scalar in float32: the mean over batch and elements.
"""

import tensorflow as tf

PIXEL_LOSSES = ("l1", "mse")


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


def psnr(student, teacher, max_value=2.0):
    """Per-image PSNR in dB of `student` against `teacher` images in [-1, 1] (range 2).

    Returns a vector [N], capped at 100 dB (identical images) so that it stays finite.
    """
    mse = tf.reduce_mean(tf.square(_f32(student) - _f32(teacher)), axis=tf.range(1, tf.rank(student)))
    mse = tf.maximum(mse, max_value**2 * 1e-10)
    return 10.0 * tf.math.log(max_value**2 / mse) / tf.math.log(10.0)
