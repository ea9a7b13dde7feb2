"""What a generator costs to run: multiply-accumulates, file size, latency, and its TFLite export's figures.

Multiply-accumulates (MACs) come from TensorFlow's profiler: the float
operations it counts for the linear operators (matrix multiplications and
convolutions, transposed ones included) of one image's forward pass, halved.
Element-wise work (biases, batch normalization, activations) is left out, as
MAC counts usually do; it is under 1 % of tf_gkd's generators. Latency is the
median wall time of repeated calls after warm-up, the method of gkd-export's
LiteRT timings (`tf_gkd.export.runtime.latency_ms_per_image`), here for the
Keras model run as one `tf.function`.
"""

import json
import os

import tensorflow as tf

from tf_gkd import contract
from tf_gkd.export import runtime
from tf_gkd.networks import io as model_io

# The profiler's op types of the linear layers; their float operations are 2 per multiply-accumulate.
_LINEAR_OPS = ["MatMul", "BatchMatMul.*", "Conv2D.*", "DepthwiseConv2d.*"]


def profile_float_ops(graph, op_types=None):
    """TF profiler's "op" view of the float operations in `graph` (only `op_types` regexes, if given)."""
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options.update(output="none")
    if op_types is not None:
        options.update(account_type_regexes=op_types)
    logger, level = tf.get_logger(), tf.get_logger().level
    logger.setLevel("ERROR")  # The profiler warns that it uses a deprecated TF1 helper, on every call.
    try:
        return tf.compat.v1.profiler.profile(graph=graph, cmd="op", options=options)
    finally:
        logger.setLevel(level)


def _traced(generator):
    """`generator` as one tf.function of z; a class-conditional one is asked for classes 0, 1, ... in turn."""
    k = contract.num_classes(generator)
    if not k:
        return tf.function(lambda z: generator(z, training=False))
    return tf.function(lambda z: generator([z, tf.one_hot(tf.range(tf.shape(z)[0]) % k, k)], training=False))


def count_macs(generator):
    """Multiply-accumulates of the linear layers of `generator` for one image (see the module docstring)."""
    spec = tf.TensorSpec([1, contract.z_dim(generator)], tf.float32)
    graph = _traced(generator).get_concrete_function(spec).graph
    return int(profile_float_ops(graph, _LINEAR_OPS).total_float_ops) // 2


class _CompiledGenerator:
    """A Keras generator called as one `tf.function` on NumPy z, as `runtime.latency_ms_per_image` calls models.

    Eager Keras calls add Python overhead per layer that no deployment pays.
    """

    def __init__(self, generator):
        self.z_dim = contract.z_dim(generator)
        self._call = _traced(generator)

    def __call__(self, z):
        return self._call(tf.constant(z)).numpy()


def keras_latency_ms_per_image(generator, batch_sizes, min_seconds=0.5):
    """{`batch_<b>`: median milliseconds per image of `generator` called on b latents} for each b.

    Each batch size is traced and run a few times before timing; TensorFlow
    uses its default thread pools (every core).
    """
    model = _CompiledGenerator(generator)
    return {f"batch_{b}": runtime.latency_ms_per_image(model, b, min_seconds=min_seconds) for b in batch_sizes}


def read_export(export_dir, generator):
    """The TFLite figures of the gkd-export directory `export_dir`, if it is an export of `generator`.

    Returns:
      (variants, note): `variants` maps each TFLite variant to its
      `size_bytes`, `latency_ms_per_image` ({`batch_<b>`: ms}),
      `latency_threads` and, when the export measured it, `fid`, and `note`
      says where they were read; (None, None) when there is no export there;
      (None, why) when it is not an export of this generator (another
      parameter count or latent size).
    """
    path = os.path.join(export_dir, runtime.REPORT_FILE)
    if not os.path.exists(path):
        return None, None
    with open(path) as f:
        report = json.load(f)
    mine = {"params": model_io.count_params(generator), "z_dim": contract.z_dim(generator)}
    theirs = {key: report.get(key) for key in mine}
    if theirs != mine:
        return None, f"{path} is the export of another generator ({theirs}, not {mine}): ignored"
    keys = ("size_bytes", "latency_ms_per_image", "latency_threads", "fid")
    variants = {name: {k: v[k] for k in keys if k in v} for name, v in report.get("tflite", {}).items()}
    return variants, f"read from {path}"
