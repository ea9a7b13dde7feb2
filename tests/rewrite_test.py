"""Rewrites for mobile runtimes: batch norms folded, transposed convolutions as convolutions, same function."""

import keras
import numpy as np
import pytest
from generators import Z_DIM, generator, inputs  # (tests/generators.py)
from keras import layers

from tf_gkd import contract
from tf_gkd.export import exporter, opversions, rewrite, tflite


@pytest.mark.parametrize("kind, num_classes", [("dense", 0), ("conv4", 0), ("separable", 0), ("conv4", 3)])
def test_folding_batch_norm_keeps_the_function_and_removes_every_batch_norm(kind, num_classes):
    net = generator(kind, num_classes, width=0.375 if kind == "separable" else 0.1)
    folded = rewrite.fold_batch_norm(net)
    x = inputs(net)
    np.testing.assert_allclose(folded(x, training=False), net(x, training=False), atol=2e-5)
    assert not [layer for layer in folded.layers if isinstance(layer, layers.BatchNormalization)]
    assert sum(isinstance(layer, rewrite.FoldedBatchNorm) for layer in folded.layers) == sum(
        isinstance(layer, layers.BatchNormalization) for layer in net.layers
    )


@pytest.mark.parametrize(
    "kind, num_classes, image_shape, subpixel, full",
    [
        ("conv", 0, (28, 28, 1), 2, 0),  # 7 → 14 → 28.
        ("conv4", 0, (28, 28, 1), 2, 1),  # 4 → 7 ('valid', 4×4) → 14 → 28.
        ("conv4", 3, (28, 28, 1), 2, 1),
        ("conv4", 0, (32, 32, 3), 3, 1),  # 4 → 4 ('valid', 1×1) → 8 → 16 → 32.
        ("separable", 0, (28, 28, 1), 0, 1),  # Nearest-neighbour upsampling after its 4 → 7.
        ("dense", 0, (28, 28, 1), 0, 0),
    ],
)
def test_for_mobile_keeps_the_function_without_transposed_convolutions(kind, num_classes, image_shape, subpixel, full):
    net = generator(kind, num_classes, width=0.375 if kind == "separable" else 0.1, image_shape=image_shape)
    mobile = rewrite.for_mobile(net)
    x = inputs(net)
    np.testing.assert_allclose(mobile(x, training=False), net(x, training=False), atol=2e-5)
    assert not [layer for layer in mobile.layers if type(layer) is layers.Conv2DTranspose]
    batch_norms = sum(isinstance(layer, layers.BatchNormalization) for layer in net.layers)
    assert rewrite.count(mobile) == {
        "folded_batch_norms": batch_norms,
        "subpixel_convolutions": subpixel,
        "full_convolutions": full,
        "batch_reshapes": sum(type(layer) is layers.Reshape for layer in net.layers),
    }
    assert rewrite.count(mobile)["batch_reshapes"] >= 1


@pytest.mark.parametrize("size, use_bias", [((5, 6), True), ((1, 1), False), ((7, 7), True)])
def test_a_subpixel_convolution_is_its_transposed_convolution(size, use_bias):
    rng = np.random.default_rng(0)
    transposed = layers.Conv2DTranspose(3, 4, strides=2, padding="same", use_bias=use_bias)
    x = keras.Input((*size, 5))
    model = keras.Model(x, transposed(x))
    transposed.set_weights([rng.normal(size=w.shape) for w in transposed.get_weights()])
    mobile = rewrite.mobile_layers(model)
    (layer,) = [layer for layer in mobile.layers if isinstance(layer, rewrite.SubpixelConv2D)]
    assert layer.kernel.shape == (3, 3, 5, 12)
    data = rng.normal(size=(4, *size, 5)).astype(np.float32)
    np.testing.assert_allclose(mobile(data), model(data), atol=1e-4)


