"""Train steps/s of tf_gkd's GAN, VAE and distiller vs plain keras-io-style `fit`s, same run.

    .venv/bin/python benchmarks/train_step.py [--models=gan,vae,distill] [--repeats=3] [--steps=200]
        [--ablate_matmul_gradients]

Each tf_gkd model is built as gkd-train / gkd-distill build it from its
flagfile, in float32 and with mixed_bfloat16, and timed against a keras-io
recipe (benchmarks/reference.py) over the same networks, batch size and data:

- `gan`: `runs.build_gan` with flags/gan_quickstart.cfg vs keras-io's "DCGAN
  overriding train_step" (`--kind` picks both networks);
- `vae`: `runs.build_vae` with flags/fashion_mnist_vae.cfg vs keras-io's
  "Variational AutoEncoder" on the same encoder and decoder;
- `distill`: `runs.build_distiller` with flags/distill_20x.cfg and its
  adversarial, feature and distribution weights 0 (pure L1 mimicry, the step
  of the flagfile's first quarter) vs a plain distillation `train_step`
  (teacher forward, student forward and backward, one Adam), both with an
  untrained conv teacher (the time of a step does not depend on the
  teacher's weights).

The references run in float32 on keras-io's input pipeline
(`from_tensor_slices(...).shuffle(1024).batch()`) with `fit`'s defaults, their
networks made of Keras's own layers (tf_gkd's use its fast ones,
`tf_gkd.networks.fast.accelerate`; `--ablate_matmul_gradients` adds tf_gkd
in mixed_bfloat16 without its matrix-product kernel gradients). Each
variant is timed `--repeats` times, interleaved, after a warm-up; the medians
are printed, and the median over repeats of each repeat's ratio to the
reference (the machine's speed drifts between repeats; a repeat's variants run
back to back). A repeat times the steady-state steps inside one `fit` call
(`StepClock`).
"""

import copy
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import reference  # noqa: E402  (benchmarks/reference.py)
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from tf_gkd import precision  # noqa: E402
from tf_gkd.bin import common  # noqa: E402
from tf_gkd.bin import train as train_bin  # noqa: E402, F401  (defines gkd-train's flags)
from tf_gkd.data import datasets  # noqa: E402
from tf_gkd.networks import factory, fast  # noqa: E402
from tf_gkd.runs import teacher as teacher_lib  # noqa: E402
from tf_gkd.runs import train as runs  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The flagfile each model is built from, and its name in the tables.
MODELS = {
    "gan": ("flags/gan_quickstart.cfg", "GAN"),
    "vae": ("flags/fashion_mnist_vae.cfg", "VAE"),
    "distill": ("flags/distill_20x.cfg", "GeneratorDistiller"),
}
REFERENCE = "keras-io reference (float32)"

flags.DEFINE_list("models", list(MODELS), f"Models to time, from {list(MODELS)}.")
flags.DEFINE_integer("steps", 200, "Timed train steps per repeat (at least two groups of 10).", lower_bound=20)
flags.DEFINE_integer("repeats", 3, "Timed repeats per variant (medians are reported).")
flags.DEFINE_enum("kind", "conv", factory.TRUNK_KINDS, "Network kind of the GAN's generator and discriminator.")
flags.DEFINE_boolean(
    "ablate_matmul_gradients",
    False,
    "Also time tf_gkd in mixed_bfloat16 with oneDNN's convolution kernel gradients instead of the matrix products.",
)
FLAGS = flags.FLAGS  # With gkd-train's own (imported above), among them --batch_size and --data_dir.


def flagfile_config(model, **overrides):
    """The `TrainConfig` that gkd-train / gkd-distill make of `model`'s flagfile, with `--batch_size` and `overrides`.

    absl expands the flagfile (nested ones too) and parses it into a copy of this
    program's flags reset to their defaults; gkd-distill's `--student_*` are its
    aliases of `--generator_*`.
    """
    path = os.path.join(REPO, MODELS[model][0])
    argv = [arg.replace("--student_", "--generator_", 1) for arg in FLAGS.read_flags_from_files([f"--flagfile={path}"])]
    parsed = copy.deepcopy(FLAGS)
    parsed.unparse_flags()
    parsed(["train_step", *argv])
    values = dict(batch_size=FLAGS.batch_size, **overrides)
    if model == "gan":
        values.update(generator_kind=FLAGS.kind, discriminator_kind=FLAGS.kind)
    if model == "distill":
        # Pure mimicry: the step of the flagfile's first quarter, which has no discriminator.
        values.update(
            model="distill",
            teacher="untrained conv generator",
            adversarial_weight=0.0,
            feature_weight=0.0,
            distribution_weight=0.0,
            init_discriminator=False,
        )
    return common.config_from_flags(parsed, **values)


def teacher_generator(config):
    """The distillation benchmarks' teacher: an untrained default conv generator with the student's z."""
    return factory.make_generator("conv", config.z_dim)


