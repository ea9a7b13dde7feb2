"""Quantization-aware tuning of a generator for its int8 TFLite file (gkd-export's `int8_qat`).

Post-training int8 (`tflite.convert(..., "int8")`) rounds a generator that
never saw rounding, with each activation's range its min and max over the
calibration latents. Here the rounding of the int8 file is simulated in Keras
(`QuantizationAware`), and the network is prepared for it, keeping its
function:

1. batch normalization is folded into the layer before it, as the converter
   folds it (`rewrite.fold_batch_norm`; nothing to do on a generator the
   exporter has already rewritten, `rewrite.for_mobile`);
2. channels are rescaled between layers so that one scale per tensor suits
   them all (`equalize_channels`, cross-layer equalization);
3. each activation's range is narrowed to the share of it that rounds the
   generator best (`QuantizationAware.narrow_ranges`): min and max give the
   rarest values as much room as the common ones; the input of a tanh is
   clipped where int8 tanh saturates (`TANH_SATURATION`);
4. the weights are tuned with the rounding in the forward pass (`fine_tune`:
   `keras.quantizers.fake_quant_with_min_max_vars`, straight-through
   gradients), towards the float generator's own images for the same inputs
   (L1), with a small learning rate.

The simulation rounds as the int8 file does: kernels symmetric, to
[-127, 127]; a convolution's kernel (and a separable one's 1x1 kernel) with
one scale per output channel, which the file keeps (a few bytes per channel
for a lower FID than the `int8` variant's one scale per tensor:
docs/results.md#quantization-aware-tuning); dense, depthwise and transposed
kernels with one scale per tensor (per-channel dense weights need newer
runtimes; gkd-export's rewrite leaves no transposed convolution); every
operator's output and each model input to 256 levels of its range, which
always contains 0; tanh outputs with int8 TANH's fixed scale 1/128; reshapes,
upsampling, depth-to-space and folded batch norms keep their input's rounding. The tuned
model, written as a SavedModel, carries its ranges in fake-quantization
operators, which the converter reads instead of calibrating: the int8 file
is the simulation, up to a level where integer and float arithmetic round a
value on the edge differently (tests/qat_test.py).
"""

import math

import keras
import numpy as np
import tensorflow as tf
import tqdm
from absl import logging
from keras import layers, ops

from tf_gkd import contract
from tf_gkd.export import rewrite

# Layers whose output keeps its input's rounding in the int8 file.
_PASS_THROUGH = (layers.Reshape, rewrite.FoldedBatchNorm, layers.UpSampling2D, layers.Flatten)
# int8 TANH's output: scale 1/128, zero point 0.
_TANH_RANGE = (-1.0, 127.0 / 128.0)
# Past |x| = atanh(1 - 1/512), tanh(x) is within a quarter of int8 TANH's step (1/128) of ±1 and rounds
# there: a larger input changes nothing but its range.
TANH_SATURATION = 0.5 * math.log(1023.0)
# Tuning steps of gkd-export's int8_qat variant, and their learning rate: a small one, as the tuned
# network starts where it should end, at the float generator (docs/results.md#quantization-aware-tuning).
STEPS = 1000
LEARNING_RATE = 1e-5
# The shares of a calibrated range that `QuantizationAware.narrow_ranges` tries.
RANGE_FACTORS = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2)


class _Mode:
    """Whether a `QuantizationAware` model is calibrating (records ranges, no rounding) or rounding."""

    observing = False


class QATError(rewrite.GraphError):
    """The generator has a layer that quantization-aware fine-tuning does not simulate."""


# Layers a channel's scale passes through unchanged: f(x / s) = f(x) / s for s > 0.
_HOMOGENEOUS = (layers.LeakyReLU, layers.ReLU, rewrite.FoldedBatchNorm, layers.Reshape, layers.UpSampling2D)
# The axis of a kernel that indexes input channels.
_INPUT_AXIS = {
    layers.Dense: 0,
    layers.Conv2D: 2,
    layers.Conv2DTranspose: 3,
    layers.DepthwiseConv2D: 2,
    layers.SeparableConv2D: 2,  # Of the depthwise kernel.
    rewrite.SubpixelConv2D: 2,
    rewrite.FullConv2D: 2,
}


