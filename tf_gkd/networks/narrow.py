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
whole feature maps. Layers without weights pass the selection on. A
conditional generator's label projection (`<layer>_label`, beside the first
layer) keeps the outputs its layer keeps, and all of its inputs (the classes).
"""

import keras
import numpy as np

from tf_gkd.networks.factory import LABEL_SUFFIX

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
        elif isinstance(layer, keras.layers.Dense) and _is_label_projection(layer, sources):
            # The first layer's twin: its outputs are those the first layer keeps (chosen by that layer's
            # weights); the selection carried from layer to layer is the first layer's business.
            base = layer.name[: -len(LABEL_SUFFIX)]
            base_index = [other.name for other in student.layers].index(base)
            maps = _reshaped_to(student.layers, base_index)
            selected, _ = _dense_selection(sources[base].get_weights()[0], maps, shapes[0][1])
            narrowed = [weights[0][:, selected]]
        elif isinstance(layer, keras.layers.Dense):
            kernel = weights[0] if kept is None else weights[0][kept]
            kept, kept_maps = _dense_selection(kernel, _reshaped_to(student.layers, index), shapes[0][1])
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


def _dense_selection(kernel, maps, units):
    """(kept units, kept feature maps or None) of a Dense layer's `kernel` narrowed to `units` outputs.

    `maps`: the (h, w, c) feature maps a Reshape makes of its units, or None.
    """
    if maps is None:
        return _largest(np.abs(kernel).sum(0), units), None
    # Whole feature maps: the units (position, channel) of the kept channels.
    positions = maps[0] * maps[1]
    norms = np.abs(kernel).reshape(kernel.shape[0], positions, -1).sum((0, 1))
    kept_maps = _largest(norms, maps[2])
    return (np.arange(positions)[:, None] * len(norms) + kept_maps).reshape(-1), kept_maps


def _is_label_projection(layer, sources):
    return layer.name.endswith(LABEL_SUFFIX) and layer.name[: -len(LABEL_SUFFIX)] in sources


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
        if isinstance(layer, _WEIGHTED) and not layer.name.endswith(LABEL_SUFFIX):
            return None
    return None
