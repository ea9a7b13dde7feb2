"""tf_gkd's fast layers (fused batch normalisation, matrix-product kernel gradients): the same maths as
Keras's layers, and Keras's layers in saved files."""

import dataclasses
import json
import os
import re
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_gkd import contract
from tf_gkd.networks import factory
from tf_gkd.networks import fast as gkd_layers
from tf_gkd.runs import config as config_lib
from tf_gkd.runs import teacher as teacher_lib
from tf_gkd.runs import train as runs


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


def test_accelerate_and_plain_swap_layers_and_keep_outputs():
    stock = factory.make_generator("conv4", z_dim=8, width=0.1)
    fast_types = set(gkd_layers.FAST_LAYERS.values())
    assert not {type(layer) for layer in stock.layers} & fast_types  # The factory builds Keras's layers.
    z = np.random.default_rng(4).normal(size=(6, 8)).astype("float32")
    stock(z, training=True)  # Move the statistics away from their initial values.
    fast = gkd_layers.accelerate(stock)
    assert {type(layer) for layer in fast.layers} & fast_types == fast_types - {gkd_layers.MatmulGradConv2D}
    for training in (False, True):
        np.testing.assert_allclose(fast(z, training=training), stock(z, training=training), atol=1e-5)
    back = gkd_layers.plain(fast)
    assert [type(layer) for layer in back.layers] == [type(layer) for layer in stock.layers]
    np.testing.assert_allclose(back(z, training=False), stock(z, training=False), atol=1e-5)
    dense = factory.make_generator("dense", z_dim=8, width=0.1)  # Nothing to swap: the model itself.
    assert gkd_layers.accelerate(dense) is dense and gkd_layers.plain(dense) is dense


def test_fast_layers_off_trains_keras_layers():
    config = config_lib.TrainConfig(
        z_dim=8, generator_kind="conv4", generator_width=0.1, discriminator_width=0.1, fast_layers="off"
    )
    model = runs.build_gan(config, contract.DEFAULT_IMAGE_SHAPE)
    fast_types = set(gkd_layers.FAST_LAYERS.values())
    assert (
        not {type(layer) for network in (model.generator, model.discriminator) for layer in network.layers} & fast_types
    )
    accelerated = runs.build_gan(dataclasses.replace(config, fast_layers="auto"), contract.DEFAULT_IMAGE_SHAPE)
    assert {type(layer) for layer in accelerated.generator.layers} & fast_types


# (input shape, layer arguments): SAME with even and odd sizes, VALID with a row the kernel never reads,
# unequal strides and kernel sides.
CONV_CASES = [
    ((4, 14, 14, 16), dict(filters=64, kernel_size=4, strides=2, padding="same")),
    ((4, 15, 13, 16), dict(filters=64, kernel_size=4, strides=2, padding="same")),
    ((4, 15, 15, 16), dict(filters=64, kernel_size=4, strides=2, padding="valid")),
    ((4, 12, 10, 32), dict(filters=64, kernel_size=(4, 2), strides=(2, 1), padding="same")),
    ((4, 9, 9, 8), dict(filters=64, kernel_size=6, strides=3, padding="valid")),
]


@pytest.mark.parametrize("shape, kwargs", CONV_CASES)
def test_conv_weight_gradient_matches_tensorflow(shape, kwargs):
    """The matrix-product kernel gradient against TensorFlow's Conv2DBackpropFilter, in float32."""
    rng = np.random.default_rng(6)
    kernel_size = keras.layers.Conv2D(**kwargs).kernel_size
    strides, padding = keras.layers.Conv2D(**kwargs).strides, kwargs["padding"]
    x = tf.constant(rng.normal(size=shape).astype("float32"))
    kernel = tf.constant(rng.normal(size=(*kernel_size, shape[-1], kwargs["filters"])).astype("float32"))
    y = tf.nn.conv2d(x, kernel, strides, padding.upper())
    dy = tf.constant(rng.normal(size=y.shape).astype("float32"))
    expected = tf.raw_ops.Conv2DBackpropFilter(
        input=x, filter_sizes=kernel.shape, out_backprop=dy, strides=[1, *strides, 1], padding=padding.upper()
    )
    got = gkd_layers.conv_weight_gradient(x, dy, kernel_size, strides, padding)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)


def bfloat16_layers(keras_cls, fast_cls, shape, kwargs):
    """(Keras's layer, tf_gkd's), mixed_bfloat16, built for `shape` with the same weights."""
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        stock, fast = keras_cls(**kwargs), fast_cls(**kwargs)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    stock.build(shape)
    fast.build(shape)
    rng = np.random.default_rng(7)
    weights = [rng.normal(0, 0.2, w.shape).astype("float32") for w in stock.weights]
    stock.set_weights(weights)
    fast.set_weights(weights)
    return stock, fast


