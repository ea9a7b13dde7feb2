"""Rewrites of a Keras generator that keep its function and suit mobile runtimes (gkd-export).

`for_mobile` applies all three:

1. `fold_batch_norm`: every batch normalization folded into the kernel layer
   before it, as the TFLite converter folds it (and where the rewrite below
   would keep it from doing so);
2. `mobile_layers`: every transposed convolution that it can, written as a
   convolution, so that LiteRT computes it with CONV_2D instead of
   TRANSPOSE_CONV, whose kernels (int8 and dynamic-range above all) are
   several times slower for the same work, and whose dynamic-range kernel
   needs a newer runtime (docs/results.md#transposed-convolutions-as-convolutions):
   - a 4×4 stride-2 'same' one as a 3×3 convolution with four times the
     channels followed by a depth-to-space (`SubpixelConv2D`, the sub-pixel
     convolution of Shi et al., 2016). It costs 2.25 times the
     multiply-accumulates (each output phase uses 4 of the 9 taps) and as
     many more weights, zeros among them;
   - a stride-1 'valid' one as a convolution of the zero-padded input with
     the flipped kernel (`FullConv2D`);
3. `mobile_layers` also writes every Reshape as a `BatchReshape`: a reshape to
   a constant shape with batch −1, one RESHAPE operator, where Keras's
   Reshape reads the batch size from its input and the converter adds SHAPE,
   STRIDED_SLICE and PACK before it: three operators whose fixed cost per
   invocation is no small part of a small student's time.

The helpers that walk a functional model's graph (`node`, `producer`,
`consumers`, `kernel_kind`) are shared with `qat`.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import layers


class GraphError(ValueError):
    """The generator's graph is not one these rewrites handle (a layer called twice, ...)."""


@keras.saving.register_keras_serializable(package="tf_gkd")
class SubpixelConv2D(layers.Conv2D):
    """A convolution (without activation) whose `scale`²·C output channels are rearranged into a `scale`× larger
    map of C channels.

    Output channel (i·scale + j)·C + c becomes channel c at offset (i, j) of
    each output pixel's `scale`×`scale` block (`tf.nn.depth_to_space`).
    """

    def __init__(self, scale=2, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale

    def rearranged(self, outputs):
        """The convolution's `outputs` as the larger map (`tf.nn.depth_to_space`)."""
        return tf.nn.depth_to_space(outputs, self.scale)

    def call(self, inputs):
        return self.rearranged(super().call(inputs))

    def compute_output_shape(self, input_shape):
        n, h, w, c = super().compute_output_shape(input_shape)
        return n, *(None if d is None else d * self.scale for d in (h, w)), c // self.scale**2

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="tf_gkd")
class FullConv2D(layers.Conv2D):
    """A 'valid' convolution of its input zero-padded by kernel size − 1 on every side: a "full" convolution,
    whose output is kernel size − 1 larger than its input."""

    def padded(self, inputs):
        """`inputs` zero-padded by kernel size − 1 on every side, what the convolution reads."""
        (ph, pw) = (k - 1 for k in self.kernel_size)
        return tf.pad(inputs, [[0, 0], [ph, ph], [pw, pw], [0, 0]])

    def call(self, inputs):
        return super().call(self.padded(inputs))

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        (ph, pw) = (k - 1 for k in self.kernel_size)
        return n, None if h is None else h + ph, None if w is None else w + pw, self.filters


@keras.saving.register_keras_serializable(package="tf_gkd")
class BatchReshape(layers.Reshape):
    """A Reshape to a constant shape whose batch dimension is −1 (Keras's reads the batch size from its input)."""

    def call(self, inputs):
        return tf.reshape(inputs, (-1, *self.target_shape))


# Kernel-bearing layers, and the axis of their kernel that indexes output channels.
OUTPUT_AXIS = {
    layers.Dense: -1,
    layers.Conv2D: -1,
    layers.Conv2DTranspose: -2,
    layers.DepthwiseConv2D: None,  # [kh, kw, in, multiplier]: output channel = in · multiplier.
    layers.SeparableConv2D: -1,  # Of the pointwise kernel.
    SubpixelConv2D: -1,  # Output unit u is channel u % C.
    FullConv2D: -1,
}


class FoldedBatchNorm(keras.layers.Layer):
    """Where a batch normalization was before it was folded into the layer before it: the identity."""

    def call(self, inputs, training=None, mask=None):
        return inputs


def kernel_kind(layer):
    """The key of `OUTPUT_AXIS` that `layer` is an instance of (exactly, not a subclass), or None."""
    for kind in OUTPUT_AXIS:
        if type(layer) is kind:
            return kind
    return None


