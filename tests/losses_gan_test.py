"""GAN losses against values computed by hand."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tf_gkd.losses import gan as losses

REAL = tf.constant([[2.0], [0.0]])
FAKE = tf.constant([[-1.0], [3.0]])


def softplus(x):
    return math.log1p(math.exp(x))


def test_non_saturating_by_hand():
    # D loss: mean softplus(-real) + mean softplus(fake); G loss: mean softplus(-fake).
    d = (softplus(-2.0) + softplus(0.0)) / 2 + (softplus(-1.0) + softplus(3.0)) / 2
    g = (softplus(1.0) + softplus(-3.0)) / 2
    assert float(losses.non_saturating_discriminator_loss(REAL, FAKE)) == pytest.approx(d, rel=1e-6)
    assert float(losses.non_saturating_generator_loss(FAKE)) == pytest.approx(g, rel=1e-6)


def test_non_saturating_matches_probability_form():
    # -log D(x) - log(1 - D(G(z))) with D = sigmoid(logit).
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    d = -(math.log(sig(2.0)) + math.log(sig(0.0))) / 2 - (math.log(1 - sig(-1.0)) + math.log(1 - sig(3.0))) / 2
    assert float(losses.non_saturating_discriminator_loss(REAL, FAKE)) == pytest.approx(d, rel=1e-6)


def test_label_smoothing_changes_only_real_term():
    smoothed = float(losses.non_saturating_discriminator_loss(REAL, FAKE, real_label=0.9))
    real = np.mean([0.9 * softplus(-x) + 0.1 * softplus(x) for x in (2.0, 0.0)])
    fake = np.mean([softplus(x) for x in (-1.0, 3.0)])
    assert smoothed == pytest.approx(real + fake, rel=1e-6)


def test_minimax_by_hand():
    g = -(softplus(-1.0) + softplus(3.0)) / 2  # mean log(1 - D(G(z)))
    assert float(losses.minimax_generator_loss(FAKE)) == pytest.approx(g, rel=1e-6)
    assert float(losses.minimax_discriminator_loss(REAL, FAKE)) == float(
        losses.non_saturating_discriminator_loss(REAL, FAKE)
    )


def test_hinge_by_hand():
    # relu(1 - [2, 0]) = [0, 1]; relu(1 + [-1, 3]) = [0, 4].
    assert float(losses.hinge_discriminator_loss(REAL, FAKE)) == pytest.approx(0.5 + 2.0)
    assert float(losses.hinge_generator_loss(FAKE)) == pytest.approx(-1.0)


def test_wasserstein_by_hand():
    assert float(losses.wasserstein_discriminator_loss(REAL, FAKE)) == pytest.approx(1.0 - 1.0)
    assert float(losses.wasserstein_discriminator_loss(tf.constant([[5.0]]), FAKE)) == pytest.approx(1.0 - 5.0)
    assert float(losses.wasserstein_generator_loss(FAKE)) == pytest.approx(-1.0)


def test_losses_are_stable_for_extreme_logits():
    huge = tf.constant([[1e4], [-1e4]])
    for name in losses.LOSSES:
        g, d = losses.get(name)
        assert np.isfinite(float(g(huge))) and np.isfinite(float(d(huge, -huge)))


def test_gradient_penalty_of_linear_critic():
    # critic(x) = sum(w * x) has gradient w everywhere: penalty = (‖w‖ - 1)².
    w = tf.fill((1, 2, 2, 1), 0.5)  # ‖w‖ = 1 → penalty 0
    critic = lambda x, training=True: tf.reduce_sum(x * w * 3.0, axis=[1, 2, 3])  # noqa: E731
    real, fake = tf.ones((3, 2, 2, 1)), tf.zeros((3, 2, 2, 1))
    alpha = tf.fill((3, 1, 1, 1), 0.3)
    assert float(losses.gradient_penalty(critic, real, fake, alpha)) == pytest.approx((3.0 - 1.0) ** 2, rel=1e-5)


def test_gradient_penalty_has_finite_gradient_where_critic_is_flat():
    # A zero critic gradient puts the norm's sqrt at 0, where its derivative is
    # infinite without the epsilon (keras-io#624).
    w = tf.Variable(tf.zeros((1, 2, 2, 1)))
    critic = lambda x, training=True: tf.reduce_sum(tf.square(x) * w, axis=[1, 2, 3])  # noqa: E731
    with tf.GradientTape() as tape:
        gp = losses.gradient_penalty(critic, tf.ones((2, 2, 2, 1)), tf.zeros((2, 2, 2, 1)), tf.fill((2, 1, 1, 1), 0.5))
    assert float(gp) == pytest.approx(1.0, rel=1e-5)
    assert np.all(np.isfinite(tape.gradient(gp, w)))


def test_unknown_loss_names_choices():
    with pytest.raises(ValueError, match="hinge"):
        losses.get("least_squares")


def test_r1_penalty_of_linear_critic():
    # critic(x) = sum(w * x) has gradient w at every image: R1 = ‖w‖² = 4 · 1.5².
    w = tf.fill((1, 2, 2, 1), 1.5)
    critic = lambda x, training=True: tf.reduce_sum(x * w, axis=[1, 2, 3])  # noqa: E731
    assert float(losses.r1_penalty(critic, tf.ones((3, 2, 2, 1)))) == pytest.approx(4 * 1.5**2, rel=1e-6)


def test_label_smoothing_is_refused_by_the_losses_without_labels():
    for name in ("hinge", "wasserstein"):
        with pytest.raises(ValueError, match=f"The {name} loss has no real-image target"):
            losses.get(name)[1](REAL, FAKE, real_label=0.9)
