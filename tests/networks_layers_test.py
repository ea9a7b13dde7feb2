"""tf_gkd's fused batch normalisation: the same maths as Keras's layer, and Keras's layer in saved files."""

import json
import os
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_gkd.distillation import teacher as teacher_lib
from tf_gkd.networks import factory
from tf_gkd.networks import layers as gkd_layers
from tf_gkd.training import config as config_lib
from tf_gkd.training import runs


def pair_of_layers(shape, **kwargs):
    """(Keras's layer, tf_gkd's fused one), built for `shape`, with the same non-trivial weights."""
    rng = np.random.default_rng(0)
    keras_bn = keras.layers.BatchNormalization(**kwargs)
    fused = gkd_layers.FusedBatchNormalization(**kwargs)
    keras_bn.build(shape)
    fused.build(shape)
    weights = [rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in keras_bn.weights]
    keras_bn.set_weights(weights)
    fused.set_weights(weights)
    return keras_bn, fused


@pytest.mark.parametrize("shape", [(16, 5, 5, 6), (16, 12), (8, 3, 7)])
def test_fused_layer_matches_keras_in_training_and_inference(shape):
    keras_bn, fused = pair_of_layers(shape, momentum=0.9)
    x = tf.constant(np.random.default_rng(1).normal(2.0, 3.0, shape).astype("float32"))
    for _ in range(3):  # Three updates of the moving statistics.
        results = []
        for layer in (keras_bn, fused):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=True)
                loss = tf.reduce_sum(y * tf.sin(x))  # Gradients that depend on every output.
            results.append([y, *tape.gradient(loss, [x, *layer.trainable_weights])])
        for a, b in zip(*results):
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)
    for a, b in zip(keras_bn.non_trainable_weights, fused.non_trainable_weights):  # Moving mean and variance.
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    assert not np.allclose(keras_bn.moving_variance, 1.0)  # The statistics did move.
    np.testing.assert_allclose(fused(x, training=False), keras_bn(x, training=False), rtol=1e-4, atol=1e-4)


def test_fused_layer_under_mixed_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        keras_bn, fused = pair_of_layers((32, 4, 4, 8))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    x = tf.cast(np.random.default_rng(2).normal(1.0, 2.0, (32, 4, 4, 8)), tf.bfloat16)
    y_keras, y_fused = keras_bn(x, training=True), fused(x, training=True)
    assert y_fused.dtype == tf.bfloat16
    # Both round the same float32 result to bfloat16 (8 bits of mantissa): one rounding step apart at most.
    np.testing.assert_allclose(tf.cast(y_fused, tf.float32), tf.cast(y_keras, tf.float32), rtol=2**-7, atol=2**-7)
    np.testing.assert_allclose(fused.moving_mean, keras_bn.moving_mean, rtol=1e-4, atol=1e-5)


def test_unsupported_options_take_the_keras_path():
    keras_bn, fused = pair_of_layers((8, 6), renorm=True)
    x = np.random.default_rng(3).normal(size=(8, 6)).astype("float32")
    np.testing.assert_allclose(fused(x, training=True), keras_bn(x, training=True), rtol=1e-5, atol=1e-5)


def test_with_batch_norm_swaps_layers_and_keeps_outputs():
    generator = factory.make_generator("conv4", z_dim=8, width=0.1)
    z = np.random.default_rng(4).normal(size=(6, 8)).astype("float32")
    generator(z, training=True)  # Move the statistics away from their initial values.
    stock = gkd_layers.with_batch_norm(generator, fused=False)
    kinds = {type(layer).__name__ for layer in stock.layers if isinstance(layer, keras.layers.BatchNormalization)}
    assert kinds == {"BatchNormalization"}
    assert {type(layer).__name__ for layer in generator.layers if "_bn" in layer.name} == {"FusedBatchNormalization"}
    for training in (False, True):
        np.testing.assert_allclose(stock(z, training=training), generator(z, training=training), atol=1e-5)
    back = gkd_layers.with_batch_norm(stock, fused=True)
    assert any(isinstance(layer, gkd_layers.FusedBatchNormalization) for layer in back.layers)
    np.testing.assert_allclose(back(z, training=False), generator(z, training=False), atol=1e-5)
    dense = factory.make_generator("dense", z_dim=8, width=0.1)  # Nothing to swap: the model itself.
    assert gkd_layers.with_batch_norm(dense, fused=False) is dense


@pytest.fixture(scope="module")
def conv_run(tiny_data_dir, tmp_path_factory):
    """A finished tiny GAN run with conv networks (batch normalisation in the generator)."""
    workdir = str(tmp_path_factory.mktemp("conv_run"))
    config = config_lib.TrainConfig(
        data_dir=tiny_data_dir, z_dim=8, generator_kind="conv4", discriminator_kind="conv", generator_width=0.1,
        discriminator_width=0.1, batch_size=8, train_steps=4, log_every=2, sample_every=4, checkpoint_every=4,
        num_samples=4,
    )
    runs.train(config, workdir)
    return workdir


def test_saved_generator_loads_with_keras_alone(conv_run):
    path = os.path.join(conv_run, "generator.keras")
    with zipfile.ZipFile(path) as archive:
        config = archive.read("config.json").decode()
    assert "FusedBatchNormalization" not in config and '"BatchNormalization"' in config
    z = np.random.default_rng(5).normal(size=(3, 8)).astype("float32")
    np.save(os.path.join(conv_run, "z.npy"), z)
    script = (  # A process that never imports tf_gkd.
        "import sys, numpy as np, keras; "
        "g = keras.saving.load_model(sys.argv[1], safe_mode=True); "
        "np.save(sys.argv[3], np.asarray(g(np.load(sys.argv[2]), training=False)))"
    )
    out = os.path.join(conv_run, "images.npy")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    subprocess.run([sys.executable, "-c", script, path, os.path.join(conv_run, "z.npy"), out], check=True, env=env)
    teacher = teacher_lib.load_teacher(conv_run, "fashion_mnist")
    assert any(isinstance(layer, gkd_layers.FusedBatchNormalization) for layer in teacher.generator.layers)
    assert not teacher.generator.trainable
    np.testing.assert_allclose(np.asarray(teacher.generator(z, training=False)), np.load(out), atol=1e-5)


def test_fused_layer_serialises():
    # The in-memory models of a run hold the fused layer; it is registered for safe-mode loading.
    layer = gkd_layers.FusedBatchNormalization(momentum=0.8, epsilon=1e-4)
    restored = keras.saving.deserialize_keras_object(json.loads(json.dumps(keras.saving.serialize_keras_object(layer))))
    assert type(restored) is gkd_layers.FusedBatchNormalization
    assert restored.momentum == 0.8 and restored.epsilon == 1e-4
