"""Tiny factory generators as after training, for the tests of the export's rewrites and quantization."""

import keras
import numpy as np
from keras import layers

from tf_gkd import contract
from tf_gkd.networks import factory

Z_DIM = 8


def generator(kind, num_classes=0, width=0.1, image_shape=None):
    """A tiny generator whose batch normalizations are not the identity (as after training)."""
    keras.utils.set_random_seed(0)
    net = factory.make_generator(kind, z_dim=Z_DIM, width=width, num_classes=num_classes, image_shape=image_shape)
    rng = np.random.default_rng(1)
    for layer in net.layers:
        if isinstance(layer, layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(-2, 2, n), rng.normal(size=n), rng.normal(size=n), rng.uniform(0.1, 3, n)])
    return net


def inputs(net, num=32, seed=3):
    """`num` latents (and class labels) as `net` takes them."""
    z = contract.latents(num, Z_DIM, seed)
    labels = contract.class_labels(num, contract.num_classes(net)) if contract.num_classes(net) else None
    return contract.generator_inputs(net, z, labels)
