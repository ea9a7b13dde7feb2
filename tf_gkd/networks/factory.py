"""One factory for every network: teachers and students differ only in size.

`make_generator(kind, width, depth)` builds
- `dense`: the classic fully connected generator of the TensorFlow GAN examples,
  z → 128 → 128 → 784 with leaky ReLU and a tanh output (width scales the 128s,
  depth is the number of hidden layers);
- `conv`: a DCGAN: z → dense projection to 7×7 feature maps → two stride-2
  transposed convolutions to 28×28 (width scales every channel count, depth adds
  stride-1 convolution blocks at 14×14);
- `conv4`: the DCGAN paper's layout, z → dense projection to 4×4 → 7×7 → 14×14
  → 28×28 with the same channel count at every stage. Its projection costs a
  third of `conv`'s per channel (16 positions instead of 49), and that projection
  is most of a small generator's parameters: at the same size a `conv4` student
  of the `conv` teacher reaches a much lower FID than a `conv` one
  (docs/results.md);
- `separable`: `conv4`'s stages for the smallest students, MobileNet-style:
  an eighth as many 4×4 maps in the projection of z as channels (which would
  otherwise hold most of their parameters), then after the 7×7 stage each ×2
  upsampling is nearest-neighbour followed by a depthwise-separable 3×3
  convolution (at 14×14 and at 28×28), and a separable 3×3 convolution makes
  the image. A separable convolution costs 9c + c² weights where a 4×4
  transposed one costs 16c², so at the same size the student has several times
  more channels (docs/results.md). Depthwise convolutions have no fast
  bfloat16 kernels on CPUs: train it in float32 there.

Every generator maps z `[N, z_dim]` to images `[N, 28, 28, 1]` in [-1, 1]; its
final activation runs in float32 so mixed precision never leaks into outputs.
Every network is made of Keras's own layers; `tf_gkd.networks.fast.accelerate`
turns a built one into its faster training version.
Discriminators return one *logit* per image: D(x) = sigmoid(logit), and the
losses take logits so that the sigmoid is computed stably inside them. Their
penultimate activations are a named layer, `features`, for feature-level losses.

`make_encoder(kind, z_dim, width, depth)` builds a VAE encoder on the
discriminator's trunk, images → [mean, log_var]; the VAE's decoder is
`make_generator` itself, so a VAE decoder meets the generator contract.

`make_classifier(width)` builds the small CNN classifier of the evaluation
(the domain classifier) and of soft-label distillation.
"""

import math

import keras
from keras import layers

from tf_gkd.contract import IMAGE_SHAPE

KINDS = ("dense", "conv", "conv4", "separable")  # Generator kinds.
# Discriminators and encoders come in the two trunks; `conv4` and `separable` generators pair with `conv` ones.
TRUNK_KINDS = ("dense", "conv")
# The generator's final tanh layer; `with_pre_activation` reads its input.
IMAGES_LAYER = "images"
# The layer whose activations feature-level losses (discriminators) and FID (classifiers) read.
FEATURES_LAYER = "features"

# Sizes at width=1, depth=None (the defaults below).
_DENSE_UNITS = 128
_DENSE_DEPTH = 2
_CONV_CHANNELS = 64  # Channels of the 14×14 stage; the 7×7 stage has twice as many.
_CONV_DEPTH = 0
_CONV4_CHANNELS = 64  # Channels of every conv4 stage.


def _channels(base, width):
    return max(1, int(round(base * width)))


