"""One factory for every network: teachers and students differ only in size.

Every network is built for an image shape (H, W, C): square, 1 or 3 channels,
of size s0·2^k with 4 ≤ s0 ≤ 7 and k ≥ 2 (`stages`). The convolutional
networks work on s0×s0 feature maps and k ×2 stages; at 28×28 (7·2²) they are
the layouts below, at 32×32 (4·2³) they start at 4×4 and have one stage more.

`make_generator(kind, z_dim, width, depth, image_shape=...)` builds
- `dense`: the classic fully connected generator of the TensorFlow GAN examples,
  z → 128 → 128 → H·W·C with leaky ReLU and a tanh output (width scales the
  128s, depth is the number of hidden layers);
- `conv`: a DCGAN: z → dense projection to 7×7 feature maps → stride-2
  transposed convolutions to 28×28, channels halving at each (width scales
  every channel count, depth adds stride-1 convolution blocks at 14×14, half
  the image size);
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

Every generator maps z `[N, z_dim]` to images `[N, H, W, C]` in [-1, 1]; its
final activation runs in float32 so mixed precision never leaks into outputs.
With `num_classes` = K > 0 every network is class-conditional and takes a
second input, `label`, one-hot `[N, K]`: the generator's first layer takes it
with z (a dense layer of [z, label], as the sum of a layer of z and one of the
label, `<name>_label`, so that each has its own int8 weight scale in
quantised exports: the label's weights grow larger than z's),
the encoder to its trunk's features, and the discriminator is a projection
discriminator (Miyato & Koyama, 2018): logit = w·φ(x) + ⟨φ(x), V·y⟩, with
φ its `features` and V·y a linear embedding of the one-hot label.
Layers are named after the size of their output (`up_14`, `down_7`), so that
a teacher and a narrower student of the same kind match layer by layer.
Every network is made of Keras's own layers; `tf_gkd.networks.fast.accelerate`
turns a built one into its faster training version.
Discriminators return one *logit* per image: D(x) = sigmoid(logit), and the
losses take logits so that the sigmoid is computed stably inside them. Their
penultimate activations are a named layer, `features`, for feature-level losses.

`make_encoder(kind, z_dim, width, depth, image_shape=...)` builds a VAE encoder
on the discriminator's trunk, images → [mean, log_var]; the VAE's decoder is
`make_generator` itself, so a VAE decoder meets the generator contract.

`make_classifier(width, num_classes, image_shape=...)` builds the small CNN
classifier of the evaluation (the domain classifier) and of soft-label
distillation.
"""

import math

import keras
from keras import layers

from tf_gkd import contract

KINDS = ("dense", "conv", "conv4", "separable")  # Generator kinds.
# Discriminators and encoders come in the two trunks; `conv4` and `separable` generators pair with `conv` ones.
TRUNK_KINDS = ("dense", "conv")
# The generator's final tanh layer; `with_pre_activation` reads its input.
IMAGES_LAYER = "images"
# A conditional generator's first layer takes the label through a dense layer of this suffix.
LABEL_SUFFIX = "_label"
# The layer whose activations feature-level losses (discriminators) and FID (classifiers) read.
FEATURES_LAYER = "features"

# Sizes at width=1, depth=None (the defaults below).
_DENSE_UNITS = 128
_DENSE_DEPTH = 2
_CONV_CHANNELS = 64  # Channels of the stage at half the image size; each smaller stage has twice as many.
_CONV_DEPTH = 0
_CONV4_CHANNELS = 64  # Channels of every conv4 stage.
_CONV4_START = 4  # Size of the feature maps conv4 and separable project z to.


def _channels(base, width):
    return max(1, int(round(base * width)))


def _check_size(kind, width, depth, kinds=KINDS):
    if kind not in kinds:
        raise ValueError(f"Unknown network kind. Expected one of {kinds}. Received: kind={kind!r}")
    if not width > 0:
        raise ValueError(f"width must be positive. Received: width={width}")
    if depth is not None and depth < 0:
        raise ValueError(f"depth must be >= 0. Received: depth={depth}")


