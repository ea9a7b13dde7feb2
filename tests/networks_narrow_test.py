"""Narrower copies of a network: weights selected by L1 norm, and the function they keep."""

import keras
import numpy as np
import pytest

from tf_gkd.networks import factory, narrow

Z = np.random.default_rng(0).normal(size=(8, 16)).astype(np.float32)


def generator(kind, width, seed=0):
    keras.utils.set_random_seed(seed)
    return factory.make_generator(kind, z_dim=16, width=width, name=f"{kind}_{width}")


def silence(layer, channels, bn=None):
    """Makes `channels` of `layer` output nothing: zero weights (and a zero BatchNormalization after it)."""
    weights = layer.get_weights()
    axis = 2 if isinstance(layer, keras.layers.Conv2DTranspose) else -1
    index = [slice(None)] * weights[0].ndim
    index[axis] = channels
    weights[0][tuple(index)] = 0.0
    if len(weights) > 1:
        weights[1][channels] = 0.0
    layer.set_weights(weights)
    if bn is not None:
        gamma, beta, mean, variance = bn.get_weights()
        gamma[channels], beta[channels] = 0.0, 0.0
        bn.set_weights([gamma, beta, mean, variance])


def test_same_width_copy_is_the_teacher():
    teacher = generator("conv", 0.25)
    student = narrow.narrow_from(teacher, generator("conv", 0.25, seed=1))
    for a, b in zip(teacher.get_weights(), student.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_dense_student_keeps_the_teachers_live_units():
    teacher = generator("dense", 0.25)  # Hidden layers of 32 units.
    dead = np.arange(1, 32, 2)  # Half of each hidden layer outputs nothing: the rest is the function.
    silence(teacher.get_layer("dense_0"), dead)
    silence(teacher.get_layer("dense_1"), dead)
    student = narrow.narrow_from(teacher, generator("dense", 0.125, seed=1))
    np.testing.assert_allclose(student(Z), teacher(Z), atol=1e-6)


def test_conv_student_keeps_whole_feature_maps_of_the_projection():
    teacher = generator("conv", 0.25)  # 32 feature maps at 7×7, 16 at 14×14.
    project = teacher.get_layer("project")
    dead_maps = np.arange(0, 32, 2)
    # The projection's units are (position, channel) of the 7×7 maps: silence whole maps.
    dead_units = (np.arange(49)[:, None] * 32 + dead_maps).reshape(-1)
    silence(project, dead_units, teacher.get_layer("project_bn"))
    silence(teacher.get_layer("up_14"), np.arange(1, 16, 2), teacher.get_layer("up_14_bn"))
    student = narrow.narrow_from(teacher, generator("conv", 0.125, seed=1))
    # The student is the teacher's function: the right maps kept, in the right order.
    np.testing.assert_allclose(student(Z, training=False), teacher(Z, training=False), atol=1e-5)
    assert student.count_params() < teacher.count_params() / 2


def test_keeps_the_channels_of_largest_norm():
    teacher = generator("conv", 0.25)
    # The projection keeps its 16 7×7 maps of largest norm; up_14 takes them as inputs and keeps
    # its 8 outputs of largest norm over those inputs.
    projection = teacher.get_layer("project").get_weights()[0].reshape(16, 49, 32)
    maps = np.sort(np.argsort(-np.abs(projection).sum((0, 1)))[:16])
    kernel = teacher.get_layer("up_14").get_weights()[0]  # [4, 4, out, in]
    expected = np.sort(np.argsort(-np.abs(kernel[:, :, :, maps]).sum((0, 1, 3)))[:8])
    student = narrow.narrow_from(teacher, generator("conv", 0.125, seed=1))
    np.testing.assert_array_equal(student.get_layer("up_14").get_weights()[0], kernel[:, :, expected][..., maps])


def test_another_architecture_is_refused():
    with pytest.raises(ValueError, match="layer 'to_4x4' has no counterpart.*teacher's kind and depth"):
        narrow.narrow_from(generator("conv", 0.25), generator("conv4", 0.125))
    with pytest.raises(ValueError, match="more channels"):
        narrow.narrow_from(generator("conv", 0.125), generator("conv", 0.25))
