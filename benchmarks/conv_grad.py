"""Convolution kernel gradients: TensorFlow's (oneDNN) kernel vs tf_gkd's matrix products, same run.

    .venv/bin/python benchmarks/conv_grad.py [--repeats=5] [--iterations=30]

For each convolution shape, times the kernel gradient dL/dW given the input x
and the output gradient dL/dy: `tf.raw_ops.Conv2DBackpropFilter` against
`tf_gkd.networks.fast.conv_weight_gradient`, both compiled with
`tf.function`, in bfloat16 and float32. The shapes are the stride-2 layers of
the default networks (a transposed convolution's kernel gradient is that of the
convolution going the other way; the discriminator's runs on real and fake
images together, batch 128) and a sweep over channel counts. The last column
says whether `MatmulGradConv2D` takes the matrix products for that shape in
bfloat16 (`MATMUL_GRADIENT_MIN_SIDE`); the table is how that threshold was set.
Printed: the best of `--repeats` means over `--iterations` calls, in ms, and
oneDNN's time over the matrix products' (> 1: the matrix products are faster).
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from tf_gkd.networks import fast  # noqa: E402

flags.DEFINE_integer("repeats", 5, "Timed repeats per variant (the best is reported).", lower_bound=1)
flags.DEFINE_integer("iterations", 30, "Calls per timed repeat.", lower_bound=1)
FLAGS = flags.FLAGS

# (name, batch, input size, input channels, output channels) of 4×4 stride-2 'same' convolutions.
SHAPES = [
    ("D down_14 (real+fake)", 128, 28, 1, 64),
    ("D down_7 (real+fake)", 128, 14, 64, 128),
    ("D down_7 / encoder", 64, 14, 64, 128),
    ("G up_14 (as conv 14->7)", 64, 14, 64, 128),
    ("G up_28 (as conv 28->14)", 64, 28, 1, 64),
    ("sweep", 64, 28, 4, 64),
    ("sweep", 64, 28, 8, 64),
    ("sweep", 64, 28, 16, 32),
    ("sweep", 64, 14, 16, 64),
    ("sweep", 64, 14, 32, 64),
    ("sweep", 64, 14, 64, 64),
    ("sweep", 64, 14, 128, 64),
    ("sweep", 64, 14, 128, 128),
    ("sweep", 64, 14, 128, 256),
    ("sweep", 64, 14, 256, 128),
    ("sweep", 64, 8, 128, 256),
]
KERNEL, STRIDE = 4, 2


def best_ms(fn, *args):
    fn(*args)  # Tracing.
    times = []
    for _ in range(FLAGS.repeats):
        start = time.perf_counter()
        for _ in range(FLAGS.iterations):
            out = fn(*args)
        out.numpy()
        times.append((time.perf_counter() - start) / FLAGS.iterations * 1e3)
    return min(times)


def main(argv):
    del argv
    onednn = tf.function(
        lambda x, dy: tf.raw_ops.Conv2DBackpropFilter(
            input=x,
            filter_sizes=[KERNEL, KERNEL, x.shape[-1], dy.shape[-1]],
            out_backprop=dy,
            strides=[1, STRIDE, STRIDE, 1],
            padding="SAME",
        )
    )
    matmul = tf.function(lambda x, dy: fast.conv_weight_gradient(x, dy, (KERNEL, KERNEL), (STRIDE, STRIDE), "same"))
    rng = np.random.default_rng(0)
    print(
        f"4x4 stride-2 'same' convolutions, kernel gradient, best of {FLAGS.repeats} x {FLAGS.iterations} calls, "
        f"{os.cpu_count()} CPUs, TF {tf.__version__}"
    )
    print(
        f"{'shape':26s} {'N':>4s} {'HxW':>6s} {'C->O':>9s} | {'bf16 oneDNN':>11s} {'matmul':>7s} {'ratio':>6s} | "
        f"{'f32 oneDNN':>10s} {'matmul':>7s} {'ratio':>6s} | bf16 layer uses"
    )
    for name, batch, size, channels, filters in SHAPES:
        row = []
        for dtype in (tf.bfloat16, tf.float32):
            x = tf.constant(rng.normal(size=(batch, size, size, channels)), dtype)
            dy = tf.constant(rng.normal(size=(batch, size // STRIDE, size // STRIDE, filters)), dtype)
            a, b = best_ms(onednn, x, dy), best_ms(matmul, x, dy)
            row.append(f"{a:11.2f} {b:7.2f} {a / b:5.2f}x")
        layer = fast.MatmulGradConv2D(filters, KERNEL, strides=STRIDE, padding="same")
        uses = fast._matmul_gradient_applies(layer, tf.zeros((1, size, size, channels), tf.bfloat16), channels, filters)
        print(
            f"{name:26s} {batch:4d} {size:3d}x{size:<2d} {channels:4d}->{filters:<4d} | {row[0]} | "
            f"{row[1].strip():>26s} | {'matmul' if uses else 'oneDNN'}",
            flush=True,
        )


if __name__ == "__main__":
    app.run(main)