def _check_size(kind, width, depth, kinds=KINDS):
    if kind not in kinds:
        raise ValueError(f"Unknown network kind. Expected one of {kinds}. Received: kind={kind!r}")
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
    elif kind == "conv":
        c14 = _channels(_CONV_CHANNELS, width)
        x = _upsample_block(_project(z, (7, 7, 2 * c14)), c14, "up_14")
        x = _blocks_14(x, c14, depth)
        x = layers.Conv2DTranspose(1, 4, strides=2, padding="same", name="up_28")(x)
    else:
        c = _channels(_CONV4_CHANNELS, width)
        x = _project(z, (4, 4, c if kind == "conv4" else max(1, c // 8)))
        x = _upsample_block(x, c, "up_7", strides=1, padding="valid")  # 4 + 4 - 1 = 7.
        if kind == "conv4":
            x = _blocks_14(_upsample_block(x, c, "up_14"), c, depth)
            x = layers.Conv2DTranspose(1, 4, strides=2, padding="same", name="up_28")(x)
        else:
            x = _separable_block(layers.Resizing(14, 14, interpolation="nearest", name="up_14")(x), c, "sep_14")
            for i in range(_CONV_DEPTH if depth is None else depth):
                x = _separable_block(x, c, f"sep_14_{i}")
            x = _separable_block(layers.Resizing(28, 28, interpolation="nearest", name="up_28")(x), c, "sep_28")
            x = layers.SeparableConv2D(1, 3, padding="same", name="to_pixels")(x)
    images = layers.Activation("tanh", dtype="float32", name=IMAGES_LAYER)(x)
    return keras.Model(z, images, name=name)


def _project(z, shape):
    """z → dense projection → BN → leaky ReLU, reshaped to feature maps of `shape`."""
    x = layers.Dense(math.prod(shape), use_bias=False, name="project")(z)
    x = layers.BatchNormalization(name="project_bn")(x)
    x = layers.LeakyReLU(0.2, name="project_lrelu")(x)
    return layers.Reshape(shape, name=f"to_{shape[0]}x{shape[1]}")(x)


def _upsample_block(x, channels, name, strides=2, padding="same"):
    """4×4 transposed convolution → BN → leaky ReLU."""
    x = layers.Conv2DTranspose(channels, 4, strides=strides, padding=padding, use_bias=False, name=name)(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.LeakyReLU(0.2, name=f"{name}_lrelu")(x)


def _separable_block(x, channels, name):
    """Depthwise-separable 3×3 convolution → BN → leaky ReLU."""
    x = layers.SeparableConv2D(channels, 3, padding="same", use_bias=False, name=name)(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.LeakyReLU(0.2, name=f"{name}_lrelu")(x)


def _blocks_14(x, channels, depth):
    """`depth` stride-1 3×3 convolution blocks at 14×14 (the kinds' default depth: none)."""
    for i in range(_CONV_DEPTH if depth is None else depth):
        x = layers.Conv2D(channels, 3, padding="same", use_bias=False, name=f"conv_14_{i}")(x)
        x = layers.BatchNormalization(name=f"conv_14_{i}_bn")(x)
        x = layers.LeakyReLU(0.2, name=f"conv_14_{i}_lrelu")(x)
    return x


def _downsample(images, kind, width, depth):
    """The image → flat feature trunk shared by discriminators and encoders.

    `dense`: 784 → `depth` leaky-ReLU hidden layers of the dense generator's
    width; `conv`: two stride-2 convolutions 28×28 → 14×14 → 7×7, mirroring the DCGAN
    generator's upsampling (depth adds stride-1 blocks at 14×14).
    """
    if kind == "dense":
        x = layers.Flatten(name="flatten")(images)
        for i in range(_DENSE_DEPTH if depth is None else depth):
            x = layers.Dense(_channels(_DENSE_UNITS, width), name=f"dense_{i}")(x)
            x = layers.LeakyReLU(0.2, name=f"lrelu_{i}")(x)
        return x
    c14 = _channels(_CONV_CHANNELS, width)
    x = layers.Conv2D(c14, 4, strides=2, padding="same", name="down_14")(images)
    x = layers.LeakyReLU(0.2, name="down_14_lrelu")(x)
    for i in range(_CONV_DEPTH if depth is None else depth):
        x = layers.Conv2D(c14, 3, padding="same", name=f"conv_14_{i}")(x)
        x = layers.LeakyReLU(0.2, name=f"conv_14_{i}_lrelu")(x)
    x = layers.Conv2D(2 * c14, 4, strides=2, padding="same", name="down_7")(x)
    x = layers.LeakyReLU(0.2, name="down_7_lrelu")(x)
    return layers.Flatten(name="flatten")(x)


def make_discriminator(kind="conv", width=1.0, depth=None, dropout=0.0, name="discriminator"):
    """Returns a Keras discriminator images [N, 28, 28, 1] → logits [N, 1] (D = sigmoid)."""
    _check_size(kind, width, depth, TRUNK_KINDS)
    images = keras.Input(IMAGE_SHAPE, name="images")
    x = layers.Activation("linear", name=FEATURES_LAYER)(_downsample(images, kind, width, depth))
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    logits = layers.Dense(1, dtype="float32", name="logits")(x)
    return keras.Model(images, logits, name=name)


def make_encoder(kind="conv", z_dim=100, width=1.0, depth=None, name="encoder"):
    """Returns a Keras VAE encoder images [N, 28, 28, 1] → [mean, log_var], each [N, z_dim].

    The trunk is the discriminator's (`dense`: 784 → hidden layers; `conv`: the
    stride-2 downsampling to 7×7); two linear heads give the mean and the log
    variance of the diagonal Gaussian q(z|x). The heads compute in the
    networks' dtype (in float32 they were a large share of a bfloat16 VAE
    step: docs/performance.md) and return float32, which the KL term
    exponentiates.
    """
    _check_size(kind, width, depth, TRUNK_KINDS)
    if z_dim <= 0:
        raise ValueError(f"z_dim must be positive. Received: z_dim={z_dim}")
    images = keras.Input(IMAGE_SHAPE, name="images")
    x = _downsample(images, kind, width, depth)
    outputs = [
        layers.Activation("linear", dtype="float32", name=f"{head}_float32")(layers.Dense(z_dim, name=head)(x))
        for head in ("mean", "log_var")
    ]
    return keras.Model(images, outputs, name=name)


def with_pre_activation(generator):
    """A view of `generator` returning [a, images], where images = tanh(a).

    Shares every layer (and weight) with `generator`, so one forward pass gives
    both. A Bernoulli likelihood on [0, 1] pixels needs logits, and since
    tanh(a) = 2·sigmoid(2a) − 1, the logits of (images + 1) / 2 are exactly 2a;
    recovering them as atanh(images) instead would be infinite wherever tanh
    saturates in float32.

    Raises:
      ValueError: `generator` has no final tanh layer named `images` (the
        layout of `make_generator`).
    """
    try:
        layer = generator.get_layer(IMAGES_LAYER)
    except ValueError:
        layer = None
    if layer is None or getattr(layer, "activation", None) is not keras.activations.tanh:
        raise ValueError(
            f"Expected a generator from make_generator, ending in a tanh Activation layer named "
            f"{IMAGES_LAYER!r}. Received: model {generator.name!r} with layers "
            f"{[layer.name for layer in generator.layers[-3:]]} at the end."
        )
    return keras.Model(generator.inputs[0], [layer.input, generator.outputs[0]], name=f"{generator.name}_with_logits")


def make_classifier(width=1.0, num_classes=10):
    """A small CNN: images [N, 28, 28, 1] in [-1, 1] → logits [N, num_classes].

    Two stride-2 convolutions (32 and 64 channels at width 1) rather than
    convolution + pooling pairs: the same accuracy per epoch at a third of the
    compute. Its 128-unit ReLU layer named `features` gives the activations of
    FID and KID; the dropout after it is inactive at inference.
    """
    if not width > 0:
        raise ValueError(f"width must be positive. Received: width={width}")
    c = _channels(32, width)
    images = keras.Input(IMAGE_SHAPE, name="images")
    x = layers.Conv2D(c, 3, strides=2, padding="same", activation="relu", name="conv_14")(images)
    x = layers.Conv2D(2 * c, 3, strides=2, padding="same", activation="relu", name="conv_7")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(_channels(128, width), activation="relu", name=FEATURES_LAYER)(x)
    x = layers.Dropout(0.3, name="dropout")(x)
    logits = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(images, logits, name="classifier")
