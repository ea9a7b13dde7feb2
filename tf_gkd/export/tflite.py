"""Converting a generator to a SavedModel and to TFLite variants, and checking them against Keras.

The path that gives correct files on Keras 3: a float32 copy of the generator
→ a SavedModel written by `keras.export.ExportArchive` →
`tf.lite.TFLiteConverter.from_saved_model` (`from_concrete_functions` on a
Keras 3 model leaves the weights unfrozen and yields NaN). The float32 copy
matters: a generator trained with mixed precision computes in bfloat16, which
the TFLite builtins do not have, and mobile CPUs run float32.

Variants (all with TFLite builtin operators only, no Flex/SELECT_TF_OPS):
- `fp32`: the float model as is;
- `fp16`: weights stored as float16, dequantized to float32 at load;
- `dynamic`: dynamic-range quantization, int8 weights, float activations;
- `int8`: full integer: int8 weights and activations, their ranges
  calibrated on a representative set of z ~ N(0, I). Input and output stay
  float32 (a QUANTIZE and a DEQUANTIZE operator at the ends, negligible next
  to the network): the app feeds z and reads images exactly as with the
  other variants;
- `int8_qat`: full integer too, of the generator after quantization-aware
  tuning (`tf_gkd.export.qat`): batch normalization folded, each activation's
  range chosen for the rounding rather than its min and max, the weights
  tuned with the rounding simulated. The converter reads those ranges, and
  the per-channel scales of its convolution kernels, from the tuned model's
  fake-quantization operators; the same operators as `int8`, a few bytes
  per convolution channel larger.

A class-conditional generator's files take a second input, `label`, one-hot
float32 [N, K] (no ONE_HOT or embedding operator inside, so the quantised
files run on old runtimes too); the int8 calibration asks for every class in turn.

Every variant is written without the strings that nothing reads at run time
(`strip_unused`); the converter's conversion metadata is left out too.

Each variant can also be written with a fixed batch (`batch_size`), converted
from a SavedModel whose signature takes z of the static shape [N, z_dim], so
that every tensor shape is known at conversion. The Keras layers then see a
static batch, and the operators that compute the batch dimension at run time
(`SHAPE`, `STRIDED_SLICE`, `PACK`, feeding `RESHAPE` and `TRANSPOSE_CONV`) fold
into constants: what GPU delegates, which plan every tensor ahead, want.
"""

import os

import keras
import numpy as np
import tensorflow as tf
from tensorflow.lite.tools import flatbuffer_utils

from tf_gkd import contract, errors
from tf_gkd.export import runtime

VARIANTS = ("fp32", "fp16", "dynamic", "int8", "int8_qat")
SAVED_MODEL_DIR = "saved_model"
# Signature names of the SavedModel; both take `z` (and `label`, class-conditional) and return `images`.
FLOAT_SIGNATURE = "serving_default"
UINT8_SIGNATURE = "serving_uint8"

# Largest differences from the float32 Keras generator a variant may show on
# the verification latents, on images in [-1, 1] (a grey level is 2/255 ≈ 0.008).
# About twice the largest measured on this project's trained generators (conv
# and dense teachers, a keras-io DCGAN, conv4 and separable students; the
# measurements: docs/results.md#tolerances). Past them a file is broken, not
# merely quantized. For dynamic and int8 the mean is the real check: their max
# bounds only catch NaN or wholesale inversions (int8's is the whole range), as
# a quantized pixel of a saturated tanh legitimately moves by over half of it.
TOLERANCES = {
    "fp32": {"max_abs_diff": 1e-4, "mean_abs_diff": 1e-5},
    "fp16": {"max_abs_diff": 0.04, "mean_abs_diff": 1e-3},
    "dynamic": {"max_abs_diff": 1.4, "mean_abs_diff": 0.02},
    "int8": {"max_abs_diff": 2.0, "mean_abs_diff": 0.15},
    "int8_qat": {"max_abs_diff": 2.0, "mean_abs_diff": 0.15},
}
# Latents the int8 variant's activation ranges are calibrated on.
CALIBRATION_SAMPLES = 500
CALIBRATION_BATCH = 50
CALIBRATION_SEED = 20_000


class ExportError(errors.Error, RuntimeError):
    """An export cannot be made or fails its verification; the message names the file."""


def variant_name(variant, batch_size=None):
    """The name of a TFLite file's variant: `variant`, or `<variant>_b<N>` at the fixed batch N."""
    return variant if batch_size is None else f"{variant}_b{batch_size}"


def tflite_file(variant, batch_size=None):
    """File name of a TFLite variant in an export directory: `model_int8.tflite`, `model_int8_b1.tflite`."""
    return f"model_{variant_name(variant, batch_size)}.tflite"


def check_batch_size(batch_size):
    """Raises ValueError unless `batch_size` is None (a dynamic batch) or a positive integer."""
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"A fixed batch size must be a positive integer. Received: {batch_size!r}")