def stages(image_shape):
    """(s0, k): the convolutional networks' smallest feature maps are s0×s0, and k ×2 stages lead to the image.

    Image size = s0·2^k with 4 ≤ s0 ≤ 7 and k ≥ 2 (28 = 7·4, 32 = 4·8, 64 = 4·16).

    Raises:
      ValueError: the factory cannot build networks for `image_shape` (saying which sizes it can).
    """
    contract.check_image_shape(image_shape)
    size = image_shape[0]
    s0, k = size, 0
    while s0 % 2 == 0 and s0 // 2 >= _CONV4_START:
        s0, k = s0 // 2, k + 1
    if s0 > 7 or k < 2:
        raise ValueError(
            f"The network factory builds images of size s·2^k with s in 4..7 and k >= 2 (16, 20, 24, 28, 32, 40, "
            f"48, 56, 64, ...). Received: image size {size}; pass --image_size with one of those."
        )
    return s0, k


def _label_input(num_classes):
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0 (0: unconditional). Received: num_classes={num_classes}")
    return keras.Input((num_classes,), name="label") if num_classes else None


def make_generator(kind="conv", z_dim=100, width=1.0, depth=None, name="generator", image_shape=None, num_classes=0):
    """Returns a functional Keras generator z [N, z_dim] (and one-hot label [N, K]) → images [N, H, W, C] in [-1, 1].

    `image_shape` (H, W, C) defaults to `contract.DEFAULT_IMAGE_SHAPE`; see `stages` for the sizes.
    `num_classes` > 0 makes it class-conditional: the first layer takes the label with z.
    """
    _check_size(kind, width, depth)
    if z_dim <= 0:
        raise ValueError(f"z_dim must be positive. Received: z_dim={z_dim}")
    image_shape = tuple(image_shape or contract.DEFAULT_IMAGE_SHAPE)
    s0, k = stages(image_shape)
    size, channels = image_shape[0], image_shape[2]
    conv_depth = _CONV_DEPTH if depth is None else depth
    z = keras.Input((z_dim,), name="z")
    label = _label_input(num_classes)
    if kind == "dense":
        x = z
        for i in range(_DENSE_DEPTH if depth is None else depth):
            x = _dense(x, label if i == 0 else None, _channels(_DENSE_UNITS, width), f"dense_{i}")
            x = layers.LeakyReLU(0.2, name=f"lrelu_{i}")(x)
        x = _dense(x, label if x is z else None, math.prod(image_shape), "to_pixels")
        x = layers.Reshape(image_shape, name="to_image")(x)
    elif kind == "conv":
        c = _channels(_CONV_CHANNELS, width)
        x = _project(z, label, (s0, s0, c * 2 ** (k - 1)))
        for i in range(1, k):
            x = _upsample_block(x, c * 2 ** (k - 1 - i), f"up_{s0 * 2**i}")
        x = _blocks(x, c, conv_depth, f"conv_{size // 2}")
        x = layers.Conv2DTranspose(channels, 4, strides=2, padding="same", name=f"up_{size}")(x)
    else:
        c = _channels(_CONV4_CHANNELS, width)
        x = _project(z, label, (_CONV4_START, _CONV4_START, c if kind == "conv4" else max(1, c // 8)))
        # A 'valid' transposed convolution of kernel s0 − 3 takes the 4×4 maps to s0×s0 (4 + 4 − 1 = 7).
        x = _upsample_block(x, c, f"up_{s0}", strides=1, padding="valid", kernel_size=s0 - _CONV4_START + 1)
        if kind == "conv4":
            for i in range(1, k):
                x = _upsample_block(x, c, f"up_{s0 * 2**i}")
            x = _blocks(x, c, conv_depth, f"conv_{size // 2}")
            x = layers.Conv2DTranspose(channels, 4, strides=2, padding="same", name=f"up_{size}")(x)
        else:
            for i in range(1, k + 1):
                stage = s0 * 2**i
                x = layers.Resizing(stage, stage, interpolation="nearest", name=f"up_{stage}")(x)
                x = _separable_block(x, c, f"sep_{stage}")
                if i == k - 1:
                    for j in range(conv_depth):
                        x = _separable_block(x, c, f"sep_{stage}_{j}")
            x = layers.SeparableConv2D(channels, 3, padding="same", name="to_pixels")(x)
    images = layers.Activation("tanh", dtype="float32", name=IMAGES_LAYER)(x)
    return keras.Model(z if label is None else [z, label], images, name=name)


def _dense(x, label, units, name, use_bias=True):
    """Dense(units) of `x`, or with a label of [x, label]: layer `name` of x plus `name`_label of the label."""
    y = layers.Dense(units, use_bias=use_bias, name=name)(x)
    if label is None:
        return y
    of_label = layers.Dense(units, use_bias=False, name=name + LABEL_SUFFIX)(label)
    return layers.Add(name=f"{name}_with_label")([y, of_label])


def _project(z, label, shape):
    """z (and label) → dense projection → BN → leaky ReLU, reshaped to feature maps of `shape`."""
    x = _dense(z, label, math.prod(shape), "project", use_bias=False)
    x = layers.BatchNormalization(name="project_bn")(x)
    x = layers.LeakyReLU(0.2, name="project_lrelu")(x)
    return layers.Reshape(shape, name=f"to_{shape[0]}x{shape[1]}")(x)


def _upsample_block(x, channels, name, strides=2, padding="same", kernel_size=4):
    """Transposed convolution (4×4 by default) → BN → leaky ReLU."""
    x = layers.Conv2DTranspose(channels, kernel_size, strides=strides, padding=padding, use_bias=False, name=name)(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.LeakyReLU(0.2, name=f"{name}_lrelu")(x)


def _separable_block(x, channels, name):
    """Depthwise-separable 3×3 convolution → BN → leaky ReLU."""
    x = layers.SeparableConv2D(channels, 3, padding="same", use_bias=False, name=name)(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.LeakyReLU(0.2, name=f"{name}_lrelu")(x)


def _blocks(x, channels, depth, prefix):
    """`depth` stride-1 3×3 convolution blocks (named prefix_i) at half the image size; the default depth: none."""
    for i in range(depth):
        x = layers.Conv2D(channels, 3, padding="same", use_bias=False, name=f"{prefix}_{i}")(x)
        x = layers.BatchNormalization(name=f"{prefix}_{i}_bn")(x)
        x = layers.LeakyReLU(0.2, name=f"{prefix}_{i}_lrelu")(x)
    return x


def _downsample(images, kind, width, depth):
    """The image → flat feature trunk shared by discriminators and encoders.

    `dense`: the flat pixels → `depth` leaky-ReLU hidden layers of the dense
    generator's width; `conv`: stride-2 convolutions down to the generator's
    smallest maps (28×28 → 14×14 → 7×7), mirroring the DCGAN generator's
    upsampling, channels doubling at each (depth adds stride-1 blocks at half
    the image size).
    """
    if kind == "dense":
        x = layers.Flatten(name="flatten")(images)
        for i in range(_DENSE_DEPTH if depth is None else depth):
            x = layers.Dense(_channels(_DENSE_UNITS, width), name=f"dense_{i}")(x)
            x = layers.LeakyReLU(0.2, name=f"lrelu_{i}")(x)
        return x
    image_shape = tuple(images.shape[1:])
    s0, k = stages(image_shape)
    c = _channels(_CONV_CHANNELS, width)
    x = images
    for i in range(k):
        stage = image_shape[0] // 2 ** (i + 1)
        x = layers.Conv2D(c * 2**i, 4, strides=2, padding="same", name=f"down_{stage}")(x)
        x = layers.LeakyReLU(0.2, name=f"down_{stage}_lrelu")(x)
        if i == 0:
            for j in range(_CONV_DEPTH if depth is None else depth):
                x = layers.Conv2D(c, 3, padding="same", name=f"conv_{stage}_{j}")(x)
                x = layers.LeakyReLU(0.2, name=f"conv_{stage}_{j}_lrelu")(x)
    return layers.Flatten(name="flatten")(x)


def make_discriminator(
    kind="conv", width=1.0, depth=None, dropout=0.0, name="discriminator", image_shape=None, num_classes=0
):
    """Returns a Keras discriminator images [N, H, W, C] (and one-hot label [N, K]) → logits [N, 1] (D = sigmoid).

    `num_classes` > 0: a projection discriminator, logit = w·φ(x) + ⟨φ(x), V·y⟩.
    """
    _check_size(kind, width, depth, TRUNK_KINDS)
    images = keras.Input(tuple(image_shape or contract.DEFAULT_IMAGE_SHAPE), name="images")
    label = _label_input(num_classes)
    x = layers.Activation("linear", name=FEATURES_LAYER)(_downsample(images, kind, width, depth))
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    if label is None:
        return keras.Model(images, layers.Dense(1, dtype="float32", name="logits")(x), name=name)
    unconditional = layers.Dense(1, dtype="float32", name="unconditional_logits")(x)
    embedded = layers.Dense(x.shape[-1], use_bias=False, dtype="float32", name="label_embedding")(label)
    projection = layers.Dot(axes=1, dtype="float32", name="projection")([x, embedded])
    logits = layers.Add(dtype="float32", name="logits")([unconditional, projection])
    return keras.Model([images, label], logits, name=name)


def make_encoder(kind="conv", z_dim=100, width=1.0, depth=None, name="encoder", image_shape=None, num_classes=0):
    """Returns a Keras VAE encoder images [N, H, W, C] (and one-hot label [N, K]) → [mean, log_var], each [N, z_dim].

    The trunk is the discriminator's (`dense`: the flat pixels → hidden layers;
    `conv`: the stride-2 downsampling); two linear heads give the mean and the log
    variance of the diagonal Gaussian q(z|x). The heads compute in the
    networks' dtype (in float32 they were a large share of a bfloat16 VAE
    step: docs/performance.md) and return float32, which the KL term
    exponentiates. With `num_classes` > 0 (a conditional VAE's q(z|x, y)) the
    label is concatenated to the trunk's features.
    """
    _check_size(kind, width, depth, TRUNK_KINDS)
    if z_dim <= 0:
        raise ValueError(f"z_dim must be positive. Received: z_dim={z_dim}")
    images = keras.Input(tuple(image_shape or contract.DEFAULT_IMAGE_SHAPE), name="images")
    label = _label_input(num_classes)
    x = _downsample(images, kind, width, depth)
    if label is not None:
        x = layers.Concatenate(name="features_label")([x, label])
    outputs = [
        layers.Activation("linear", dtype="float32", name=f"{head}_float32")(layers.Dense(z_dim, name=head)(x))
        for head in ("mean", "log_var")
    ]
    return keras.Model(images if label is None else [images, label], outputs, name=name)


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
    inputs = generator.inputs if len(generator.inputs) > 1 else generator.inputs[0]
    return keras.Model(inputs, [layer.input, generator.outputs[0]], name=f"{generator.name}_with_logits")


def make_classifier(width=1.0, num_classes=10, image_shape=None):
    """A small CNN: images [N, H, W, C] in [-1, 1] → logits [N, num_classes].

    Stride-2 convolutions (32, 64, ... channels at width 1; two for 28×28,
    more until the maps are at most 8×8) rather than convolution + pooling
    pairs: the same accuracy per epoch at a third of the compute. Its 128-unit
    ReLU layer named `features` gives the activations of FID and KID; the
    dropout after it is inactive at inference.
    """
    if not width > 0:
        raise ValueError(f"width must be positive. Received: width={width}")
    image_shape = tuple(image_shape or contract.DEFAULT_IMAGE_SHAPE)
    contract.check_image_shape(image_shape)
    c = _channels(32, width)
    images = keras.Input(image_shape, name="images")
    x, size, i = images, image_shape[0], 0
    while i < 2 or size > 8:
        size = (size + 1) // 2
        x = layers.Conv2D(c * 2**i, 3, strides=2, padding="same", activation="relu", name=f"conv_{size}")(x)
        i += 1
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(_channels(128, width), activation="relu", name=FEATURES_LAYER)(x)
    x = layers.Dropout(0.3, name="dropout")(x)
    logits = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(images, logits, name="classifier")
