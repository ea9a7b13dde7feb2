"""The two terms of the VAE's negative ELBO, as pure functions, in nats per image.

negative ELBO(x) = reconstruction(x) + KL(q(z|x) ‖ N(0, I)), where
reconstruction = −log p(x|z) for one z ~ q(z|x). Each function returns one
value per image [N], summed over pixels or latent dimensions (so that the
numbers are nats per image and do not depend on the image size through an
average); the caller averages over the batch.

Both likelihoods are over pixels rescaled to [0, 1], x01 = (x + 1) / 2 for
images x in [-1, 1], so their numbers share a scale:
- `bernoulli`: −Σ [x01·log p + (1 − x01)·log(1 − p)], p = sigmoid(logits). For
  grey values (not 0/1) this is the usual cross-entropy, not a normalised
  density over [0, 1].
- `gaussian`: −Σ log N(x01; μ01, σ²) with a fixed σ, normalising constant
  included, i.e. Σ [(x01 − μ01)² / (2σ²) + ½·log(2πσ²)]. It is a density, so
  it can be negative; with σ = 0.1 the constant is −1.38 nats per pixel.
"""

import math

import tensorflow as tf

LIKELIHOODS = ("bernoulli", "gaussian")


def _to_unit_interval(images):
    return (tf.cast(images, tf.float32) + 1.0) / 2.0


def _sum_per_image(values):
    return tf.reduce_sum(tf.reshape(values, [tf.shape(values)[0], -1]), axis=1)


def kl_divergence(mean, log_var):
    """KL(N(mean, exp(log_var)) ‖ N(0, I)) per image [N], from [N, z_dim] tensors.

    Closed form: ½·Σ (exp(log_var) + mean² − 1 − log_var).
    """
    mean = tf.cast(mean, tf.float32)
    log_var = tf.cast(log_var, tf.float32)
    return 0.5 * tf.reduce_sum(tf.exp(log_var) + tf.square(mean) - 1.0 - log_var, axis=1)


def bernoulli_reconstruction_loss(images, logits):
    """−log Bernoulli(x01; sigmoid(logits)) per image [N].

    Args:
      images: targets in [-1, 1], [N, 28, 28, 1].
      logits: decoder logits of the [0, 1] pixels, same shape (for a tanh
        generator these are 2a, a the tanh's input; see
        `tf_gkd.networks.factory.with_pre_activation`).
    """
    cross_entropy = tf.nn.sigmoid_cross_entropy_with_logits(
        labels=_to_unit_interval(images), logits=tf.cast(logits, tf.float32)
    )
    return _sum_per_image(cross_entropy)


def gaussian_reconstruction_loss(images, decoded, sigma):
    """−log N(x01; decoded01, sigma²) per image [N], constant included.

    Args:
      images: targets in [-1, 1].
      decoded: decoder outputs in [-1, 1] (the Gaussian's mean), same shape.
      sigma: fixed standard deviation, on the [0, 1] pixel scale.
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be positive. Received: sigma={sigma}")
    squared = tf.square(_to_unit_interval(images) - _to_unit_interval(decoded))
    return _sum_per_image(squared / (2.0 * sigma**2) + 0.5 * math.log(2.0 * math.pi * sigma**2))
