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
