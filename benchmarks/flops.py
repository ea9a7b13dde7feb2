"""Achieved FLOP/s of the GAN teacher's train step, as a fraction of this machine's matmul peak.

    .venv/bin/python benchmarks/flops.py [--repeats=3] [--steps=200] [--profile_steps=50]

In one run:

1. Peak: the median time of a square `tf.linalg.matmul` (`--matmul_sizes`) in a
   `tf.function`, in float32 and in bfloat16 (2·n³ floating-point operations);
   beside it, the FLOP/s of the three passes of the discriminator's largest
   convolution (`conv_flops_per_second`).
2. FLOPs of one train step of each GAN variant of benchmarks/train_step.py
   (keras-io reference, tf_gkd in float32 and mixed_bfloat16): TensorFlow's
   profiler count (`float_operation`) of the matrix multiplications and
   convolutions in the traced graph of `train_step` (element-wise ops add
   under 1 %, printed apart), and an analytic count from the layers' shapes
   (`analytic_flops`) of what the graph holds and of what runs. The graph holds
   both gradients of every linear op the tape differentiates; TensorFlow prunes
   the unused ones (the discriminator's weight gradients in the generator
   update, the gradients with respect to the images in the discriminator
   update) when it runs the step, as the trace shows (it holds fewer linear
   ops than the graph), so the count of what runs is the one multiplied by
   the steps/s.
3. Steps/s of each variant, measured (and compared with the reference) as
   benchmarks/train_step.py does, hence the achieved FLOP/s and its fraction of
   the peak of the variant's compute dtype.
4. Where the time goes: a TensorFlow profiler trace of `--profile_steps`
   steady-state steps of each variant; the op types' share of the busy
   (non-idle) self time. Independent ops (such as a layer's weight and input
   gradients) run concurrently, one core each, so busy time exceeds wall time
   and the shares are of op time, not of cores. (TF's converter keeps the 500
   costliest ops; the 100 cheapest of those add up to under 0.1 %.)
"""

import collections
import glob
import json
import math
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
import train_step  # noqa: E402  (benchmarks/train_step.py: its flags, variants and clock)
from absl import app, flags  # noqa: E402
from tensorflow.python.profiler.internal import _pywrap_profiler_plugin  # noqa: E402

from tf_gkd import contract  # noqa: E402
from tf_gkd.evaluation import cost  # noqa: E402
from tf_gkd.networks import fast  # noqa: E402

flags.DEFINE_list("matmul_sizes", ["2048", "4096"], "Sizes n of the n×n matmuls that measure the peak.")
flags.DEFINE_integer("matmul_repeats", 5, "Timed calls per matmul size, convolution pass and dtype (medians).")
flags.DEFINE_integer("profile_steps", 50, "Train steps in each variant's profiler trace.")
flags.DEFINE_integer("top_ops", 10, "Op types listed per variant.")
FLAGS = flags.FLAGS


def median_seconds(compute):
    """Median wall time of `compute()` run as a `tf.function` (after one untimed call)."""
    # A scalar out, so that fetching the result costs nothing next to the computation.
    run = tf.function(lambda: tf.reduce_sum(tf.cast(compute(), tf.float32)))
    run().numpy()
    times = []
    for _ in range(FLAGS.matmul_repeats):
        start = time.perf_counter()
        run().numpy()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_flops_per_second(n, dtype):
    """2·n³ over the median time of an n×n matmul in `dtype`."""
    a = tf.cast(tf.random.normal([n, n]), dtype)
    b = tf.cast(tf.random.normal([n, n]), dtype)
    return 2 * n**3 / median_seconds(lambda: tf.linalg.matmul(a, b))