# dL/dy of every position of an image, the same for every layer, so that the gradients compare the
# backward passes alone.
def upstream_gradient(layer, signature):
    return np.random.default_rng(9).normal(size=layer.compute_output_shape(signature.shape)[1:]).astype("float32")


def traced_gradient(layer, signature):
    """(concrete function x → (output, input and weight gradients) of `layer`, the op types of its graph)."""
    upstream = upstream_gradient(layer, signature)

    @tf.function(input_signature=[signature])
    def outputs_and_gradients(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.cast(layer(x), tf.float32)
            loss = tf.reduce_sum(y * upstream)
        return [y, *tape.gradient(loss, [x, *layer.trainable_weights])]

    function = outputs_and_gradients.get_concrete_function()
    return function, {op.type for op in function.graph.get_operations()}


def assert_same_gradients(stock, fast, shape):
    """The fast layer computes its kernel gradient by matrix products, and agrees with Keras's to bfloat16 precision.

    Traced as in training (TensorFlow's graph kernels; eager BiasAddGrad sums
    bfloat16 less exactly), with an unknown batch size.
    """
    x = tf.cast(np.random.default_rng(8).normal(size=shape), tf.bfloat16)
    signature = tf.TensorSpec([None, *shape[1:]], tf.bfloat16)
    (stock_fn, stock_ops), (fast_fn, fast_ops) = traced_gradient(stock, signature), traced_gradient(fast, signature)
    assert "Conv2DBackpropFilter" in stock_ops
    assert "Conv2DBackpropFilter" not in fast_ops and "MatMul" in fast_ops
    assert fast_fn.structured_outputs[0].shape.as_list() == stock_fn.structured_outputs[0].shape.as_list()
    expected, got = [[tf.cast(t, tf.float32) for t in fn(x)] for fn in (stock_fn, fast_fn)]
    if stock.use_bias:
        # The bias gradient is the sum of dL/dy (rounded to bfloat16) over images and positions, which
        # Keras's transposed convolution misses by up to 3 % (unfused BiasAddGrad sums in bfloat16).
        upstream = tf.cast(tf.cast(upstream_gradient(stock, signature), tf.bfloat16), tf.float32)
        expected[-1] = shape[0] * tf.reduce_sum(upstream, [0, 1])
    for a, b in zip(expected, got):
        # Summation orders differ and bfloat16 keeps 8 bits: compare relative to each tensor's scale.
        np.testing.assert_allclose(b, a, atol=2**-6 * float(tf.reduce_max(tf.abs(a))))


@pytest.mark.parametrize("shape, kwargs", CONV_CASES)
def test_matmul_grad_conv_matches_keras_under_mixed_bfloat16(shape, kwargs):
    assert_same_gradients(*bfloat16_layers(keras.layers.Conv2D, gkd_layers.MatmulGradConv2D, shape, kwargs), shape)


@pytest.mark.parametrize(
    "shape, kwargs",
    [
        ((4, 7, 7, 64), dict(filters=64, kernel_size=4, strides=2, padding="same", use_bias=False)),
        ((4, 7, 6, 64), dict(filters=32, kernel_size=4, strides=2, padding="valid")),
    ],
)
def test_matmul_grad_conv_transpose_matches_keras_under_mixed_bfloat16(shape, kwargs):
    layers = bfloat16_layers(keras.layers.Conv2DTranspose, gkd_layers.MatmulGradConv2DTranspose, shape, kwargs)
    assert_same_gradients(*layers, shape)


def test_unknown_image_sizes_take_the_keras_path():
    shape, kwargs = CONV_CASES[0]
    _, fast = bfloat16_layers(keras.layers.Conv2D, gkd_layers.MatmulGradConv2D, shape, kwargs)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, shape[-1]], tf.bfloat16)])
    def kernel_gradient(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.cast(fast(x), tf.float32))
        return tape.gradient(loss, fast.kernel)

    ops = {op.type for op in kernel_gradient.get_concrete_function().graph.get_operations()}
    assert "Conv2DBackpropFilter" in ops
    assert kernel_gradient(tf.ones(shape, tf.bfloat16)).shape == fast.kernel.shape


