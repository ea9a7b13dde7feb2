"""One factory for every network: teachers and students differ only in size.

`make_generator(kind, width, depth)` builds
- `dense`: the classic fully connected generator of the TensorFlow GAN examples,
  z → 128 → 128 → 784 with leaky ReLU and a tanh output (width scales the 128s,
  depth is the number of hidden layers);
- `conv`: a DCGAN: z → dense projection to 7×7 feature maps → two stride-2
  transposed convolutions to 28×28 (width scales every channel count, depth adds
  stride-1 convolution blocks at 14×14).

Every generator maps z `[N, z_dim]` to images `[N, 28, 28, 1]` in [-1, 1]; its
final activation runs in float32 so mixed precision never leaks into outputs.
Discriminators return one *logit* per image: D(x) = sigmoid(logit), and the
losses take logits so that the sigmoid is computed stably inside them. Their
penultimate activations are a named layer, `features`, for feature-level losses.
"""

import math

import keras
from keras import layers

KINDS = ("dense", "conv")
IMAGE_SHAPE = (28, 28, 1)

# Sizes at width=1, depth=None (the defaults below).
_DENSE_UNITS = 128
_DENSE_DEPTH = 2
_CONV_CHANNELS = 64  # Channels of the 14×14 stage; the 7×7 stage has twice as many.
_CONV_DEPTH = 0


def _channels(base, width):
    return max(1, int(round(base * width)))


def _check_size(kind, width, depth):
    if kind not in KINDS:
        raise ValueError(f"Unknown network kind. Expected one of {KINDS}. Received: kind={kind!r}")
    if not width > 0:
        raise ValueError(f"width must be positive. Received: width={width}")
    if depth is not None and depth < 0:
        raise ValueError(f"depth must be >= 0. Received: depth={depth}")


def make_generator(kind="conv", z_dim=100, width=1.0, depth=None, name="generator"):
    """Returns a functional Keras generator z [N, z_dim] → images [N, 28, 28, 1] in [-1, 1]."""
    _check_size(kind, width, depth)
    if z_dim <= 0:
        raise ValueError(f"z_dim must be positive. Received: z_dim={z_dim}")
    z = keras.Input((z_dim,), name="z")
    if kind == "dense":
        x = z
        for i in range(_DENSE_DEPTH if depth is None else depth):
            x = layers.Dense(_channels(_DENSE_UNITS, width), name=f"dense_{i}")(x)
            x = layers.LeakyReLU(0.2, name=f"lrelu_{i}")(x)
        x = layers.Dense(math.prod(IMAGE_SHAPE), name="to_pixels")(x)
        x = layers.Reshape(IMAGE_SHAPE, name="to_image")(x)
    else:
        c14 = _channels(_CONV_CHANNELS, width)
        c7 = 2 * c14
        x = layers.Dense(7 * 7 * c7, use_bias=False, name="project")(z)
        x = layers.BatchNormalization(name="project_bn")(x)
        x = layers.LeakyReLU(0.2, name="project_lrelu")(x)
        x = layers.Reshape((7, 7, c7), name="to_7x7")(x)
        x = layers.Conv2DTranspose(c14, 4, strides=2, padding="same", use_bias=False, name="up_14")(x)
        x = layers.BatchNormalization(name="up_14_bn")(x)
        x = layers.LeakyReLU(0.2, name="up_14_lrelu")(x)
        for i in range(_CONV_DEPTH if depth is None else depth):
            x = layers.Conv2D(c14, 3, padding="same", use_bias=False, name=f"conv_14_{i}")(x)
            x = layers.BatchNormalization(name=f"conv_14_{i}_bn")(x)
            x = layers.LeakyReLU(0.2, name=f"conv_14_{i}_lrelu")(x)
        x = layers.Conv2DTranspose(1, 4, strides=2, padding="same", name="up_28")(x)
    images = layers.Activation("tanh", dtype="float32", name="images")(x)
    return keras.Model(z, images, name=name)


def make_discriminator(kind="conv", width=1.0, depth=None, dropout=0.3, name="discriminator"):
    """Returns a Keras discriminator images [N, 28, 28, 1] → logits [N, 1] (D = sigmoid)."""
    _check_size(kind, width, depth)
    images = keras.Input(IMAGE_SHAPE, name="images")
    if kind == "dense":
        x = layers.Flatten(name="flatten")(images)
        for i in range(_DENSE_DEPTH if depth is None else depth):
            x = layers.Dense(_channels(_DENSE_UNITS, width), name=f"dense_{i}")(x)
            x = layers.LeakyReLU(0.2, name=f"lrelu_{i}")(x)
    else:
        c14 = _channels(_CONV_CHANNELS, width)
        x = layers.Conv2D(c14, 4, strides=2, padding="same", name="down_14")(images)
        x = layers.LeakyReLU(0.2, name="down_14_lrelu")(x)
        for i in range(_CONV_DEPTH if depth is None else depth):
            x = layers.Conv2D(c14, 3, padding="same", name=f"conv_14_{i}")(x)
            x = layers.LeakyReLU(0.2, name=f"conv_14_{i}_lrelu")(x)
        x = layers.Conv2D(2 * c14, 4, strides=2, padding="same", name="down_7")(x)
        x = layers.LeakyReLU(0.2, name="down_7_lrelu")(x)
        x = layers.Flatten(name="flatten")(x)
    x = layers.Activation("linear", name="features")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    logits = layers.Dense(1, dtype="float32", name="logits")(x)
    return keras.Model(images, logits, name=name)