def node(layer):
    """The one call of `layer` in its functional model."""
    if len(layer._inbound_nodes) != 1:
        raise GraphError(
            f"Layer {layer.name!r} is called {len(layer._inbound_nodes)} times; the rewrites need one call."
        )
    return layer._inbound_nodes[0]


def producer(tensor):
    """The layer that computes `tensor`."""
    return tensor._keras_history.operation


def consumers(model):
    """{id(layer): [the layers that take its output]} of a functional model."""
    users = {}
    for layer in model.layers:
        if not isinstance(layer, layers.InputLayer):
            for tensor in node(layer).input_tensors:
                users.setdefault(id(producer(tensor)), []).append(layer)
    return users


def linear(layer):
    """Whether `layer` is a kernel layer without activation."""
    return kernel_kind(layer) is not None and layer.get_config().get("activation", "linear") == "linear"


def scaled(layer, kernel, s):
    """`kernel` of `layer` with output channel c scaled by s[c] (a flat or sub-pixel unit u by s[u % len(s)])."""
    kind = kernel_kind(layer)
    if kind is layers.DepthwiseConv2D:
        return kernel * s.reshape(kernel.shape[2], kernel.shape[3])
    axis = OUTPUT_AXIS[kind]
    shape = [1] * kernel.ndim
    shape[axis] = -1
    return kernel * np.tile(s, kernel.shape[axis] // s.size).reshape(shape)


def inputs_of(model):
    """A model's input tensors as the factory's generators take them: z alone, not [z]; or [z, label]."""
    return model.inputs[0] if len(model.inputs) == 1 else model.inputs


def as_called(clone):
    """A cloned generator taking its inputs as the original does (a clone takes z as [z])."""
    return keras.Model(inputs_of(clone), clone.outputs[0], name=clone.name)


def _fold_plan(model):
    """{batch-norm layer name: [names of the kernel layers it folds into]} of every foldable batch norm.

    A batch normalization folds into the layer that computes its input when that
    is a kernel layer without activation used by nothing else, or into every
    input of an `Add` of such layers (a conditional generator's first layer).
    """
    users = consumers(model)

    def single_use_linear(layer):
        return linear(layer) and len(users.get(id(layer), [])) == 1

    plan = {}
    for layer in model.layers:
        if not isinstance(layer, layers.BatchNormalization):
            continue
        if layer.axis not in (-1, [-1], len(layer.input.shape) - 1, [len(layer.input.shape) - 1]):
            continue
        source = producer(node(layer).input_tensors[0])
        if single_use_linear(source):
            plan[layer.name] = [source.name]
        elif isinstance(source, layers.Add) and len(users.get(id(source), [])) == 1:
            inputs = [producer(t) for t in node(source).input_tensors]
            if all(single_use_linear(p) for p in inputs):
                plan[layer.name] = [p.name for p in inputs]
    return plan


def _bn_scale_shift(bn):
    """(s, t) with bn(x) = s·x + t in inference mode, per channel."""
    gamma = np.asarray(bn.gamma) if bn.scale else 1.0
    beta = np.asarray(bn.beta) if bn.center else 0.0
    s = gamma / np.sqrt(np.asarray(bn.moving_variance) + bn.epsilon)
    return s, beta - np.asarray(bn.moving_mean) * s


def _folded_weights(layer, s, t):
    """The weights of `layer` (a kernel layer without BN) with s·output + t folded in, with a bias."""
    weights = {w.path.split("/")[-1]: np.asarray(w) for w in layer.weights}
    if kernel_kind(layer) is layers.SeparableConv2D:
        kernels = [weights["depthwise_kernel"], scaled(layer, weights["pointwise_kernel"], s)]
    else:
        kernels = [scaled(layer, weights["kernel"], s)]
    bias = weights.get("bias", 0.0) * s + t
    return [*kernels, bias.astype(np.float32)]


def fold_batch_norm(model):
    """The same function as `model` (float32) with every foldable batch normalization folded into its kernel layer.

    A folded batch normalization is left as a `FoldedBatchNorm` of its name; the
    layers it folded into get a bias (in an `Add`, the first of them). Layers
    not involved keep their weights.
    """
    plan = _fold_plan(model)
    folded_into = {name: bn for bn, names in plan.items() for name in names}
    bias_holder = {names[0] for names in plan.values()}

    def clone(layer):
        config = layer.get_config()
        if layer.name in plan:
            return FoldedBatchNorm(name=layer.name)
        if layer.name in folded_into:
            config["use_bias"] = layer.name in bias_holder
        return layer.__class__.from_config(config)

    folded = as_called(keras.models.clone_model(model, clone_function=clone))
    for layer in model.layers:
        if layer.name in plan or not layer.weights:
            continue
        target = folded.get_layer(layer.name)
        if layer.name in folded_into:
            s, t = _bn_scale_shift(model.get_layer(folded_into[layer.name]))
            weights = _folded_weights(layer, s, t if layer.name in bias_holder else np.zeros_like(t))
            target.set_weights(weights if layer.name in bias_holder else weights[:-1])
        else:
            target.set_weights(layer.get_weights())
    return folded


def _rewritable(layer):
    """ "subpixel" or "full" for a transposed convolution that `mobile_layers` rewrites, "reshape" for a Reshape
    that it does, else None."""
    if type(layer) is layers.Reshape:
        return "reshape" if -1 not in layer.target_shape else None
    if type(layer) is not layers.Conv2DTranspose:
        return None
    config = layer.get_config()
    if not (
        tuple(config["dilation_rate"]) == (1, 1)
        and config["output_padding"] is None
        and config["data_format"] == "channels_last"
        and config["activation"] == "linear"
    ):
        return None
    if tuple(config["strides"]) == (2, 2) and tuple(config["kernel_size"]) == (4, 4) and config["padding"] == "same":
        return "subpixel"
    if tuple(config["strides"]) == (1, 1) and config["padding"] == "valid":
        return "full"
    return None


def subpixel_kernel(kernel):
    """The 3×3 kernel [3, 3, in, 4·out] of the sub-pixel convolution equal to a 4×4 stride-2 'same' transposed one.

    `kernel`: the transposed convolution's, [4, 4, out, in]. Output pixel
    2m + a (per axis) of the transposed convolution sums input pixel m + d
    times tap 1 + a − 2d, for the d in {−1, 0, 1} whose tap is in 0..3: a 3×3
    correlation around m for each of the four phases (a_y, a_x), whose outputs
    `tf.nn.depth_to_space` interleaves (channel (2·a_y + a_x)·out + c).
    """
    _, _, out, inp = kernel.shape
    subpixel = np.zeros((3, 3, inp, 2, 2, out), kernel.dtype)
    for ay in range(2):
        for ax in range(2):
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ty, tx = 1 + ay - 2 * dy, 1 + ax - 2 * dx
                    if 0 <= ty < 4 and 0 <= tx < 4:
                        subpixel[dy + 1, dx + 1, :, ay, ax, :] = kernel[ty, tx].T
    return subpixel.reshape(3, 3, inp, 4 * out)


def mobile_layers(model):
    """The same function as `model` with its transposed convolutions written as convolutions, where it can.

    4×4 stride-2 'same' ones become `SubpixelConv2D`s (`subpixel_kernel`);
    stride-1 'valid' ones `FullConv2D`s: a transposed convolution of stride 1
    adds tap t of input pixel i to output pixel i + t, which is the correlation
    of the input zero-padded by k − 1 with the kernel flipped (and its input
    and output axes swapped). Reshapes to a shape without −1 become
    `BatchReshape`s. Other layers are kept as they are.
    """

    def clone(layer):
        config = layer.get_config()
        kind = _rewritable(layer)
        if kind is None:
            return layer.__class__.from_config(config)
        if kind == "reshape":
            return BatchReshape.from_config(config)
        common = {"use_bias": config["use_bias"], "name": config["name"], "dtype": config["dtype"]}
        if kind == "subpixel":
            return SubpixelConv2D(scale=2, filters=4 * config["filters"], kernel_size=3, padding="same", **common)
        return FullConv2D(filters=config["filters"], kernel_size=config["kernel_size"], padding="valid", **common)

    rewritten = as_called(keras.models.clone_model(model, clone_function=clone))
    for layer in model.layers:
        weights = layer.get_weights()
        kind = _rewritable(layer)
        if kind == "subpixel":
            weights = [subpixel_kernel(weights[0]), *(np.tile(b, 4) for b in weights[1:])]
        elif kind == "full":
            weights = [weights[0][::-1, ::-1].transpose(0, 1, 3, 2), *weights[1:]]
        if weights:
            rewritten.get_layer(layer.name).set_weights(weights)
    return rewritten


def for_mobile(model):
    """`model` with its batch norms folded, its transposed convolutions written as convolutions and its reshapes
    to a constant shape."""
    return mobile_layers(fold_batch_norm(model))


def count(model):
    """{"folded_batch_norms", "subpixel_convolutions", "full_convolutions", "batch_reshapes"}: what `for_mobile`
    changed (in the `model` it returned)."""
    kinds = {
        "folded_batch_norms": FoldedBatchNorm,
        "subpixel_convolutions": SubpixelConv2D,
        "full_convolutions": FullConv2D,
        "batch_reshapes": BatchReshape,
    }
    return {key: sum(isinstance(layer, kind) for layer in model.layers) for key, kind in kinds.items()}
