"""The network factory: shapes, ranges and sizes of every kind."""

import keras
import numpy as np
import pytest

from tf_gkd.networks import factory


@pytest.mark.parametrize("kind", factory.KINDS)
def test_generator_contract(kind):
    g = factory.make_generator(kind, z_dim=8, width=0.25)
    images = np.asarray(g(np.random.default_rng(0).standard_normal((3, 8)).astype("float32")))
    assert images.shape == (3, 28, 28, 1)
    assert images.dtype == np.float32
    assert np.all(np.abs(images) <= 1.0)


@pytest.mark.parametrize("kind", factory.TRUNK_KINDS)
def test_discriminator_gives_one_logit_and_features(kind):
    d = factory.make_discriminator(kind, width=0.25)
    logits = np.asarray(d(np.zeros((2, 28, 28, 1), "float32")))
    assert logits.shape == (2, 1)
    assert d.get_layer("features").output.shape[0] is None


@pytest.mark.parametrize("kind", factory.TRUNK_KINDS)
def test_encoder_heads_compute_in_the_policy_dtype_and_return_float32(kind):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        encoder = factory.make_encoder(kind, z_dim=8, width=0.25)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert [encoder.get_layer(head).compute_dtype for head in ("mean", "log_var")] == ["bfloat16", "bfloat16"]
    mean, log_var = encoder(np.zeros((2, 28, 28, 1), "float32"))
    assert mean.shape == log_var.shape == (2, 8)
    assert mean.dtype == log_var.dtype == "float32"


def test_classic_dense_generator_layout():
    g = factory.make_generator("dense")
    units = [layer.units for layer in g.layers if hasattr(layer, "units")]
    assert units == [128, 128, 784]
    assert g.count_params() == (100 * 128 + 128) + (128 * 128 + 128) + (128 * 784 + 784)


@pytest.mark.parametrize("kind", factory.KINDS)
def test_width_and_depth_change_size(kind):
    small = factory.make_generator(kind, width=0.25).count_params()
    base = factory.make_generator(kind).count_params()
    deep = factory.make_generator(kind, depth=3).count_params()
    assert small < base < deep


@pytest.mark.parametrize("bad", [dict(width=0), dict(width=-3), dict(depth=-1), dict(kind="resnet")])
def test_bad_sizes_are_rejected(bad):
    with pytest.raises(ValueError, match="Received"):
        factory.make_generator(**bad)
    with pytest.raises(ValueError, match="Received"):
        factory.make_discriminator(**bad)


def test_conv_teacher_layout_and_conv4_student_sizes():
    teacher = factory.make_generator("conv")
    assert teacher.count_params() == 784_641  # The default teacher; saved runs depend on this layout.
    assert [layer.name for layer in teacher.layers if layer.count_params()] == [
        "project",
        "project_bn",
        "up_14",
        "up_14_bn",
        "up_28",
    ]
    # conv4: 4×4 → 7×7 → 14×14 → 28×28, 16 channels at width 0.25 (the 20x student); separable: an
    # eighth of the maps in the projection, 24 channels at width 0.375 (the 100x student).
    for kind, width, stages, (projection, channels), smaller in (
        ("conv4", 0.25, ["to_4x4", "up_7_lrelu", "up_14_lrelu", "images"], (16, 16), (20, 25)),
        ("separable", 0.375, ["to_4x4", "up_7_lrelu", "sep_14_lrelu", "images"], (3, 24), (90, 100)),
    ):
        student = factory.make_generator(kind, width=width)
        assert [tuple(student.get_layer(name).output.shape[1:]) for name in stages] == [
            (4, 4, projection),
            (7, 7, channels),
            (14, 14, channels),
            (28, 28, 1),
        ], kind
        assert smaller[0] < teacher.count_params() / student.count_params() < smaller[1], kind


def test_separable_student_layers():
    student = factory.make_generator("separable", width=0.375, depth=1)
    separable = [layer for layer in student.layers if isinstance(layer, keras.layers.SeparableConv2D)]
    assert [(layer.name, layer.output.shape[1], layer.filters) for layer in separable] == [
        ("sep_14", 14, 24),
        ("sep_14_0", 14, 24),
        ("sep_28", 28, 24),
        ("to_pixels", 28, 1),
    ]
    assert [layer.name for layer in student.layers if isinstance(layer, keras.layers.Resizing)] == [
        "up_14",
        "up_28",
    ]


def test_conv4_is_a_generator_kind_only():
    with pytest.raises(ValueError, match="Received: kind='conv4'"):
        factory.make_discriminator("conv4")
    with pytest.raises(ValueError, match="Received: kind='conv4'"):
        factory.make_encoder("conv4")


# Sizes s·2^k: 16 = 4·4 (the smallest), 20 = 5·4, 32 = 4·8, 48 = 6·8; grey and RGB.
@pytest.mark.parametrize("shape", [(16, 16, 1), (20, 20, 3), (32, 32, 3), (48, 48, 1)])
@pytest.mark.parametrize("kind", factory.KINDS)
def test_every_kind_builds_other_image_shapes(kind, shape):
    g = factory.make_generator(kind, z_dim=8, width=0.125, image_shape=shape)
    images = np.asarray(g(np.zeros((2, 8), "float32")))
    assert images.shape == (2, *shape)
    assert np.all(np.abs(images) <= 1.0)
    trunk = kind if kind in factory.TRUNK_KINDS else "conv"
    d = factory.make_discriminator(trunk, width=0.125, image_shape=shape)
    assert np.asarray(d(images)).shape == (2, 1)
    mean, _ = factory.make_encoder(trunk, z_dim=8, width=0.125, image_shape=shape)(images)
    assert mean.shape == (2, 8)
    classifier = factory.make_classifier(0.125, num_classes=4, image_shape=shape)
    assert np.asarray(classifier(images)).shape == (2, 4)


def test_stages_follow_the_image_size():
    assert factory.stages((28, 28, 1)) == (7, 2)
    assert factory.stages((32, 32, 3)) == (4, 3)
    assert factory.stages((64, 64, 3)) == (4, 4)
    g = factory.make_generator("conv", z_dim=8, image_shape=(32, 32, 3))
    names = [layer.name for layer in g.layers]
    assert names[names.index("to_4x4") :] == ["to_4x4", "up_8", "up_8_bn", "up_8_lrelu", "up_16", "up_16_bn",
                                                "up_16_lrelu", "up_32", "images"]  # fmt: skip
    # Channels halve towards the image, as at 28×28 (7×7×128 → 14×14×64 → 28×28×1).
    assert [g.get_layer(n).output.shape[-1] for n in ("to_4x4", "up_8", "up_16", "up_32")] == [256, 128, 64, 3]
    d = factory.make_discriminator("conv", image_shape=(32, 32, 3))
    assert [d.get_layer(n).output.shape[1:] for n in ("down_16", "down_8", "down_4")] == [
        (16, 16, 64),
        (8, 8, 128),
        (4, 4, 256),
    ]


@pytest.mark.parametrize(
    "shape, message",
    [
        ((30, 30, 1), "image size 30"),
        ((12, 12, 3), "image size 12"),
        ((128 * 9, 128 * 9, 3), "image size 1152"),
        ((28, 32, 1), "square"),
        ((28, 28, 2), "1 (grey) or 3 (RGB)"),
    ],
)
def test_image_shapes_the_factory_cannot_build_are_named(shape, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        factory.make_generator("conv", image_shape=shape)