def conv_layers_with_oneDNN_kernel_gradient(network, dtype):
    """Names of `network`'s convolutions whose kernel gradient is TensorFlow's op in its traced train gradient."""
    signature = tf.TensorSpec([None, *network.input_shape[1:]], dtype)

    @tf.function(input_signature=[signature])
    def gradients(x):
        with tf.GradientTape() as tape:
            outputs = tf.nest.flatten(network(x, training=True))
            loss = tf.add_n([tf.reduce_sum(tf.cast(y, tf.float32)) for y in outputs])
        return tape.gradient(loss, network.trainable_weights)

    ops = gradients.get_concrete_function().graph.get_operations()
    convs = [
        layer.name for layer in network.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose))
    ]
    filters = [op.name for op in ops if op.type == "Conv2DBackpropFilter"]  # ".../down_7_1/convolution/..."
    return {name for name in convs for op in filters if re.search(f"/{name}(_[0-9]+)?/", op)}


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_default_networks_use_matmul_kernel_gradients_where_the_docs_say(policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        networks = [
            gkd_layers.accelerate(network)
            for network in (
                factory.make_generator("conv"),
                factory.make_discriminator("conv"),
                factory.make_encoder("conv"),
            )
        ]
    finally:
        keras.mixed_precision.set_global_policy("float32")
    dtype = tf.float32 if policy == "float32" else tf.bfloat16
    found = [conv_layers_with_oneDNN_kernel_gradient(network, dtype) for network in networks]
    if policy == "float32":  # Every kernel gradient is TensorFlow's.
        assert found == [{"up_14", "up_28"}, {"down_14", "down_7"}, {"down_14", "down_7"}]
    else:  # All but the layers with one channel: the first and the last.
        assert found == [{"up_28"}, {"down_14"}, {"down_14"}]


def test_matmul_gradient_only_where_it_is_faster():
    layer = gkd_layers.MatmulGradConv2D(64, 4, strides=2, padding="same")
    layer.build((None, 14, 14, 16))
    bf16 = tf.zeros((2, 14, 14, 16), tf.bfloat16)
    assert gkd_layers._matmul_gradient_applies(layer, bf16, 16, 64)
    assert not gkd_layers._matmul_gradient_applies(layer, tf.zeros((2, 14, 14, 16)), 16, 64)  # float32
    assert not gkd_layers._matmul_gradient_applies(layer, bf16, 1, 64)  # A 4-row matrix: the first layer.
    stride_1 = gkd_layers.MatmulGradConv2D(64, 3, padding="same")
    assert not gkd_layers._matmul_gradient_applies(stride_1, bf16, 16, 64)
    layer.trainable = False  # A frozen teacher: no kernel gradient to compute.
    assert not gkd_layers._matmul_gradient_applies(layer, bf16, 16, 64)


@pytest.fixture(scope="module")
def conv_run(tiny_data_dir, tmp_path_factory):
    """A finished tiny GAN run with conv networks (batch normalisation in the generator)."""
    workdir = str(tmp_path_factory.mktemp("conv_run"))
    config = config_lib.TrainConfig(
        data_dir=tiny_data_dir,
        z_dim=8,
        generator_kind="conv4",
        discriminator_kind="conv",
        generator_width=0.1,
        discriminator_width=0.1,
        batch_size=8,
        train_steps=4,
        log_every=2,
        sample_every=4,
        checkpoint_every=4,
        num_samples=4,
    )
    runs.train(config, workdir)
    return workdir


def test_saved_generator_loads_with_keras_alone(conv_run):
    path = os.path.join(conv_run, "generator.keras")
    with zipfile.ZipFile(path) as archive:
        config = archive.read("config.json").decode()
    assert "tf_gkd" not in config and '"BatchNormalization"' in config and '"Conv2DTranspose"' in config
    with zipfile.ZipFile(os.path.join(conv_run, "discriminator.keras")) as archive:
        config = archive.read("config.json").decode()
    assert "tf_gkd" not in config and '"Conv2D"' in config
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
    assert not teacher.generator.trainable
    np.testing.assert_allclose(np.asarray(teacher.generator(z, training=False)), np.load(out), atol=1e-5)


@pytest.mark.parametrize(
    "layer",
    [
        gkd_layers.FusedBatchNormalization(momentum=0.8, epsilon=1e-4),
        gkd_layers.MatmulGradConv2D(8, 4, strides=2, padding="same"),
        gkd_layers.MatmulGradConv2DTranspose(8, 4, strides=2, padding="valid", use_bias=False),
    ],
)
def test_fast_layers_serialise(layer):
    # The in-memory models of a run hold the fast layers; they are registered for safe-mode loading.
    restored = keras.saving.deserialize_keras_object(json.loads(json.dumps(keras.saving.serialize_keras_object(layer))))
    assert type(restored) is type(layer)
    assert restored.get_config() == layer.get_config()