def float32_copy(generator):
    """The same network computing in float32 (a mixed-precision generator computes in bfloat16 or float16)."""
    if all(layer.dtype_policy.name == "float32" for layer in generator.layers):
        return generator
    copy = keras.models.clone_model(
        generator, clone_function=lambda layer: layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})
    )
    copy.set_weights(generator.get_weights())
    return copy


def to_uint8_images(images):
    """float images in [-1, 1] → uint8 [0, 255] in TensorFlow (the NumPy twin is `datasets.to_uint8`)."""
    return tf.cast(tf.clip_by_value(tf.round((images + 1.0) * 127.5), 0.0, 255.0), tf.uint8)


def write_saved_model(generator, directory, batch_size=None):
    """Writes `generator` (float32) as a SavedModel with two signatures.

    `serving_default`: z float32 [N, z_dim] → {"images": float32 [N, H, W, C] in [-1, 1]};
    `serving_uint8`: the same z → {"images": uint8 [N, H, W, C] in [0, 255]}, ready to display.
    A class-conditional generator's signatures take `label` float32 [N, K] (one-hot) too.
    N is any batch size, or `batch_size` for signatures of that static shape.
    """
    check_batch_size(batch_size)
    archive = keras.export.ExportArchive()
    archive.track(generator)
    k = contract.num_classes(generator)
    spec = [tf.TensorSpec([batch_size, contract.z_dim(generator)], tf.float32, name="z")]
    if k:
        spec.append(tf.TensorSpec([batch_size, k], tf.float32, name="label"))

        @tf.function(input_signature=spec)
        def images(z, label):
            return {"images": generator([z, label], training=False)}

        @tf.function(input_signature=spec)
        def images_uint8(z, label):
            return {"images": to_uint8_images(generator([z, label], training=False))}

    else:

        @tf.function(input_signature=spec)
        def images(z):
            return {"images": generator(z, training=False)}

        @tf.function(input_signature=spec)
        def images_uint8(z):
            return {"images": to_uint8_images(generator(z, training=False))}

    archive.add_endpoint(FLOAT_SIGNATURE, images)
    archive.add_endpoint(UINT8_SIGNATURE, images_uint8)
    archive.write_out(directory, verbose=False)


def calibration_batches(z_dim, batch_size=None, num_classes=0):
    """The batches of inputs the int8 variant's activation ranges are calibrated on: [{"z": z, ("label": one-hot)}].

    `CALIBRATION_SAMPLES` latents in batches of `CALIBRATION_BATCH`; for a fixed
    `batch_size`, in batches of that size, the last one completed with the next
    latents of the same seed (so a batch size that divides `CALIBRATION_SAMPLES`
    calibrates on exactly the latents of the dynamic-batch file). A
    class-conditional generator (`num_classes` > 0) is asked for every class in turn.
    """
    batch = CALIBRATION_BATCH if batch_size is None else batch_size
    num = -(-CALIBRATION_SAMPLES // batch) * batch
    inputs = {"z": contract.latents(num, z_dim, CALIBRATION_SEED)}
    if num_classes:
        inputs["label"] = contract.one_hot(contract.class_labels(num, num_classes), num_classes)
    return [{name: x[start : start + batch] for name, x in inputs.items()} for start in range(0, num, batch)]


def convert(saved_model_dir, variant, z_dim, batch_size=None, num_classes=0):
    """The `.tflite` bytes of `variant` (one of VARIANTS) of the SavedModel's float signature.

    `z_dim` and `num_classes` are the generator's latent size and classes
    (0: unconditional), for the int8 variant's calibration inputs; `batch_size`
    the static batch of a SavedModel written with one (`write_saved_model`),
    which the calibration batches must have.

    Raises:
      ExportError: the converter fails, e.g. because the model needs operators
        outside the TFLite builtins.
    """
    if variant not in VARIANTS:
        raise ValueError(f"Unknown TFLite variant. Expected one of {VARIANTS}. Received: {variant!r}")
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=[FLOAT_SIGNATURE])
    # The converter's options, versions and a hash of the model (152 bytes); the report records the versions.
    converter.exclude_conversion_metadata = True
    # Builtins only, so the files run on stock mobile runtimes; conversion fails rather than adding Flex ops.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if variant != "fp32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    if variant == "dynamic":
        # One weight scale per dense layer, not per output channel: its hybrid FULLY_CONNECTED is then
        # version 9 (TFLite runtime 2.3) instead of 12 (runtime 2.17), the file is smaller, and its FID
        # the same (docs/results.md#dynamic-range-dense-weights-per-tensor).
        converter._experimental_disable_per_channel_quantization_for_dense_layers = True
    if variant in ("int8", "int8_qat"):
        # int8_qat's SavedModel has its ranges in fake-quantization operators, which take precedence over
        # the calibration (which the converter requires all the same).
        batches = calibration_batches(z_dim, batch_size, num_classes)
        # Inputs by their signature names: the converter may order a signature's inputs its own way.
        converter.representative_dataset = lambda: iter(batches)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        # Per-channel scales cost 12 bytes per output channel (a float32 scale and an int64 zero
        # point, twice: weights and bias), a large share of a small generator's int8 file, while
        # activation quantization dominates the int8 error: per-tensor weights cost no accuracy
        # (docs/results.md#int8-weights-per-tensor).
        converter._experimental_disable_per_channel = True
    try:
        model = converter.convert()
    except Exception as e:  # The converter raises ConverterError, RuntimeError, ValueError...
        raise ExportError(
            f"TFLite conversion ({variant_name(variant, batch_size)}) of {saved_model_dir} failed with TFLite "
            "builtin operators only "
            f"({type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''})."
        ) from None
    return strip_unused(model)


