"""Teacher train steps/s: tf_gkd's GAN vs a plain keras-io-style DCGAN `fit`, same run.

    .venv/bin/python benchmarks/train_step.py [--repeats=3] [--steps=200]

The reference is the keras-io "DCGAN overriding train_step" recipe applied to the
same generator and discriminator (from tf_gkd's factory), batch size and data:
float32 images normalised in NumPy, `from_tensor_slices(...).shuffle(1024).batch()`,
two generator forward passes per step, a discriminator pass on the concatenated
real and fake batch, `fit` with default settings. tf_gkd runs its own `GAN` as
`gkd-train` does, with the quickstart settings, in float32 and with
mixed_bfloat16. Each variant is timed `--repeats` times, interleaved, after a
warm-up; the medians and their ratios to the reference are printed. A repeat
times the steady-state steps inside one `fit` call (`StepClock`).
"""

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from tf_gkd.data import datasets  # noqa: E402
from tf_gkd.networks import factory  # noqa: E402
from tf_gkd.training import config as config_lib  # noqa: E402
from tf_gkd.training import runs  # noqa: E402
import reference  # noqa: E402  (benchmarks/reference.py)

flags.DEFINE_integer("steps", 200, "Timed train steps per repeat.")
flags.DEFINE_integer("repeats", 3, "Timed repeats per variant (medians are reported).")
flags.DEFINE_integer("batch_size", 64, "Batch size of every variant.")
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data directory.")
flags.DEFINE_enum("kind", "conv", factory.TRUNK_KINDS, "Network kind of generator and discriminator.")
FLAGS = flags.FLAGS


def keras_io(images, batch_size, kind):
    keras.mixed_precision.set_global_policy("float32")
    model = reference.build(factory.make_generator(kind), factory.make_discriminator(kind))
    return model, reference.dataset(images, batch_size)


def tf_gkd(images, labels, batch_size, kind, mixed_precision):
    config = config_lib.TrainConfig(
        generator_kind=kind,
        discriminator_kind=kind,
        batch_size=batch_size,
        mixed_precision=mixed_precision,
        steps_per_execution=10,
        train_steps=10_000,
        log_every=10,
        sample_every=10,
        checkpoint_every=10,
    )
    runs.set_precision(mixed_precision)
    model = runs.build_gan(config)
    return model, datasets.train_dataset(images, labels, batch_size, seed=0)


class StepClock(keras.callbacks.Callback):
    """Times the train steps inside one `fit`, from the end of its first batch to the end of its last.

    `fit`'s set-up and tear-down are left out: on this machine the tear-down of a
    `fit` call over an infinite tf.data pipeline sometimes stalls for seconds,
    which would otherwise be charged to the steps at random.
    """

    def on_train_begin(self, logs=None):
        self.ends = []

    def on_train_batch_end(self, batch, logs=None):
        float(next(iter(logs.values())))  # Wait for the step to finish, not just to be dispatched.
        self.ends.append((batch, time.perf_counter()))


def steps_per_second(model, dataset, steps):
    clock = StepClock()
    model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False, callbacks=[clock])
    (first_step, first_time), (last_step, last_time) = clock.ends[0], clock.ends[-1]
    return (last_step - first_step) / (last_time - first_time)


def main(argv):
    del argv
    images, labels = datasets.load_numpy(
        "fashion_mnist", "train", data_dir=FLAGS.data_dir, raw_dir=datasets.resolve_raw_dir("fashion_mnist", None)
    )
    steps = FLAGS.steps // 10 * 10
    builders = {
        "keras-io reference (float32)": lambda: keras_io(images, FLAGS.batch_size, FLAGS.kind),
        "tf_gkd GAN (float32)": lambda: tf_gkd(images, labels, FLAGS.batch_size, FLAGS.kind, "off"),
        "tf_gkd GAN (mixed_bfloat16)": lambda: tf_gkd(images, labels, FLAGS.batch_size, FLAGS.kind, "mixed_bfloat16"),
    }
    results = {name: [] for name in builders}
    for repeat in range(FLAGS.repeats):
        for name, build in builders.items():
            model, dataset = build()
            steps_per_second(model, dataset, 20)  # Warm-up: tracing and compilation.
            results[name].append(steps_per_second(model, dataset, steps))
            print(f"repeat {repeat + 1}/{FLAGS.repeats}  {name:32s} {results[name][-1]:7.2f} steps/s", flush=True)
    keras.mixed_precision.set_global_policy("float32")

    base = statistics.median(results["keras-io reference (float32)"])
    print(f"\n{FLAGS.kind} networks, batch {FLAGS.batch_size}, {steps} steps x {FLAGS.repeats} repeats, "
          f"{os.cpu_count()} CPUs, TF {tf.__version__}, Keras {keras.__version__}")
    print(f"{'variant':34s} {'median steps/s':>15s} {'min':>7s} {'max':>7s} {'vs reference':>13s}")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"{name:34s} {median:15.2f} {min(values):7.2f} {max(values):7.2f} {median / base:12.2f}x")


if __name__ == "__main__":
    app.run(main)