def conv_flops_per_second(dtype):
    """{pass: FLOP/s} of the conv discriminator's `down_7` layer in `dtype` on real and fake batches together.

    4×4 kernel, stride 2, 64 → 128 channels, 14×14 → 7×7: the forward pass and
    the input and weight gradients of the discriminator update's largest layer,
    the weight gradient both as TensorFlow's kernel and as tf_gkd's matrix
    products (`tf_gkd.networks.fast.conv_weight_gradient`).
    """
    shape, kernel, out = [2 * FLAGS.batch_size, 14, 14, 64], [4, 4, 64, 128], [2 * FLAGS.batch_size, 7, 7, 128]
    x, w, dy = (tf.cast(tf.random.normal(s), dtype) for s in (shape, kernel, out))
    strides = [1, 2, 2, 1]
    passes = {
        "forward": lambda: tf.nn.conv2d(x, w, strides, "SAME"),
        "input gradient": lambda: tf.compat.v1.nn.conv2d_backprop_input(shape, w, dy, strides, "SAME"),
        "weight gradient": lambda: tf.compat.v1.nn.conv2d_backprop_filter(x, kernel, dy, strides, "SAME"),
        # What tf_gkd's layer computes instead under mixed_bfloat16 (MatmulGradConv2D).
        "weight gradient as matmuls": lambda: fast.conv_weight_gradient(x, dy, (4, 4), (2, 2), "same"),
    }
    flops = 2 * math.prod(out[:3]) * math.prod(kernel)
    return {name: flops / median_seconds(compute) for name, compute in passes.items()}


def graph_flops(model):
    """{op type: (float operations, nodes)} that TF's profiler counts in the traced graph of one `train_step`."""
    spec = tf.TensorSpec([FLAGS.batch_size, *contract.DEFAULT_IMAGE_SHAPE], tf.float32)
    node = cost.profile_float_ops(tf.function(model.train_step).get_concrete_function(spec).graph)
    counts = {}
    while node.children:  # The "op" view nests the op types in a chain, most float operations first.
        node = node.children[0]
        counts[node.name] = (node.float_ops, len(node.graph_nodes))
    return counts


def linear_macs(network):
    """Multiply-accumulates per image of each Dense, Conv2D and Conv2DTranspose layer of `network`, in order."""
    macs = []
    for layer in network.layers:
        if isinstance(layer, keras.layers.Conv2DTranspose):
            positions = math.prod(layer.input.shape[1:3])  # Each input pixel meets the whole kernel.
        elif isinstance(layer, keras.layers.Conv2D):
            positions = math.prod(layer.output.shape[1:3])
        elif isinstance(layer, keras.layers.Dense):
            positions = 1
        else:
            continue
        macs.append(positions * math.prod(layer.kernel.shape))
    return macs


def analytic_flops(model, traced=False):
    """Float operations of the matmuls and convolutions one GAN train step runs (`traced`: that its graph holds).

    Per image, with G and D the forward MACs of generator and discriminator and
    g0, d0 those of their first layers: the generator forward G; the
    discriminator update on real and fake together, 2·(D forward + D weight
    gradients + D − d0 input gradients, the images needing none); the generator
    update, D forward + D input gradients + G weight gradients + G − g0 input
    gradients (z needs none). The graph also holds the discriminator's weight
    gradients in the generator update and its first layer's input gradients in
    its own update, D + 2·d0, which TensorFlow prunes. The keras-io step runs
    the generator forward once more.
    """
    g, d = linear_macs(model.generator), linear_macs(model.discriminator)
    per_image = 3 * sum(g) - g[0] + 8 * sum(d) - 2 * d[0]
    if traced:
        per_image += sum(d) + 2 * d[0]
    if isinstance(model, train_step.reference.KerasIoGAN):
        per_image += sum(g)
    return 2 * FLAGS.batch_size * per_image


