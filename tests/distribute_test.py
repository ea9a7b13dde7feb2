"""tf.distribute: a mirrored run over 2 logical CPU devices reproduces a single-device run.

tests/conftest.py splits the CPU into two logical devices. The same model,
seed, data and global batch are trained once without a strategy and once
under `MirroredStrategy` (each replica gets half of every batch); the weights
must agree up to floating-point rounding. That holds only if every custom
`train_step` scales its per-replica losses by the number of replicas and every
replica draws its own slice of the global batch's noise.
"""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_gkd import contract, distribute
from tf_gkd.models import distiller as distill_lib
from tf_gkd.networks import factory
from tf_gkd.runs import train as runs
from tf_gkd.runs.config import TrainConfig

BATCH = 16
REAL = np.random.default_rng(0).uniform(-1, 1, (BATCH, 28, 28, 1)).astype(np.float32)
# Dense networks (no batch-statistics layers) and no dropout: nothing else may depend on the split.
TINY = dict(
    z_dim=8,
    generator_kind="dense",
    generator_width=0.1,
    discriminator_kind="dense",
    discriminator_width=0.1,
    discriminator_dropout=0.0,
    encoder_kind="dense",
    encoder_width=0.1,
    batch_size=BATCH,
    steps_per_execution=1,
)


@functools.cache
def mirrored():
    # One strategy for the module: strategies created one after another in a process
    # can collide on the keys of their collective ops.
    devices = tf.config.list_logical_devices("CPU")
    assert len(devices) >= 2, "tests/conftest.py should have split the CPU into 2 logical devices"
    return tf.distribute.MirroredStrategy([d.name for d in devices[:2]])


# Plain SGD: unlike Adam, its step is proportional to the gradient, so a loss that is not
# scaled by the number of replicas (a gradient R times too large) shows in the weights.
def sgd():
    return keras.optimizers.SGD(0.05)


def gan(**overrides):
    model = runs.build_gan(TrainConfig(**TINY, **overrides), contract.DEFAULT_IMAGE_SHAPE)
    model.compile(g_optimizer=sgd(), d_optimizer=sgd())
    return model


def vae():
    model = runs.build_vae(TrainConfig(model="vae", **TINY), contract.DEFAULT_IMAGE_SHAPE)
    model.compile(optimizer=sgd())
    return model


def distiller(**terms):
    keras.utils.set_random_seed(1)
    teacher = factory.make_generator("dense", z_dim=8, width=0.2, name="teacher")
    keras.utils.set_random_seed(2)
    model = distill_lib.GeneratorDistiller(
        teacher,
        factory.make_generator("dense", z_dim=8, width=0.05, name="student"),
        factory.make_discriminator("dense", width=0.1, dropout=0.0),
        seed=0,
        **(terms or dict(adversarial_weight=0.1, feature_weight=0.1)),
    )
    model.compile(optimizer=sgd(), d_optimizer=sgd())
    return model


def train(build, strategy, steps=3, data=REAL):
    with strategy.scope():
        model = build()
        model.build_optimizers()
        history = model.fit(
            tf.data.Dataset.from_tensors(data).repeat(),
            steps_per_epoch=steps,
            callbacks=getattr(model, "fit_callbacks", []),
            verbose=0,
            shuffle=False,
        )
    return model, {k: v[-1] for k, v in history.history.items()}


BUILDERS = {
    "gan": gan,
    "gan_wasserstein": lambda: gan(loss="wasserstein", d_steps=2),
    "vae": vae,
    "distiller": distiller,
    # Pure mimicry for the first two steps, then the train step switches to one with the adversary.
    "distiller_ramp": lambda: distiller(
        adversarial_weight=0.1, adversarial_weight_schedule="ramp_up:0.4:1", total_steps=3
    ),
}


def trained_weights(model):
    """The weights a run ships: the generator's (GAN), the student's (distiller) or the VAE's."""
    if hasattr(model, "encoder"):
        networks = [model.encoder, model.decoder]
    else:
        networks = [model.student if hasattr(model, "student") else model.generator]
    return [w for network in networks for w in network.get_weights()]


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_mirrored_run_matches_single_device(name):
    data = {"real": REAL} if name.startswith("distiller") else REAL
    initial = trained_weights(BUILDERS[name]())
    single, single_metrics = train(BUILDERS[name], tf.distribute.get_strategy(), data=data)
    replicated, replicated_metrics = train(BUILDERS[name], mirrored(), data=data)
    assert replicated.distribute_strategy.num_replicas_in_sync == 2
    single_weights, replicated_weights = trained_weights(single), trained_weights(replicated)
    # Training moved the weights, so the comparison is not between two initialisations.
    assert any(not np.allclose(a, b, atol=1e-4) for a, b in zip(initial, single_weights))
    for a, b in zip(single_weights, replicated_weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for key, value in single_metrics.items():
        assert replicated_metrics[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key


def test_replicas_draw_disjoint_slices_of_the_global_noise():
    strategy = mirrored()
    with strategy.scope():
        seed_generator = keras.random.SeedGenerator(3)

    @tf.function
    def draw():
        return strategy.run(lambda: distribute.normal((4, 5), seed_generator))

    per_replica = strategy.experimental_local_results(draw())
    replicated = np.concatenate([np.asarray(x) for x in per_replica])
    expected = np.asarray(keras.random.normal((8, 5), seed=keras.random.SeedGenerator(3)))
    np.testing.assert_allclose(replicated, expected)
    assert not np.allclose(per_replica[0], per_replica[1])


def test_scale_for_replicas_divides_by_the_replica_count():
    assert float(distribute.scale_for_replicas(tf.constant(6.0))) == 6.0
    with mirrored().scope():
        assert float(distribute.scale_for_replicas(tf.constant(6.0))) == 3.0


def test_unknown_strategy_and_multi_worker_without_cluster(monkeypatch):
    with pytest.raises(ValueError, match="Unknown strategy.*'tpu'"):
        distribute.make_strategy("tpu")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        distribute.make_strategy("multi_worker")