def keras_io(model, images):
    """(reference model, its dataset) for `model`, in float32, its networks made of Keras's own layers."""
    keras.mixed_precision.set_global_policy("float32")
    config = flagfile_config(model)
    if model == "gan":
        net = reference.build(
            factory.make_generator(config.generator_kind), factory.make_discriminator(config.discriminator_kind)
        )
    elif model == "vae":
        net = reference.build_vae(
            factory.make_encoder(config.encoder_kind, config.z_dim, config.encoder_width, config.encoder_depth),
            factory.make_generator(
                config.generator_kind, config.z_dim, config.generator_width, config.generator_depth, name="decoder"
            ),
        )
    else:
        student = factory.make_generator(
            config.generator_kind, config.z_dim, config.generator_width, config.generator_depth, name="student"
        )
        net = reference.build_distiller(teacher_generator(config), student)
    return net, reference.dataset(images, FLAGS.batch_size)


def tf_gkd(model, images, labels, mixed_precision):
    """(tf_gkd model, its dataset) for `model`, as gkd-train / gkd-distill build them."""
    config = flagfile_config(model, mixed_precision=mixed_precision)
    precision.apply(mixed_precision)
    if model in ("gan", "vae"):
        build = runs.build_gan if model == "gan" else runs.build_vae
        return build(config, images.shape[1:]), datasets.train_dataset(images, labels, config.batch_size, seed=0)
    teacher = teacher_lib.Teacher(
        run_dir=config.teacher, config={}, generator=teacher_generator(config), encoder=None, discriminator_path=None
    )
    model = runs.build_distiller(config, teacher)
    return model, runs.distill_dataset(model, config, images, labels, seed=0)


def without_matmul_gradients(model, images, labels):
    """tf_gkd's mixed_bfloat16 `model` traced with oneDNN's kernel gradients instead of the matrix products.

    The layers decide when their train step is traced, so the step is traced
    (the warm-up) with the matrix products switched off.
    """
    threshold = fast.MATMUL_GRADIENT_MIN_SIDE
    fast.MATMUL_GRADIENT_MIN_SIDE = float("inf")
    try:
        net, dataset = tf_gkd(model, images, labels, "mixed_bfloat16")
        steps_per_second(net, dataset, 20)
    finally:
        fast.MATMUL_GRADIENT_MIN_SIDE = threshold
    return net, dataset


def variants(model, images, labels):
    """{name: builder of (model, dataset)} of `model`: the reference, tf_gkd in float32 and mixed_bfloat16.

    With --ablate_matmul_gradients also tf_gkd in mixed_bfloat16 without the
    matrix-product kernel gradients (`fast.MatmulGradConv2D`).
    """
    label = MODELS[model][1]
    builders = {
        REFERENCE: lambda: keras_io(model, images),
        f"tf_gkd {label} (float32)": lambda: tf_gkd(model, images, labels, "off"),
        f"tf_gkd {label} (mixed_bfloat16)": lambda: tf_gkd(model, images, labels, "mixed_bfloat16"),
    }
    if FLAGS.ablate_matmul_gradients:
        builders[f"tf_gkd {label} (bf16, oneDNN kernel grads)"] = lambda: without_matmul_gradients(
            model, images, labels
        )
    return builders


class StepClock(keras.callbacks.Callback):
    """Times the train steps inside one `fit`, from the end of its first batch to the end of its last.

    `fit`'s set-up and tear-down are left out: tearing down an autotuned tf.data
    iterator can block for up to a minute (`tf_gkd.data.datasets.without_autotune`),
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


def load_images():
    return datasets.DataSpec("fashion_mnist", FLAGS.data_dir).load("train")


def timed_steps():
    return FLAGS.steps // 10 * 10  # Whole groups of the flagfiles' steps_per_execution=10.


def measure(builders):
    """{name: [steps/s of each repeat]}, the repeats interleaved over the variants."""
    results = {name: [] for name in builders}
    for repeat in range(FLAGS.repeats):
        for name, build in builders.items():
            model, dataset = build()
            steps_per_second(model, dataset, 20)  # Warm-up: tracing and compilation.
            results[name].append(steps_per_second(model, dataset, timed_steps()))
            print(f"repeat {repeat + 1}/{FLAGS.repeats}  {name:44s} {results[name][-1]:7.2f} steps/s", flush=True)
    keras.mixed_precision.set_global_policy("float32")
    return results


def print_table(title, results):
    """Medians of steps/s and, against the reference, the median of each repeat's ratio (robust to drift)."""
    base = results[REFERENCE]
    print(
        f"\n{title}: batch {FLAGS.batch_size}, {timed_steps()} steps x {FLAGS.repeats} repeats, "
        f"{os.cpu_count()} CPUs, TF {tf.__version__}, Keras {keras.__version__}"
    )
    print(f"{'variant':44s} {'median steps/s':>15s} {'min':>7s} {'max':>7s} {'vs reference':>13s}")
    for name, values in results.items():
        ratio = statistics.median(v / b for v, b in zip(values, base))
        print(f"{name:44s} {statistics.median(values):15.2f} {min(values):7.2f} {max(values):7.2f} {ratio:12.2f}x")


def main(argv):
    del argv
    unknown = set(FLAGS.models) - set(MODELS)
    if unknown:
        raise app.UsageError(f"Unknown --models {sorted(unknown)}; known: {list(MODELS)}.")
    images, labels = load_images()
    tables = {model: measure(variants(model, images, labels)) for model in FLAGS.models}
    for model, results in tables.items():
        kind = f", {FLAGS.kind} networks" if model == "gan" else ""
        print_table(f"{model} ({MODELS[model][0]}{kind})", results)


if __name__ == "__main__":
    app.run(main)