def profile_ops(model, dataset):
    """{op name: (op type, self time in µs)} of a profiler trace of `--profile_steps` steady-state train steps.

    The steps run through Keras's own train function on an iterator created
    and warmed up beforehand, so that neither `fit`'s set-up (such as filling
    a shuffle buffer) nor its tear-down is in the trace. Idle time is left out.
    """
    iterator = iter(dataset)
    model.make_train_function()
    train_function = model.train_function
    calls = max(1, FLAGS.profile_steps // model.steps_per_execution)
    for _ in range(2):
        train_function(iterator)
    with tempfile.TemporaryDirectory(prefix="gkd_flops_") as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(calls):
            logs = train_function(iterator)
        float(next(iter(logs.values())))  # Wait for the last step.
        tf.profiler.experimental.stop()
        paths = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
        data, ok = _pywrap_profiler_plugin.xspace_to_tools_data(paths, "framework_op_stats", {})
    if not ok:
        raise RuntimeError("The profiler could not convert its trace.")
    table = json.loads(data)[0]  # Per-op rows of the host (the CPU), idle time included.
    columns = [c["id"] for c in table["cols"]]
    ops = {}
    for row in table["rows"]:
        op = dict(zip(columns, [cell.get("v") if cell else None for cell in row["c"]]))
        if op["type"] != "IDLE":
            ops[op["operation"]] = (op["type"], op["total_self_time"])
    return ops, calls * model.steps_per_execution


def is_linear(op_type):
    return "Conv2D" in op_type or "MatMul" in op_type


def main(argv):
    del argv
    peaks = {}
    for dtype in (tf.float32, tf.bfloat16):
        rates = {int(n): matmul_flops_per_second(int(n), dtype) for n in FLAGS.matmul_sizes}
        peaks[dtype.name] = max(rates.values())
        print(
            f"matmul {dtype.name}: " + ", ".join(f"{n}²: {r / 1e9:.1f} GFLOP/s" for n, r in rates.items()), flush=True
        )
        print(
            f"discriminator down_7 convolution {dtype.name}: "
            + ", ".join(f"{k} {r / 1e9:.1f} GFLOP/s" for k, r in conv_flops_per_second(dtype).items()),
            flush=True,
        )

    images, labels = train_step.load_images()
    builders = train_step.variants("gan", images, labels)
    rates = train_step.measure(builders)
    rows, traces = {}, {}
    for name, build in builders.items():
        model, dataset = build()
        counted = graph_flops(model)
        traces[name] = profile_ops(model, dataset)
        linear = {k: v for k, v in counted.items() if is_linear(k)}
        other = sum(v for k, (v, _) in counted.items() if k not in linear)
        linear_run = sum(is_linear(op_type) for op_type, _ in traces[name][0].values())
        print(
            f"{name}: profiler count (GFLOP, graph nodes): "
            + ", ".join(f"{k} {v / 1e9:.3f} ({n})" for k, (v, n) in linear.items())
            + f", element-wise ops {other / 1e9:.3f}; linear ops in the graph "
            f"{sum(n for _, n in linear.values())}, in the trace {linear_run}",
            flush=True,
        )
        rows[name] = (
            sum(v for v, _ in linear.values()),
            analytic_flops(model, traced=True),
            analytic_flops(model),
            statistics.median(rates[name]),
            statistics.median(v / b for v, b in zip(rates[name], rates[train_step.REFERENCE])),
        )
    keras.mixed_precision.set_global_policy("float32")

    print(
        f"\nGAN train step ({FLAGS.kind} networks, batch {FLAGS.batch_size}), {os.cpu_count()} CPUs, "
        f"TF {tf.__version__}; peak = best median n×n matmul: float32 {peaks['float32'] / 1e9:.1f}, "
        f"bfloat16 {peaks['bfloat16'] / 1e9:.1f} GFLOP/s"
    )
    print(f"{'':40s} {'graph GFLOP':>24s} {'run':>7s} {'':>8s} {'vs':>6s}")
    print(
        f"{'variant':40s} {'profiler':>11s} {'analytic':>12s} {'GFLOP':>7s} {'steps/s':>8s} {'ref.':>6s} "
        f"{'GFLOP/s':>8s} {'of peak':>8s}"
    )
    for name, (counted, traced, analytic, rate, ratio) in rows.items():
        peak = peaks["bfloat16" if "bfloat16" in name else "float32"]
        achieved = analytic * rate
        print(
            f"{name:40s} {counted / 1e9:11.3f} {traced / 1e9:12.3f} {analytic / 1e9:7.3f} {rate:8.2f} "
            f"{ratio:5.2f}x {achieved / 1e9:8.1f} {achieved / peak:8.1%}"
        )

    for name, (ops, steps) in traces.items():
        times = collections.Counter()
        for op_type, self_time in ops.values():
            times[op_type] += self_time
        busy = sum(times.values())
        linear = sum(t for op_type, t in times.items() if is_linear(op_type))
        print(
            f"\n{name}: busy self time {busy / 1e3 / steps:.1f} ms per step, {linear / busy:.1%} of it in "
            f"convolutions and matmuls; top op types"
        )
        for op_type, t in times.most_common(FLAGS.top_ops):
            print(f"  {op_type:40s} {t / busy:6.1%}")


if __name__ == "__main__":
    app.run(main)