def strip_unused(model):
    """The `.tflite` bytes `model` without the strings and empty tables that nothing reads at run time.

    Removed: the tensor names (the converter names a tensor after every TensorFlow
    operation folded into it, e.g. `generator_1/up_7_bn_1/batchnorm/add_1;generator_1/up_7_1/
    conv_transpose;...`: kilobytes of a student's int8 file, docs/results.md), the model
    description ("MLIR Converted."), the subgraph name, and the empty quantization
    tables of float and int32 tensors. Interpreters address tensors by index or
    through the signature, so the files run as before, to the bit. Kept: the
    `serving_default` signature with its `z` and `images` names, which LiteRT's
    signature runner needs (`flatbuffer_utils.strip_strings` would delete it), and
    the `min_runtime_version` metadata. The same applies to every variant; the
    SavedModel beside the files keeps the named graph for inspection. The model is
    re-serialized with `flatbuffer_utils`, as the converter itself does last: an
    unchanged model comes out byte for byte the same.
    """
    model = flatbuffer_utils.read_model_from_bytearray(model)
    model.description = None
    for subgraph in model.subgraphs:
        subgraph.name = None
        for tensor in subgraph.tensors:
            tensor.name = None
            q = tensor.quantization
            if q is not None and all(v is None for v in (q.scale, q.zeroPoint, q.min, q.max)) and not q.detailsType:
                tensor.quantization = None
    return flatbuffer_utils.convert_object_to_bytearray(model)


def differences(images, reference):
    """{max_abs_diff, mean_abs_diff} of images from reference images; NaN anywhere gives NaN."""
    diff = np.abs(np.asarray(images, np.float64) - np.asarray(reference, np.float64))
    return {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean())}


def over_tolerance(diffs, variant):
    """The `differences` that exceed the variant's `TOLERANCES` ({name: value}); NaN always does."""
    return {k: v for k, v in diffs.items() if not v <= TOLERANCES[variant][k]}  # `not <=`: NaN fails too.


def verify(path, variant, z, reference, labels=None):
    """Runs the `.tflite` file on `z` (and int `labels`) with LiteRT and checks it against Keras's `reference`.

    Returns:
      `differences` of its images from `reference`.

    Raises:
      runtime.TFLiteLoadError: the file cannot be loaded (truncated, corrupt, not a generator).
      ExportError: a difference exceeds the variant's `TOLERANCES` (or is NaN).
    """
    diffs = differences(runtime.TFLiteGenerator(path)(z, labels), reference)
    over = over_tolerance(diffs, variant)
    if over:
        found = ", ".join(f"{k} {v:.3g} > {TOLERANCES[variant][k]:g}" for k, v in over.items())
        raise ExportError(
            f"{os.path.basename(path)} ({variant}) differs from the Keras generator beyond tolerance on "
            f"{len(z)} fixed latents: {found}. The file is broken; it was not exported."
        )
    return diffs


def check_saved_model(directory, z, reference, labels=None, num_classes=0):
    """Loads the SavedModel and checks both signatures against Keras's images `reference` for `z`.

    A class-conditional generator's (of `num_classes`) are checked on int `labels` too.

    Returns:
      `differences` of the float signature's images from `reference`.

    Raises:
      ExportError: the float images differ beyond the fp32 tolerance, or the
        uint8 images by more than one grey level from `reference` rounded.
    """
    signatures = tf.saved_model.load(directory).signatures
    inputs = {"z": tf.constant(z)}
    if num_classes:
        inputs["label"] = tf.constant(contract.one_hot(labels, num_classes))
    diffs = differences(signatures[FLOAT_SIGNATURE](**inputs)["images"], reference)
    uint8 = signatures[UINT8_SIGNATURE](**inputs)["images"]
    # One grey level of slack: a float difference of 1e-7 can tip a pixel over a rounding boundary.
    uint8_diff = int(np.abs(uint8.numpy().astype(np.int32) - to_uint8_images(reference).numpy()).max())
    if uint8.dtype != tf.uint8 or uint8_diff > 1 or not diffs["max_abs_diff"] <= TOLERANCES["fp32"]["max_abs_diff"]:
        raise ExportError(
            f"The SavedModel {directory} does not reproduce the Keras generator: max abs diff "
            f"{diffs['max_abs_diff']:.3g} ({FLOAT_SIGNATURE}), {uint8_diff} grey levels "
            f"({UINT8_SIGNATURE}, {uint8.dtype.name})."
        )
    return diffs
