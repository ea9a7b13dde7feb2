"""The generator contract every part of tf_gkd relies on.

A generator maps latents z `float32 [N, z_dim]`, drawn from N(0, I), to images
`float32 [N, H, W, C]` in [-1, 1]: square, with 1 (grey) or 3 (RGB) channels
(`check_image_shape`); z_dim and the image shape are read off the model.
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