def _chains(model):
    """[(the kernel layers A, the activation layer, kernel layer B)] of A → ... → activation → ... → B chains.

    A is a kernel layer without activation, or an `Add` of such layers (each
    used once); between A and B only `_HOMOGENEOUS` layers, each used once,
    exactly one of them a LeakyReLU or ReLU.
    """
    consumers = rewrite.consumers(model)

    def only_consumer(layer):
        users = consumers.get(id(layer), [])
        return users[0] if len(users) == 1 else None

    chains = []
    for layer in model.layers:
        if isinstance(layer, layers.Add):
            sources = [rewrite.producer(t) for t in rewrite.node(layer).input_tensors]
            if not all(rewrite.linear(p) and only_consumer(p) is layer for p in sources):
                continue
        elif rewrite.linear(layer):
            sources = [layer]
        else:
            continue
        activation, current = None, only_consumer(layer)
        while isinstance(current, _HOMOGENEOUS):
            if isinstance(current, (layers.LeakyReLU, layers.ReLU)):
                if activation is not None:
                    break
                activation = current
            current = only_consumer(current)
        if activation is not None and current is not None and rewrite.kernel_kind(current) is not None:
            if len(rewrite.node(current).input_tensors) == 1:
                chains.append((sources, activation, current))
    return chains


def _per_channel(values, axis, channels):
    """Max |values| per channel along `axis`, units of a flat axis read as channels-last (unit u → u % channels)."""
    values = np.moveaxis(np.abs(values), axis, -1).reshape(-1, values.shape[axis])
    per_unit = values.max(axis=0)
    return per_unit.reshape(-1, channels).max(axis=0) if per_unit.size != channels else per_unit


