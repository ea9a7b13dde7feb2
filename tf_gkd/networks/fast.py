"""Faster versions of Keras layers for training, behind one switch: `accelerate` and `plain`.

The network factory builds Keras's own layers. `accelerate(model)` returns a
copy with the same weights whose layers are tf_gkd's faster versions of them
(same configuration, same results up to float rounding):

- `FusedBatchNormalization`: batch normalisation on TensorFlow's fused kernel;
- `MatmulGradConv2D`, `MatmulGradConv2DTranspose`: under mixed_bfloat16,
  stride-2 convolutions compute their kernel gradients as matrix products.
  Only on machines without a GPU (cuDNN's weight gradients are fast), decided
  once when `accelerate` is called.

`plain(model)` swaps Keras's layers back; saved models always hold those, so
they load without tf_gkd. The training runs apply both (`--fast_layers`). Why
each layer is faster, with the measurements: docs/performance.md.
"""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="tf_gkd")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` computed by TensorFlow's fused kernel (`FusedBatchNormV3`).

    Same weights, configuration and results as the Keras layer (up to float
    rounding): normalisation by the biased batch variance in training, moving
    averages of the batch mean and biased variance, the moving statistics in
    inference. Keras 3 builds batch normalisation from a dozen element-wise
    ops, and under mixed precision casts the activations to float32 and back
    around them; the fused kernel does the statistics and the normalisation in
    one op forward and one backward, reading bfloat16/float16 activations
    directly (statistics in float32). It is what `tf.keras` 2 used by default,
    and cuDNN's batch normalisation on GPUs (speed: benchmarks/train_step.py).

    Inputs of any rank ≥ 2 normalised over the last axis take the fused path
    (other ranks are reshaped to [M, 1, 1, C]); masks, renormalisation,
    synchronized statistics, other axes or float64 fall back to the Keras
    computation. Saved models hold Keras's own layer (`plain`).
    """

    def _fused(self, inputs, mask):
        return (
            mask is None
            and not self.renorm
            and not self.synchronized
            and self.axis in (-1, len(inputs.shape) - 1)
            and inputs.dtype in (tf.float16, tf.bfloat16, tf.float32)
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fused(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        channels = inputs.shape[-1]
        x = inputs if len(inputs.shape) == 4 else tf.reshape(inputs, [-1, 1, 1, channels])
        gamma = tf.cast(self.gamma, tf.float32) if self.scale else tf.ones([channels])
        beta = tf.cast(self.beta, tf.float32) if self.center else tf.zeros([channels])
        if training and self.trainable:
            y, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
                x=x,
                scale=gamma,
                offset=beta,
                mean=tf.zeros([0]),
                variance=tf.zeros([0]),
                epsilon=self.epsilon,
                is_training=True,
                data_format="NHWC",
            )
            # The kernel returns the unbiased (n − 1) variance; Keras averages the biased one.
            n = tf.cast(tf.size(x) // channels, tf.float32)
            variance = variance * (n - 1.0) / n
            momentum = self.momentum
            self.moving_mean.assign_sub((1.0 - momentum) * (self.moving_mean - mean))
            self.moving_variance.assign_sub((1.0 - momentum) * (self.moving_variance - variance))
        else:
            y, _, _, _, _, _ = tf.raw_ops.FusedBatchNormV3(
                x=x,
                scale=gamma,
                offset=beta,
                mean=tf.cast(self.moving_mean, tf.float32),
                variance=tf.cast(self.moving_variance, tf.float32),
                epsilon=self.epsilon,
                is_training=False,
                data_format="NHWC",
            )
        if x is not inputs:
            y = tf.reshape(y, tf.shape(inputs))
        return tf.cast(y, self.compute_dtype)


def conv_weight_gradient(x, dy, kernel_size, strides, padding):
    """dL/dW [kh, kw, C, O] of y = conv2d(x, W) for x [N, H, W, C] and dL/dy [N, OH, OW, O], as matrix products.

    With kernel sizes divisible by the strides, each kernel tap (a·s + p, b·s + q)
    reads x at (s·(i + a) + p, s·(j + b) + q): the (p, q) phase of a
    space-to-depth rearrangement of the padded x, shifted by (a, b). So the
    gradient is (k/s)² products [C·s², N·OH·OW] × [N·OH·OW, O] of shifted slices
    of that rearrangement with dy: the im2col formulation of the weight
    gradient, its columns cut as contiguous slices of one rearranged copy of x,
    in matrix products large enough for oneDNN to run near its peak.
    """
    (kh, kw), (sh, sw) = kernel_size, strides
    padding = padding.lower()
    if kh % sh or kw % sw or padding not in ("same", "valid"):
        raise ValueError(
            "conv_weight_gradient needs kernel sizes divisible by the strides and 'same' or 'valid' padding. "
            f"Received: kernel_size={kernel_size}, strides={strides}, padding={padding!r}"
        )
    _, height, width, channels = x.shape
    _, out_h, out_w, filters = dy.shape
    rows, cols = (out_h - 1) * sh + kh, (out_w - 1) * sw + kw  # The input extent the kernel reads.
    if padding == "same":
        pad_h, pad_w = max(rows - height, 0), max(cols - width, 0)
        x = tf.pad(x, [[0, 0], [pad_h // 2, pad_h - pad_h // 2], [pad_w // 2, pad_w - pad_w // 2], [0, 0]])
    x = tf.reshape(x[:, :rows, :cols], [-1, rows // sh, sh, cols // sw, sw, channels])
    x = tf.reshape(tf.transpose(x, [0, 1, 3, 2, 4, 5]), [-1, rows // sh, cols // sw, sh * sw * channels])
    dy = tf.reshape(dy, [-1, filters])
    taps = [
        tf.matmul(tf.reshape(x[:, a : a + out_h, b : b + out_w], [-1, sh * sw * channels]), dy, transpose_a=True)
        for a in range(kh // sh)
        for b in range(kw // sw)
    ]
    grad = tf.reshape(tf.stack(taps), [kh // sh, kw // sw, sh, sw, channels, filters])
    return tf.reshape(tf.transpose(grad, [0, 2, 1, 3, 4, 5]), [kh, kw, channels, filters])


# The smallest matrix sides for which the matrix-product weight gradient beats oneDNN's
# (measured by benchmarks/conv_grad.py: bfloat16, 4×4 stride-2 kernels from 1 to 256 channels).
MATMUL_GRADIENT_MIN_SIDE = 64


def _matmul_gradient_applies(layer, inputs, channels, filters):
    """Whether `layer`, a 2-D (transposed) convolution, takes the matrix-product weight gradient on `inputs`.

    `channels` and `filters` are the input and output channels of the
    convolution whose weight gradient it is (for a transposed convolution,
    its output and input channels).
    """
    strides = tuple(layer.strides)
    return (
        layer.trainable  # A frozen network (a teacher) computes no weight gradient: Keras's path keeps its fusions.
        and inputs.dtype == tf.bfloat16  # In float32 oneDNN's own weight gradient is the faster one.
        and layer.data_format == "channels_last"
        and getattr(layer, "groups", 1) == 1
        and getattr(layer, "output_padding", None) is None
        and tuple(layer.dilation_rate) == (1, 1)
        and strides != (1, 1)
        and all(k % s == 0 for k, s in zip(layer.kernel_size, strides))
        and min(channels * strides[0] * strides[1], filters) >= MATMUL_GRADIENT_MIN_SIDE
        and len(inputs.shape) == 4
        and None not in inputs.shape[1:]
    )


@keras.saving.register_keras_serializable(package="tf_gkd")
class MatmulGradConv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D` whose kernel gradient is computed by matrix products.

    Same weights, configuration and forward pass as the Keras layer. On CPUs,
    oneDNN's bfloat16 convolution weight gradient runs at under half the speed
    of its forward pass, no faster than float32 (benchmarks/flops.py; figures
    in docs/performance.md). So under mixed_bfloat16 the layer's backward
    pass computes the kernel gradient as matrix products
    (`conv_weight_gradient`) when the stride is above 1 and divides the kernel
    size and both matrix sides are at least `MATMUL_GRADIENT_MIN_SIDE`; the
    input gradient stays TensorFlow's. Every other case, frozen layers among
    them (no kernel gradient; they keep TensorFlow's forward fusions), takes
    Keras's path. `accelerate` uses it on machines without a GPU only.
    """

    def call(self, inputs):
        if not _matmul_gradient_applies(self, inputs, inputs.shape[-1], self.filters):
            return super().call(inputs)
        strides, padding = [1, *self.strides, 1], self.padding.upper()
        return _call_with_matmul_gradient(
            self,
            inputs,
            forward=lambda x, w: tf.nn.conv2d(x, w, strides, padding),
            input_gradient=lambda x, w, dy: tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.shape(x), filter=w, out_backprop=dy, strides=strides, padding=padding
            ),
            kernel_gradient=lambda x, dy: conv_weight_gradient(x, dy, self.kernel_size, self.strides, self.padding),
        )


@keras.saving.register_keras_serializable(package="tf_gkd")
class MatmulGradConv2DTranspose(keras.layers.Conv2DTranspose):
    """`keras.layers.Conv2DTranspose` whose kernel gradient is computed by matrix products.

    A transposed convolution is the input gradient of a convolution, and its
    kernel gradient that convolution's kernel gradient with the roles of input
    and output swapped: the same matrix-product form as `MatmulGradConv2D`,
    under the same conditions.
    """

    def call(self, inputs):
        if not _matmul_gradient_applies(self, inputs, self.filters, inputs.shape[-1]):
            return super().call(inputs)
        strides, padding = [1, *self.strides, 1], self.padding.upper()
        _, out_h, out_w, _ = self.compute_output_shape(inputs.shape)
        output_shape = tf.stack([tf.shape(inputs)[0], out_h, out_w, self.filters])
        return _call_with_matmul_gradient(
            self,
            inputs,
            forward=lambda x, w: tf.nn.conv2d_transpose(x, w, output_shape, strides, padding),
            input_gradient=lambda x, w, dy: tf.nn.conv2d(dy, w, strides, padding),
            kernel_gradient=lambda x, dy: conv_weight_gradient(dy, x, self.kernel_size, self.strides, self.padding),
        )


def _call_with_matmul_gradient(layer, inputs, forward, input_gradient, kernel_gradient):
    """activation(forward(x, kernel) + bias) of a (transposed) convolution `layer`, with the given gradients.

    The bias gradient is summed in float32: TensorFlow's unfused BiasAddGrad
    accumulates in bfloat16 (a few per cent off; tests/networks_fast_test.py),
    where the kernel gradient op it is otherwise fused into does not.
    """
    tensors = [tf.convert_to_tensor(inputs), tf.convert_to_tensor(layer.kernel)]
    if layer.use_bias:
        tensors.append(tf.convert_to_tensor(layer.bias))

    @tf.custom_gradient
    def op(x, w, *bias):
        y = forward(x, w)
        if bias:
            y = tf.nn.bias_add(y, bias[0])

        def grad(dy):
            grads = [input_gradient(x, w, dy), kernel_gradient(x, dy)]
            if bias:
                grads.append(tf.cast(tf.reduce_sum(tf.cast(dy, tf.float32), [0, 1, 2]), bias[0].dtype))
            return grads

        return y, grad

    outputs = op(*tensors)
    return layer.activation(outputs) if layer.activation is not None else outputs


# Keras's layers and tf_gkd's faster versions of them (same weights and configuration).
FAST_LAYERS = {
    keras.layers.BatchNormalization: FusedBatchNormalization,
    keras.layers.Conv2D: MatmulGradConv2D,
    keras.layers.Conv2DTranspose: MatmulGradConv2DTranspose,
}
# What `accelerate` swaps on a machine with a GPU: cuDNN's convolution gradients are fast.
_GPU_FAST_LAYERS = {keras.layers.BatchNormalization: FusedBatchNormalization}


def accelerate(model):
    """A copy of `model` (same weights) whose layers are tf_gkd's faster versions, for training.

    Models with nothing to swap, and models Keras cannot clone layer by layer
    (subclassed ones), are returned as they are.
    """
    return _swap(model, _GPU_FAST_LAYERS if tf.config.list_logical_devices("GPU") else FAST_LAYERS)


def plain(model):
    """A copy of `model` (same weights) made of Keras's own layers only: what saved files hold."""
    return _swap(model, {fast: stock for stock, fast in FAST_LAYERS.items()})


def _swap(model, mapping):
    """A copy of `model` with every layer of a type in `mapping` rebuilt as the mapped type."""
    if not any(type(layer) in mapping for layer in model.layers):
        return model

    def clone(layer):
        return mapping.get(type(layer), type(layer)).from_config(layer.get_config())

    try:
        copy = keras.models.clone_model(model, clone_function=clone)
    except ValueError:  # A subclassed model: only its own code can rebuild it.
        return model
    copy.set_weights(model.get_weights())
    for layer, copied in zip(model.layers, copy.layers):  # Random layers (dropout) keep their noise sequence.
        if hasattr(layer, "seed_generator"):
            copied.seed_generator.state.assign(layer.seed_generator.state)
    copy.trainable = model.trainable
    return copy
