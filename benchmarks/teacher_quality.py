"""Teacher quality: FID, KID and classifier score of tf_gkd's teachers and a keras-io reference.

    .venv/bin/python benchmarks/teacher_quality.py --workdir=runs/bench_teacher [--skip_full]

Trains, each in its own run directory under --workdir (complete runs are reused):
- `quickstart`: `gkd-train --flagfile=flags/gan_quickstart.cfg` (the default conv teacher);
- `full`: `gkd-train --flagfile=flags/fashion_mnist_gan.cfg`;
- `dense`: `gkd-train --flagfile=flags/dense_gan.cfg` (the classic dense GAN);
- `keras_io`: the same conv networks trained with keras-io's DCGAN recipe
  (benchmarks/reference.py) for the quickstart's steps and batch size;
then scores every generator, plus real training images (the floor) and an
untrained generator (the ceiling), with the same evaluator: the domain
classifier's features, 10,000 samples against the 10,000 test images.
Prints a table and writes `teacher_quality.json` in --workdir.
"""

import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import reference  # noqa: E402  (benchmarks/reference.py)
from absl import app, flags, logging  # noqa: E402

from tf_gkd import rundir  # noqa: E402
from tf_gkd.data import datasets  # noqa: E402
from tf_gkd.evaluation import evaluate  # noqa: E402
from tf_gkd.networks import factory  # noqa: E402
from tf_gkd.networks import io as model_io  # noqa: E402

import runs as runs_lib  # noqa: E402  (benchmarks/runs.py)

flags.DEFINE_string("workdir", "runs/bench_teacher", "Directory of the benchmark's runs.")
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data directory.")
flags.DEFINE_string("classifier_dir", "saved_models/classifiers", "Cache of the domain classifiers.")
flags.DEFINE_boolean("skip_full", False, "Leave out the long flags/fashion_mnist_gan.cfg teacher.")
flags.DEFINE_integer("num_samples", 10_000, "Samples scored per generator.")
FLAGS = flags.FLAGS

TEACHERS = {
    "quickstart": "flags/gan_quickstart.cfg",
    "full": "flags/fashion_mnist_gan.cfg",
    "dense": "flags/dense_gan.cfg",
}


def train_teacher(name, flagfile):
    """Runs gkd-train as a user would; returns the wall time (None if already complete)."""
    workdir = os.path.join(FLAGS.workdir, name)
    return runs_lib.timed_run("train", workdir, [f"--flagfile={flagfile}"], [rundir.GENERATOR_FILE], FLAGS.data_dir)


def train_keras_io(train_images, steps, batch_size):
    """The keras-io recipe on tf_gkd's default conv networks; returns the wall time."""
    path = os.path.join(FLAGS.workdir, "keras_io", rundir.GENERATOR_FILE)
    if os.path.exists(path):
        return None
    keras.utils.set_random_seed(0)
    model = reference.build(factory.make_generator("conv"), factory.make_discriminator("conv"))
    start = time.perf_counter()
    model.fit(reference.dataset(train_images, batch_size), epochs=1, steps_per_epoch=steps, verbose=2)
    seconds = time.perf_counter() - start
    model_io.save_model_atomic(model.generator, path)
    return seconds


def read_config(name):
    with open(os.path.join(FLAGS.workdir, name, rundir.CONFIG_FILE)) as f:
        return json.load(f)


def main(argv):
    del argv
    os.makedirs(FLAGS.workdir, exist_ok=True)
    results_path = os.path.join(FLAGS.workdir, "teacher_quality.json")
    results = json.load(open(results_path)) if os.path.exists(results_path) else {}
    names = [n for n in TEACHERS if not (FLAGS.skip_full and n == "full")]
    for name in names:
        seconds = train_teacher(name, TEACHERS[name])
        if seconds is not None:
            results.setdefault(name, {})["train_seconds"] = round(seconds, 1)
    quick = read_config("quickstart")

    spec = datasets.DataSpec("fashion_mnist", FLAGS.data_dir)
    train_images, _ = spec.load("train")
    test_images, _ = spec.load("test")
    seconds = train_keras_io(train_images, quick["train_steps"], quick["batch_size"])
    if seconds is not None:
        results.setdefault("keras_io", {})["train_seconds"] = round(seconds, 1)

    evaluator = evaluate.load_evaluator(spec, FLAGS.classifier_dir)
    scores = {
        "real train images": evaluator.score_images(datasets.to_float(train_images[: FLAGS.num_samples]).numpy()),
        "untrained conv generator": evaluator.evaluate(factory.make_generator("conv"), FLAGS.num_samples),
    }
    for name in [*names, "keras_io"]:
        generator = model_io.load_generator(os.path.join(FLAGS.workdir, name))
        scores[name] = evaluator.evaluate(generator, FLAGS.num_samples)
    for name, score in scores.items():
        results.setdefault(name, {}).update(score)
    with open(results_path, "w") as f:
        json.dump(results, f, indent=2)

    print(
        f"\nFashion-MNIST, {FLAGS.num_samples} samples vs the test split, domain classifier features "
        f"(test accuracy {evaluator.classifier.info['test_accuracy']:.4f}); quickstart steps {quick['train_steps']}, "
        f"batch {quick['batch_size']}"
    )
    print(f"{'model':26s} {'FID':>8s} {'KID':>8s} {'class. score':>12s} {'params':>9s} {'train s':>8s}")
    for name, r in results.items():
        print(
            f"{name:26s} {r['fid']:8.2f} {r['kid']:8.3f} {r['classifier_score']:12.3f} "
            f"{r.get('params', float('nan')):9.0f} {r.get('train_seconds', float('nan')):8.1f}"
        )
    logging.info("Wrote %s", results_path)


if __name__ == "__main__":
    app.run(main)