def equalize_channels(model, batches):
    """Rescales channels between layers so that one int8 scale per tensor suits every channel; same function.

    In a chain A → LeakyReLU → B (`_chains`), channel c of A's output can be
    divided by any s_c > 0 if B's weights of that input channel are multiplied
    by it. Per-tensor int8 gives a channel with small activations, or small
    weights in B, few levels; s_c = sqrt(activation range_c / weight range_c)
    gives both the same share (cross-layer equalization, after Nagel et al.,
    2019, "Data-Free Quantization", with activation ranges measured on
    `batches`). Changes `model`'s weights in place; returns the number of chains.
    """
    chains = _chains(model)
    for sources, activation, consumer in chains:
        probe = keras.Model(rewrite.inputs_of(model), activation.output)
        outputs = np.concatenate([np.asarray(probe(_inputs(b), training=False)) for b in batches])
        kind = rewrite.kernel_kind(consumer)
        weights = {w.path.split("/")[-1]: w for w in consumer.weights}
        kernel = weights["depthwise_kernel" if kind is layers.SeparableConv2D else "kernel"]
        axis = _INPUT_AXIS[kind]
        channels = kernel.shape[axis]
        act_range = _per_channel(outputs, -1, channels)
        weight_range = _per_channel(np.asarray(kernel), axis, channels)
        live = (act_range > 0) & (weight_range > 0)
        s = np.ones(channels)
        s[live] = np.sqrt(act_range[live] / weight_range[live])
        s[live] /= np.exp(np.mean(np.log(s[live])))
        shape = [1] * kernel.ndim
        shape[axis] = channels
        kernel.assign(np.asarray(kernel) * s.reshape(shape))
        for source in sources:
            source_weights = {w.path.split("/")[-1]: w for w in source.weights}
            name = "pointwise_kernel" if rewrite.kernel_kind(source) is layers.SeparableConv2D else "kernel"
            out = source_weights[name]
            # The source's output units: its channels, or (a dense layer before a reshape) units u → channel u % C.
            units = {layers.Conv2DTranspose: out.shape[-2], layers.DepthwiseConv2D: out.shape[-2] * out.shape[-1]}.get(
                rewrite.kernel_kind(source), out.shape[-1]
            )
            unit_scale = np.tile(1.0 / s, units // channels)
            out.assign(rewrite.scaled(source, np.asarray(out), unit_scale))
            if "bias" in source_weights:
                source_weights["bias"].assign(np.asarray(source_weights["bias"]) * unit_scale)
    return len(chains)


def _fake_quant_weight(w, per_channel=False):
    """Symmetric int8 rounding of a kernel, [-127, 127]·max|w|/127: of the whole tensor, or per output channel.

    Per channel, the kernel's last axis is its output channel (a convolution's
    HWIO kernel); the converter reads these scales from the fake-quantization
    operator and writes them into the int8 file as they are.
    """
    axes = list(range(len(w.shape) - 1)) if per_channel else None
    m = tf.stop_gradient(tf.maximum(tf.reduce_max(tf.abs(w), axis=axes), 1e-8))
    return keras.quantizers.fake_quant_with_min_max_vars(
        w, -m, m, num_bits=8, narrow_range=True, axis=-1 if per_channel else None
    )


class _Range:
    """The calibrated [min, max] of one tensor (always containing 0), and its rounding."""

    def __init__(self, layer, name, fixed=None):
        self.fixed = fixed
        self.min = layer.add_weight(name=f"{name}_min", shape=(), initializer="zeros", trainable=False)
        self.max = layer.add_weight(name=f"{name}_max", shape=(), initializer="zeros", trainable=False)

    def __call__(self, x, observing):
        if self.fixed is not None:
            return keras.quantizers.fake_quant_with_min_max_vars(x, *self.fixed, num_bits=8)
        if observing:
            self.min.assign(ops.minimum(self.min, ops.min(x)))
            self.max.assign(ops.maximum(self.max, ops.max(x)))
            return x
        # A range of zero width (a dead tensor) still needs a valid one.
        return keras.quantizers.fake_quant_with_min_max_vars(x, self.min, ops.maximum(self.max, self.min + 1e-6))

    def reset(self):
        if self.fixed is None:
            self.min.assign(0.0)
            self.max.assign(0.0)


class _Quantized(keras.layers.Layer):
    """A layer of the folded generator, run with int8 rounding of its kernel, inputs (model inputs) and output."""

    def __init__(self, layer, quantize_inputs, mode, **kwargs):
        super().__init__(name=f"{layer.name}_int8", **kwargs)
        self.inner = layer
        self.quantize_inputs = quantize_inputs
        self.mode = mode  # The `_Mode` shared by the model's layers.
        self.kind = rewrite.kernel_kind(layer)
        if self.kind is None and layer.weights and not isinstance(layer, layers.BatchNormalization):
            raise QATError(
                f"Layer {layer.name!r} ({type(layer).__name__}) has weights that quantization-aware "
                f"fine-tuning does not simulate (it knows {', '.join(k.__name__ for k in rewrite.OUTPUT_AXIS)})."
            )

    def build(self, input_shape):
        n = len(input_shape) if isinstance(input_shape, list) else 1
        self.input_ranges = [_Range(self, f"input{i}") for i in range(n)] if self.quantize_inputs else []
        self.intermediate = _Range(self, "depthwise") if self.kind is layers.SeparableConv2D else None
        self.output_range = None
        self.tanh = False
        if not isinstance(self.inner, _PASS_THROUGH):
            activation = getattr(self.inner, "activation", None)
            self.tanh = getattr(activation, "__name__", None) == "tanh"
            self.output_range = _Range(self, "output", fixed=_TANH_RANGE if self.tanh else None)

    def ranges(self):
        return [r for r in (*self.input_ranges, self.intermediate, self.output_range) if r is not None]

    def call(self, inputs, training=None, mask=None):
        observing = self.mode.observing
        if self.input_ranges:
            if isinstance(inputs, list):
                inputs = [r(x, observing) for r, x in zip(self.input_ranges, inputs, strict=True)]
            else:
                inputs = self.input_ranges[0](inputs, observing)
        outputs = self._forward(inputs, observing) if self.kind else self.inner(inputs, training=False)
        return outputs if self.output_range is None else self.output_range(outputs, observing)

    def _forward(self, x, observing):
        layer, kind = self.inner, self.kind
        q = _fake_quant_weight
        if kind is layers.Dense:
            y = ops.matmul(x, q(layer.kernel))
        elif kind in (layers.Conv2D, rewrite.SubpixelConv2D, rewrite.FullConv2D):
            if kind is rewrite.FullConv2D:  # Zero padding in int8: the zero point, exact.
                x = layer.padded(x)
            kernel = q(layer.kernel, per_channel=True)
            y = ops.conv(x, kernel, layer.strides, layer.padding, layer.data_format, layer.dilation_rate)
        elif kind is layers.Conv2DTranspose:
            y = ops.conv_transpose(
                x,
                q(layer.kernel),
                layer.strides,
                layer.padding,
                layer.output_padding,
                layer.data_format,
                layer.dilation_rate,
            )
        elif kind is layers.DepthwiseConv2D:
            y = ops.depthwise_conv(
                x, q(layer.kernel), layer.strides, layer.padding, layer.data_format, layer.dilation_rate
            )
        else:  # SeparableConv2D: the int8 file has a depthwise and a 1x1 convolution, each rounded.
            y = ops.depthwise_conv(
                x, q(layer.depthwise_kernel), layer.strides, layer.padding, layer.data_format, layer.dilation_rate
            )
            y = self.intermediate(y, observing)
            y = ops.conv(y, q(layer.pointwise_kernel, per_channel=True), 1, "valid", layer.data_format)
        if layer.use_bias:
            y = y + layer.bias
        if kind is rewrite.SubpixelConv2D:  # Moves values without changing them: one rounding, after it.
            y = layer.rearranged(y)
        return layer.activation(y)


class QuantizationAware:
    """A generator's folded copy (`fold_batch_norm`) and a view of it that computes with int8 rounding.

    `folded` holds the weights (float32); `model` runs them with the rounding
    simulated, its ranges held in its own variables. Tuning `model`'s
    trainable weights tunes `folded`. `model`, written as a SavedModel, is what
    the converter turns into the int8 file: it reads the ranges from its
    fake-quantization operators.
    """

    def __init__(self, generator, equalize_on=None):
        self.folded = rewrite.fold_batch_norm(generator)
        if equalize_on is not None:
            equalize_channels(self.folded, equalize_on)
        self.mode = _Mode()
        inputs = {id(t) for t in self.folded.inputs}
        self.layers = {}

        def clone(layer):
            takes_input = any(id(t) in inputs for t in rewrite.node(layer).input_tensors)
            self.layers[layer.name] = _Quantized(layer, takes_input, self.mode)
            return self.layers[layer.name]

        self.model = rewrite.as_called(keras.models.clone_model(self.folded, clone_function=clone))
        # The outputs that a tanh layer reads: past ±TANH_SATURATION they change nothing in the int8 file.
        self.tanh_inputs = [
            self.layers[rewrite.producer(rewrite.node(layer.inner).input_tensors[0]).name].output_range
            for layer in self.layers.values()
            if layer.tanh and layer.kind is None
        ]

    def ranges(self):
        return [r for layer in self.layers.values() for r in layer.ranges()]

    def calibrate(self, batches):
        """Sets every range to the min and max over `batches` (dicts of the generator's inputs), as the converter.

        But for the inputs of a tanh, clipped to ±TANH_SATURATION: a student's
        saturated background reaches far out, and a range that wide coarsens
        every step of the values that matter.
        """
        for r in self.ranges():
            r.reset()
        self.mode.observing = True
        try:
            for batch in batches:
                self.model(_inputs(batch), training=False)
        finally:
            self.mode.observing = False
        for r in self.tanh_inputs:
            if r is not None and r.fixed is None:
                r.min.assign(max(float(r.min), -TANH_SATURATION))
                r.max.assign(min(float(r.max), TANH_SATURATION))

    def narrow_ranges(self, batches, generator, sweeps=2):
        """Narrows each range in turn to the share of it (`RANGE_FACTORS`) that rounds `generator` best.

        Min and max over the calibration set give the rarest values as much
        room as the common ones: a range cut to a fraction of it clips a few
        values and rounds all the others finer. Which fraction is best depends
        on what the rest of the network makes of the clipped values, so each
        range is chosen by the mean L1 of the rounded network's images from
        `generator`'s on `batches`, the others held, for `sweeps` passes.
        """
        data = [(_inputs(b), generator(_inputs(b), training=False)) for b in batches]
        run = tf.function(lambda inputs: self.model(inputs, training=False))

        def error():
            return float(np.mean([tf.reduce_mean(tf.abs(run(inputs) - target)) for inputs, target in data]))

        best = error()
        for _ in range(sweeps):
            for r in self.ranges():
                if r.fixed is not None:
                    continue
                low, high, chosen = float(r.min), float(r.max), 1.0
                for factor in RANGE_FACTORS:
                    r.min.assign(low * factor)
                    r.max.assign(high * factor)
                    e = error()
                    if e < best:
                        best, chosen = e, factor
                r.min.assign(low * chosen)
                r.max.assign(high * chosen)
        return best


def _inputs(batch):
    """A calibration batch ({"z"[, "label"]}, `tflite.calibration_batches`) as the generator takes it."""
    return [batch["z"], batch["label"]] if "label" in batch else batch["z"]


def fine_tune(generator, calibration, steps=STEPS, batch_size=64, learning_rate=LEARNING_RATE, seed=0):
    """Prepares a float32 `generator` for int8 (the module's steps 1-3), then tunes it for `steps` steps.

    Each step draws `batch_size` latents (and uniform classes, conditional) and
    moves the rounded network's images towards `generator`'s own (L1).

    Args:
      generator: a float32 Keras generator (`tflite.float32_copy`); not modified.
      calibration: the converter's calibration batches (`tflite.calibration_batches`).

    Returns:
      (the tuned `QuantizationAware` generator, {"steps", "l1_calibrated",
      "l1_narrowed", "l1_after", "tuning_kept"}): the mean L1 of its rounded
      images from `generator`'s on the calibration latents with the min-max
      ranges, with the ranges narrowed, and at the end; tuning that ends
      with a larger L1 than it started from is undone (`tuning_kept` False).
    """
    # The calibration latents in one batch: the same min, max and mean, in one call instead of one per batch.
    calibration = [{name: np.concatenate([b[name] for b in calibration]) for name in calibration[0]}]
    qa = QuantizationAware(generator, equalize_on=calibration)
    optimizer = keras.optimizers.Adam(learning_rate)
    z_dim, num_classes = contract.z_dim(generator), contract.num_classes(generator)
    noise = tf.random.Generator.from_seed(seed)

    def l1(inputs, target):
        return tf.reduce_mean(tf.abs(qa.model(inputs, training=False) - target))

    @tf.function
    def step():
        z = noise.normal((batch_size, z_dim))
        inputs = z
        if num_classes:
            classes = noise.uniform((batch_size,), 0, num_classes, dtype=tf.int32)
            inputs = [z, tf.one_hot(classes, num_classes)]
        target = generator(inputs, training=False)
        with tf.GradientTape() as tape:
            loss = l1(inputs, target)
        weights = qa.model.trainable_weights
        optimizer.apply(tape.gradient(loss, weights), weights)
        return loss

    def error():
        (batch,) = calibration
        return float(l1(_inputs(batch), generator(_inputs(batch), training=False)))

    qa.calibrate(calibration)
    before = error()
    qa.narrow_ranges(calibration, generator)
    narrowed = error()
    untuned = [np.asarray(w) for w in qa.model.weights]
    for _ in tqdm.trange(steps, desc="quantization-aware tuning", unit="step", leave=False):
        step()
    if steps:
        qa.narrow_ranges(calibration, generator, sweeps=1)
    after = error()
    kept = after <= narrowed
    if not kept:  # Tuning that rounds worse is undone.
        for weight, value in zip(qa.model.weights, untuned, strict=True):
            weight.assign(value)
        after = narrowed
    logging.info("Quantization-aware tuning: L1 from the float generator %.4f -> %.4f.", before, after)
    stats = {"steps": steps, "l1_calibrated": before, "l1_narrowed": narrowed, "l1_after": after, "tuning_kept": kept}
    return qa, stats
