"""The generator contract every part of tf_gkd relies on.

A generator maps latents z `float32 [N, z_dim]`, drawn from N(0, I), to images
`float32 [N, *IMAGE_SHAPE]` in [-1, 1]. `latents(num, z_dim, seed)` is the one
way z is drawn outside a train step: the fixed sample grid of a run, the
evaluation samples, the teacher pairs of offline distillation and the latents
an exported file is verified on, so the same seed gives every generator, Keras
or TFLite, exactly the same z. This module imports NumPy only, so that code
running where an app runs (`tf_gkd.export.runtime`) can use it.
"""

import numpy as np

IMAGE_SHAPE = (28, 28, 1)


def latents(num, z_dim, seed):
    """Standard-normal latents [num, z_dim] (float32) of `seed`.

    The first n rows do not depend on `num`, so a short series (a run's sample
    grid) is the start of any longer one with the same seed.
    """
    return np.random.default_rng(seed).standard_normal((num, z_dim)).astype(np.float32)
