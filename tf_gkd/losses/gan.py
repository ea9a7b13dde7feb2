"""GAN losses as pure functions of discriminator logits.

The discriminator is a sigmoid classifier, D(x) = sigmoid(logit(x)); every loss
takes logits (any real value), never probabilities, so that log D and
log(1 - D) are computed as softplus terms without overflow or log(0):
log D(x) = -softplus(-logit), log(1 - D(x)) = -softplus(logit).

Each returns a scalar: the mean over the batch. Names follow
`<kind>_generator_loss(fake_logits)` /
`<kind>_discriminator_loss(real_logits, fake_logits, real_label=1.0)`: every
discriminator loss takes the same arguments. `real_label` < 1 (one-sided label
smoothing) is defined for the sigmoid losses only; the others refuse it.
"""

import tensorflow as tf

LOSSES = ("non_saturating", "minimax", "hinge", "wasserstein")
# The losses of a sigmoid discriminator, whose real-image target can be smoothed.
SIGMOID_LOSSES = ("non_saturating", "minimax")


def _f32(x):
    return tf.cast(x, tf.float32)


def _no_label_smoothing(kind, real_label):
    if real_label != 1.0:
        raise ValueError(
            f"The {kind} loss has no real-image target to smooth: real_label must be 1. Received: "
            f"real_label={real_label}"
        )


def non_saturating_discriminator_loss(real_logits, fake_logits, real_label=1.0):
    """-E[log D(x)] - E[log(1 - D(G(z)))]; `real_label` < 1 is one-sided label smoothing."""
    real_logits, fake_logits = _f32(real_logits), _f32(fake_logits)
    real_loss = tf.nn.sigmoid_cross_entropy_with_logits(
        labels=tf.fill(tf.shape(real_logits), real_label), logits=real_logits
    )
    return tf.reduce_mean(real_loss) + tf.reduce_mean(tf.nn.softplus(fake_logits))


def non_saturating_generator_loss(fake_logits):
    """-E[log D(G(z))]: strong gradients early in training (Goodfellow et al., 2014)."""
    return tf.reduce_mean(tf.nn.softplus(-_f32(fake_logits)))


# The minimax game has the same discriminator objective.
minimax_discriminator_loss = non_saturating_discriminator_loss


def minimax_generator_loss(fake_logits):
    """E[log(1 - D(G(z)))]: the original objective; saturates when D wins."""
    return -tf.reduce_mean(tf.nn.softplus(_f32(fake_logits)))


def hinge_discriminator_loss(real_logits, fake_logits, real_label=1.0):
    """E[max(0, 1 - logit(x))] + E[max(0, 1 + logit(G(z)))]."""
    _no_label_smoothing("hinge", real_label)
    return tf.reduce_mean(tf.nn.relu(1.0 - _f32(real_logits))) + tf.reduce_mean(tf.nn.relu(1.0 + _f32(fake_logits)))


def hinge_generator_loss(fake_logits):
    """-E[logit(G(z))]."""
    return -tf.reduce_mean(_f32(fake_logits))


def wasserstein_discriminator_loss(real_logits, fake_logits, real_label=1.0):
    """E[critic(G(z))] - E[critic(x)]; add `gradient_penalty` (WGAN-GP)."""
    _no_label_smoothing("wasserstein", real_label)
    return tf.reduce_mean(_f32(fake_logits)) - tf.reduce_mean(_f32(real_logits))


def wasserstein_generator_loss(fake_logits):
    """-E[critic(G(z))]."""
    return -tf.reduce_mean(_f32(fake_logits))


def gradient_penalty(critic, real, fake, alpha, epsilon=1e-12):
    """E[(‖∇ critic(x̂)‖₂ - 1)²] at x̂ = alpha·real + (1 - alpha)·fake (Gulrajani et al., 2017).

    `alpha` has shape [N, 1, 1, 1] and is drawn uniformly from [0, 1] by the
    caller. `epsilon` inside the square root keeps the gradient finite where the
    critic's gradient vanishes.
    """
    real, fake = _f32(real), _f32(fake)
    interpolated = alpha * real + (1.0 - alpha) * fake
    with tf.GradientTape() as tape:
        tape.watch(interpolated)
        logits = critic(interpolated, training=True)
    grads = tape.gradient(logits, interpolated)
    norms = tf.sqrt(tf.reduce_sum(tf.square(_f32(grads)), axis=[1, 2, 3]) + epsilon)
    return tf.reduce_mean(tf.square(norms - 1.0))


def r1_penalty(critic, real):
    """E[‖∇ₓ critic(x)‖²] over real images x (Mescheder et al., 2018): keeps the discriminator flat on the data.

    Weighted by γ/2 in the discriminator's loss, it stabilises adversarial
    training without the interpolates of the gradient penalty.
    """
    real = _f32(real)
    with tf.GradientTape() as tape:
        tape.watch(real)
        logits = critic(real, training=True)
    grads = tape.gradient(logits, real)  # Of the sum of the logits: each image's own gradient.
    return tf.reduce_mean(tf.reduce_sum(tf.square(_f32(grads)), axis=tf.range(1, tf.rank(grads))))


def get(name):
    """Returns (generator_loss, discriminator_loss) for a loss name in `LOSSES`."""
    if name not in LOSSES:
        raise ValueError(f"Unknown GAN loss. Expected one of {LOSSES}. Received: loss={name!r}")
    return globals()[f"{name}_generator_loss"], globals()[f"{name}_discriminator_loss"]
