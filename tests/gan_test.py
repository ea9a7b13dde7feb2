"""The GAN model: every loss, the step options, EMA and precision settings, on tiny networks."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_gkd import contract, precision
from tf_gkd.models import ema as ema_lib
from tf_gkd.models import gan as gan_lib
from tf_gkd.networks import factory
from tf_gkd.runs import train as runs
from tf_gkd.runs.config import TrainConfig

REAL = np.random.default_rng(0).uniform(-1, 1, (16, 28, 28, 1)).astype(np.float32)


def tiny_gan(seed=0, **kwargs):
    keras.utils.set_random_seed(seed)  # Weights independent of the tests run before.
    model = gan_lib.GAN(
        factory.make_generator("dense", z_dim=8, width=0.1),
        factory.make_discriminator("dense", width=0.1),
        seed=seed,
        **kwargs,
    )
    model.compile(g_optimizer=keras.optimizers.Adam(1e-3), d_optimizer=keras.optimizers.Adam(1e-3))
    return model


def fit(model, steps):
    return model.fit(tf.data.Dataset.from_tensors(REAL).repeat(), steps_per_epoch=steps, verbose=0, shuffle=False)


@pytest.mark.parametrize("loss", ["non_saturating", "minimax", "hinge", "wasserstein"])
def test_every_loss_trains(loss):
    model = tiny_gan(loss=loss)
    history = fit(model, 3)
    assert all(np.isfinite(v[-1]) for v in history.history.values())
    assert int(model.step) == 3


def test_discriminator_steps_per_generator_step():
    model = tiny_gan(d_steps=3)
    fit(model, 2)
    assert int(model.g_optimizer.iterations) == 2
    assert int(model.adversary.optimizer.iterations) == 6


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_discriminator_learns_on_a_fixed_batch(seed):
    model = tiny_gan(seed)
    model.g_optimizer.learning_rate = 0.0  # A fixed generator: only the discriminator's step can lower its loss.
    z = np.random.default_rng(seed).standard_normal((16, 8)).astype(np.float32)

    def d_loss():  # Real batch vs the current generator's images for fixed z, no dropout noise.
        return float(model.adversary.discriminator_loss(REAL, model.generator(z, training=False))[0])

    before = d_loss()
    fit(model, 30)
    assert d_loss() < before - 0.1


def test_weight_average_lags_the_generator():
    averaged, plain = tiny_gan(ema_decay=0.99), tiny_gan(ema_decay=0.0)
    fit(averaged, 20)
    fit(plain, 2)
    z = np.ones((2, 8), np.float32)
    assert not np.allclose(averaged.generate(z), averaged.generator(z, training=False))
    np.testing.assert_allclose(plain.generate(z), plain.generator(z, training=False), atol=1e-6)


def test_update_ema_warms_up():
    # At step 0 the decay is min(0.999, 1/10): the average moves 90% of the way.
    ema, model = (
        factory.make_generator("dense", z_dim=2, width=0.05),
        factory.make_generator("dense", z_dim=2, width=0.05),
    )
    before = [w.numpy() for w in ema.trainable_weights]
    ema_lib.update_ema(ema, model, 0.999, step=0)
    for b, e, m in zip(before, ema.trainable_weights, model.trainable_weights):
        np.testing.assert_allclose(e.numpy(), 0.1 * b + 0.9 * m.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "options",
    [
        dict(mixed_precision="mixed_bfloat16"),
        dict(mixed_precision="mixed_float16"),
        dict(jit_compile=True),
        dict(steps_per_execution=2),
    ],
    ids=["bfloat16", "float16", "xla", "fused"],
)
def test_runtime_options_train_and_keep_float32_outputs(options):
    config = TrainConfig(
        generator_kind="dense",
        discriminator_kind="dense",
        generator_width=0.1,
        discriminator_width=0.1,
        z_dim=8,
        batch_size=16,
        train_steps=4,
        log_every=2,
        sample_every=2,
        checkpoint_every=2,
        **{"mixed_precision": "off", **options},
    )
    precision.apply(config.mixed_precision)
    try:
        model = runs.build_gan(config, contract.DEFAULT_IMAGE_SHAPE)
        history = fit(model, 4)
        images = np.asarray(model.generate(np.ones((2, 8), np.float32)))
    finally:
        precision.apply("off")
    assert np.isfinite(history.history["g_loss"][-1])
    assert images.dtype == np.float32 and np.all(np.abs(images) <= 1)
    assert int(model.step) == 4


def test_checkpoint_keys_are_those_of_earlier_runs():
    # Runs written by earlier revisions resume only if the checkpoint's object names stay the same.
    keys = {"generator", "discriminator", "ema_generator", "g_optimizer", "d_optimizer", "seed"}
    assert set(tiny_gan().checkpoint_items()) == keys
