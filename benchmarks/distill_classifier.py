"""Classifier distillation: the evaluation classifier taught to a small student, against the same student from scratch.

    .venv/bin/python benchmarks/distill_classifier.py --workdir=runs/bench_distill_classifier \
        [--temperature=4 --temperature=2 --alpha=0.1 --alpha=0.5]

The teacher is the domain classifier of `tf_gkd.evaluation` (trained and
cached in --classifier_dir on first use). The distilled students (one per
--temperature × --alpha) and the from-scratch student have the same
architecture, initial weights, data, epochs, optimizer and seed; only the loss
differs. Prints a table and writes `distill_classifier.json` in --workdir.
"""

import functools
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

from tf_gkd.data import datasets  # noqa: E402
from tf_gkd.evaluation import classifier as classifier_lib  # noqa: E402
from tf_gkd.models import classifier as distill_lib  # noqa: E402

flags.DEFINE_string("workdir", "runs/bench_distill_classifier", "Where distill_classifier.json is written.")
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data directory.")
flags.DEFINE_string("classifier_dir", "saved_models/classifiers", "Cache of the domain classifiers (the teacher).")
flags.DEFINE_float("student_width", distill_lib.DEFAULT_STUDENT_WIDTH, "Width of the student classifier.")
flags.DEFINE_multi_float("temperature", [distill_lib.DEFAULT_TEMPERATURE], "Softmax temperature T; repeat to sweep.")
flags.DEFINE_multi_float("alpha", [distill_lib.DEFAULT_ALPHA], "Weight of the hard-label loss; repeat to sweep.")
flags.DEFINE_integer("epochs", classifier_lib.DEFAULT_EPOCHS, "Training epochs of every student.")
flags.DEFINE_integer("seed", 0, "Seed of the students' initial weights, shuffling and dropout.")
FLAGS = flags.FLAGS
FLAG_NAMES = ("data_dir", "classifier_dir", "student_width", "temperature", "alpha", "epochs", "seed")


def train_timed(train, train_images, train_labels, **kwargs):
    """Trains a new student with `train(student=..., ...)`; returns (seconds, student)."""
    student = distill_lib.make_student(FLAGS.student_width, FLAGS.seed)
    start = time.perf_counter()
    train(
        student=student,
        train_images=train_images,
        train_labels=train_labels,
        epochs=FLAGS.epochs,
        seed=FLAGS.seed,
        **kwargs,
    )
    return time.perf_counter() - start, student


def main(argv):
    del argv
    spec = datasets.DataSpec("fashion_mnist", FLAGS.data_dir)
    teacher = classifier_lib.load_or_train(spec, FLAGS.classifier_dir)
    train_images, train_labels = spec.load("train")
    test_images, test_labels = spec.load("test")
    train_images, test_images = datasets.to_float(train_images).numpy(), datasets.to_float(test_images).numpy()

    runs = {"teacher": (teacher.info["train_seconds"], teacher.model)}
    runs["student from scratch"] = train_timed(distill_lib.train_from_scratch, train_images, train_labels)
    distill = functools.partial(distill_lib.distill_classifier, teacher.model)
    for temperature in FLAGS.temperature:
        for alpha in FLAGS.alpha:
            logging.info("Distilling with T=%g, alpha=%g.", temperature, alpha)
            runs[f"distilled T={temperature:g} alpha={alpha:g}"] = train_timed(
                distill, train_images, train_labels, temperature=temperature, alpha=alpha
            )

    teacher_params = teacher.model.count_params()
    results = {
        name: {
            "params": model.count_params(),
            "test_accuracy": distill_lib.accuracy(model, test_images, test_labels),
            "train_seconds": round(seconds, 1),
        }
        for name, (seconds, model) in runs.items()
    }
    os.makedirs(FLAGS.workdir, exist_ok=True)
    path = os.path.join(FLAGS.workdir, "distill_classifier.json")
    with open(path, "w") as f:
        json.dump({"flags": {name: FLAGS[name].value for name in FLAG_NAMES}, "results": results}, f, indent=2)

    print(
        f"\nFashion-MNIST test split ({len(test_labels)} images); students of width {FLAGS.student_width} "
        f"trained {FLAGS.epochs} epochs, seed {FLAGS.seed}; teacher train time from its info.json"
    )
    print(f"{'model':28s} {'params':>9s} {'teacher/model':>13s} {'test acc':>9s} {'train s':>8s}")
    for name, r in results.items():
        print(
            f"{name:28s} {r['params']:9d} {teacher_params / r['params']:12.1f}x "
            f"{r['test_accuracy']:9.4f} {r['train_seconds']:8.1f}"
        )
    logging.info("Wrote %s", path)


if __name__ == "__main__":
    app.run(main)
