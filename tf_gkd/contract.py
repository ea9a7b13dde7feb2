"""The generator contract every part of tf_gkd relies on.

A generator (a Keras model, read here through its `inputs` alone) maps
latents z `float32 [N, z_dim]`, drawn from N(0, I), to images
`float32 [N, H, W, C]` in [-1, 1]: square, with 1 (grey) or 3 (RGB) channels
(`check_image_shape`); z_dim and the image shape are read off the model.
A class-conditional generator takes a second input, the class it is asked
for as a one-hot vector `float32 [N, num_classes]` (a dense layer takes it with
z inside: no embedding lookup, which quantised mobile runtimes handle late); the number
of classes is read off the model too. `class_labels(num, num_classes)` is the
one way labels are chosen outside a train step: every prefix of it is class-balanced.
`latents(num, z_dim, seed)` is the one way z is drawn outside a train step:
the fixed sample grid of a run, the evaluation samples, the teacher pairs of
offline distillation and the latents an exported file is verified on, so the
same seed gives every generator, Keras or TFLite, exactly the same z. This
module imports NumPy only, so that code running where an app runs
(`tf_gkd.export.runtime`) can use it.
"""

import numpy as np

DEFAULT_IMAGE_SHAPE = (28, 28, 1)  # MNIST-style datasets'.
CHANNELS = (1, 3)


def check_image_shape(shape):
    """Raises ValueError unless `shape` is (H, W, C) of a square image with 1 or 3 channels."""
    shape = tuple(shape)
    if (
        len(shape) != 3
        or not all(isinstance(d, (int, np.integer)) and d > 0 for d in shape)
        or shape[0] != shape[1]
        or shape[2] not in CHANNELS
    ):
        raise ValueError(
            f"Images must be square, with 1 (grey) or 3 (RGB) channels: (S, S, 1) or (S, S, 3). Received: {shape}"
        )
    return shape


def describe(shape):
    """'28x28x1' for (28, 28, 1)."""
    return "x".join(str(d) for d in shape)


def latents(num, z_dim, seed):
    """Standard-normal latents [num, z_dim] (float32) of `seed`.

    The first n rows do not depend on `num`, so a short series (a run's sample
    grid) is the start of any longer one with the same seed.
    """
    return np.random.default_rng(seed).standard_normal((num, z_dim)).astype(np.float32)


def class_labels(num, num_classes):
    """Labels int64 [num] cycling through the classes (0, 1, ..., K-1, 0, 1, ...): every prefix is balanced."""
    return np.arange(num, dtype=np.int64) % num_classes


def one_hot(labels, num_classes):
    """Labels int [N] → float32 [N, num_classes] one-hot rows.

    Raises:
      ValueError: a label outside [0, num_classes), naming it.
    """
    labels = np.asarray(labels)
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if bad.size:
        raise ValueError(
            f"Labels must be in [0, {num_classes}): this generator has {num_classes} classes. Received: {bad[0]}"
        )
    return np.eye(num_classes, dtype=np.float32)[labels.astype(np.int64)]


def z_dim(generator):
    """Latent size of a generator, read off its input shape."""
    return int(generator.inputs[0].shape[-1])


def num_classes(generator):
    """K of a class-conditional generator (its second input, one-hot labels [N, K]); 0 for an unconditional one."""
    return int(generator.inputs[1].shape[-1]) if len(generator.inputs) > 1 else 0


def describe_conditioning(generator):
    """'class-conditional (10 classes)' or 'unconditional', for messages."""
    k = num_classes(generator)
    return f"class-conditional ({k} classes)" if k else "unconditional"


def check_conditioned_alike(networks):
    """Raises ValueError unless the networks of {name: Keras model} take the same classes (or none), naming them."""
    classes = {name: num_classes(network) for name, network in networks.items()}
    if len(set(classes.values())) > 1:
        found = ", ".join(f"the {name} is {describe_conditioning(networks[name])}" for name in networks)
        raise ValueError(f"The networks of one model must be conditioned alike: {found}.")


def conditioned(x, labels):
    """A network's input for `x` and one-hot `labels`: x alone when `labels` is None (unconditional)."""
    return x if labels is None else [x, labels]


def generator_inputs(generator, z, labels=None):
    """What `generator` is called on for latents `z` and int `labels`: z, or [z, one-hot labels].

    Raises:
      ValueError: labels for an unconditional generator, none for a
        conditional one, or a label out of range.
    """
    k = num_classes(generator)
    if not k:
        if labels is not None:
            raise ValueError(f"{generator.name} is unconditional: it takes no labels.")
        return z
    if labels is None:
        raise ValueError(f"{generator.name} is class-conditional ({k} classes): give it labels.")
    return [z, one_hot(labels, k)]
