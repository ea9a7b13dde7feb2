"""Narrower copies of a network: a student that starts from its teacher's weights.

`narrow_from(teacher, student)` fills `student` — a network of the teacher's
architecture with fewer units or channels per layer (the same factory kind and
depth at a smaller width) — with a selection of the teacher's weights: at each
layer the output channels whose weights have the largest L1 norm (as in Li et
al., "Pruning Filters for Efficient ConvNets", 2017), the next layer's inputs
cut to match. The student then starts from a coarse version of the teacher's
function instead of a random one, and distillation goes on from there (as CAT
and StyleKD start their students).

Layers are matched by name. Dense, Conv2D and Conv2DTranspose layers (and
tf_gkd's fast versions of them) are narrowed; a BatchNormalization layer takes
the channels of the weighted layer before it; a Dense layer whose output a
Reshape turns into feature maps (a generator's projection of z) is narrowed by
whole feature maps. Layers without weights pass the selection on.
"""

import keras
import numpy as np

_WEIGHTED = (keras.layers.Dense, keras.layers.Conv2D, keras.layers.Conv2DTranspose)


def narrow_from(teacher, student):
    """Sets `student`'s weights to the teacher's of the channels of largest L1 norm, layer by layer.

    Returns `student`.

    Raises:
      ValueError: naming the first layer where `student` is not a narrower
        copy of `teacher`'s architecture.
    """
    sources = {layer.name: layer for layer in teacher.layers}
    kept = None  # The teacher's outputs that the last weighted layer kept (None: all of them).
    kept_maps = None  # The same as feature maps, from the next Reshape on.
    for index, layer in enumerate(student.layers):
        source = sources.get(layer.name)
        if source is None:
            raise ValueError(
                f"The student's layer {layer.name!r} has no counterpart in the teacher {teacher.name!r}: a "
                "teacher-initialised student must be of the teacher's kind and depth, at a smaller width."
            )
        if isinstance(layer, keras.layers.Reshape) and kept_maps is not None:
            kept, kept_maps = kept_maps, None
            continue
        weights = source.get_weights()
        if not weights:
            continue
        shapes = [tuple(w.shape) for w in layer.get_weights()]
        if isinstance(layer, keras.layers.BatchNormalization):
            narrowed = [w if kept is None else w[kept] for w in weights]
        elif isinstance(layer, keras.layers.Dense):
            kernel = weights[0] if kept is None else weights[0][kept]
            maps = _reshaped_to(student.layers, index)
            if maps is None:
                kept = _largest(np.abs(kernel).sum(0), shapes[0][1])
            else:  # Whole feature maps: the units (position, channel) of the kept channels.
                positions = maps[0] * maps[1]
                norms = np.abs(kernel).reshape(kernel.shape[0], positions, -1).sum((0, 1))
                kept_maps = _largest(norms, maps[2])
                kept = (np.arange(positions)[:, None] * len(norms) + kept_maps).reshape(-1)
            narrowed = [kernel[:, kept], *(w[kept] for w in weights[1:])]
        elif isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose)):
            # Conv2D kernels are [h, w, in, out], Conv2DTranspose kernels [h, w, out, in].
            in_axis, out_axis = (3, 2) if isinstance(layer, keras.layers.Conv2DTranspose) else (2, 3)
            kernel = weights[0] if kept is None else np.take(weights[0], kept, axis=in_axis)
            norms = np.abs(kernel).sum(axis=tuple(a for a in range(4) if a != out_axis))
            kept = _largest(norms, shapes[0][out_axis])
            narrowed = [np.take(kernel, kept, axis=out_axis), *(w[kept] for w in weights[1:])]
        else:
            raise ValueError(f"The weights of layer {layer.name!r} ({type(layer).__name__}) cannot be narrowed.")
        if [w.shape for w in narrowed] != shapes:
            raise ValueError(
                f"The student's layer {layer.name!r} has weights of shapes {shapes}, the teacher's narrowed to it "
                f"{[w.shape for w in narrowed]}: the student must be of the teacher's kind and depth, at a "
                "smaller width."
            )
        layer.set_weights(narrowed)
    return student


def _largest(scores, k):
    """Indices of the `k` largest `scores`, in increasing order (channels keep their order)."""
    if k > len(scores):
        raise ValueError(f"A narrower copy cannot have more channels ({k}) than the original ({len(scores)}).")
    return np.sort(np.argsort(-scores, kind="stable")[:k])


def _reshaped_to(layers, index):
    """The target shape of the Reshape between layer `index` and the next weighted layer, if any."""
    for layer in layers[index + 1 :]:
        if isinstance(layer, keras.layers.Reshape):
            return layer.target_shape
        if isinstance(layer, _WEIGHTED):
            return None
    return None