@pytest.mark.parametrize("kernel_size", [(4, 4), (3, 2), (1, 1)])
def test_a_full_convolution_is_its_stride_1_valid_transposed_convolution(kernel_size):
    rng = np.random.default_rng(1)
    transposed = layers.Conv2DTranspose(4, kernel_size, padding="valid")
    x = keras.Input((4, 5, 3))
    model = keras.Model(x, transposed(x))
    transposed.set_weights([rng.normal(size=w.shape) for w in transposed.get_weights()])
    mobile = rewrite.mobile_layers(model)
    assert [type(layer) for layer in mobile.layers[1:]] == [rewrite.FullConv2D]
    data = rng.normal(size=(2, 4, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(mobile(data), model(data), atol=1e-4)


def test_other_transposed_convolutions_are_kept():
    x = keras.Input((4, 4, 2))
    y = layers.Conv2DTranspose(2, 3, strides=2, padding="same", name="k3")(x)  # Not 4×4.
    y = layers.Conv2DTranspose(2, 4, strides=2, padding="same", activation="relu", name="relu")(y)  # Activation.
    y = layers.Conv2DTranspose(2, 3, padding="same", name="same")(y)  # Stride 1, 'same'.
    model = keras.Model(x, y)
    mobile = rewrite.mobile_layers(model)
    assert [type(layer) for layer in mobile.layers[1:]] == [layers.Conv2DTranspose] * 3
    data = np.random.default_rng(2).normal(size=(2, 4, 4, 2)).astype(np.float32)
    np.testing.assert_allclose(mobile(data), model(data), atol=1e-6)


def test_a_subpixel_convolution_is_rebuilt_from_its_config():
    layer = rewrite.SubpixelConv2D(scale=2, filters=8, kernel_size=3, padding="same")
    copy = rewrite.SubpixelConv2D.from_config(layer.get_config())
    assert copy.scale == 2 and copy.filters == 8
    assert copy.compute_output_shape((None, 5, 6, 3)) == (None, 10, 12, 2)


def test_a_generator_that_cannot_be_rewritten_is_exported_as_it_is():
    z = keras.Input((Z_DIM,), name="z")
    shared = layers.Dense(Z_DIM, name="shared")
    x = shared(shared(z))  # Called twice.
    x = layers.Reshape((2, 2, 2))(x)
    x = layers.Conv2DTranspose(1, 4, strides=2, padding="same", name="up")(x)
    model = keras.Model(z, layers.Activation("tanh")(x))
    with pytest.raises(rewrite.GraphError, match="'shared' is called 2 times"):
        rewrite.for_mobile(model)
    data = contract.latents(4, Z_DIM, 0)
    same, report = exporter._for_mobile(model, data, np.asarray(model(data)))
    assert same is model
    assert report["applied"] is False and "'shared' is called 2 times" in report["why_not"]


@pytest.mark.parametrize("mobile_rewrite", [True, False])
def test_the_exported_file_has_the_operators_of_the_rewrite(tmp_path, mobile_rewrite):
    net = generator("conv4")
    report = exporter.export_generator(
        net, str(tmp_path / "export"), "tiny", variants=["fp32"], mobile_rewrite=mobile_rewrite
    )
    ops = {name for name, _ in opversions.ops_of(tmp_path / "export" / tflite.tflite_file("fp32"))}
    if mobile_rewrite:
        assert {"CONV_2D", "DEPTH_TO_SPACE", "PAD"} <= ops and "TRANSPOSE_CONV" not in ops
        assert not {"SHAPE", "STRIDED_SLICE", "PACK"} & ops  # The reshape's shape is a constant.
        assert report["keras"]["mobile_rewrite"]["applied"] is True
        assert report["keras"]["mobile_rewrite"]["max_abs_diff"] <= exporter.REWRITE_TOLERANCE
    else:
        assert "TRANSPOSE_CONV" in ops and "DEPTH_TO_SPACE" not in ops and "SHAPE" in ops
        assert report["keras"]["mobile_rewrite"] == {"applied": False, "why_not": "--nomobile_rewrite"}
    assert report["tflite"]["fp32"]["max_abs_diff"] <= tflite.TOLERANCES["fp32"]["max_abs_diff"]
