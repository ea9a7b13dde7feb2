"""gkd-evaluate: FID, KID and classifier score of a generator against the test split.

    gkd-evaluate --generator=runs/quickstart            # a run directory or a .keras file

Features and probabilities come from tf_gkd's domain classifier of the dataset
(trained once and cached in --classifier_dir). Prints the scores and writes
them as JSON, with the extractor, real split and sample count they depend on
(default: `eval.json` in the run directory, or `<name>_eval.json` beside a
`.keras` file).
"""

import json
import os
import sys

from absl import app, flags, logging

from tf_gkd.bin import common_flags
from tf_gkd.data import datasets
from tf_gkd.evaluation import classifier as classifier_lib
from tf_gkd.evaluation import evaluate
from tf_gkd.networks import io as model_io

flags.DEFINE_string("generator", None, "A generator .keras file, or a run directory (its generator.keras, decoder.keras or student.keras).")
common_flags.define_data_flags("Dataset whose test split is the reference.")
common_flags.define_classifier_dir_flag()
# FID's covariance and KID's unbiased estimate need two samples at least.
flags.DEFINE_integer("num_samples", 10_000, "Generated samples scored.", lower_bound=2)
flags.DEFINE_integer("batch_size", 500, "Images per forward pass of the generator and the classifier.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of the latents: the same seed gives every generator the same z.")
flags.DEFINE_string("output", None, "JSON output path (default: eval.json in the run directory, or beside the file).")
FLAGS = flags.FLAGS


def default_output(generator_path):
    """`<run dir>/eval.json` for a run directory, `<name>_eval.json` beside a `.keras` file."""
    if os.path.isdir(generator_path):
        return os.path.join(generator_path, "eval.json")
    return os.path.splitext(generator_path)[0] + "_eval.json"


def _write_json(result, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=2)
    os.replace(tmp, path)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    output = FLAGS.output or default_output(FLAGS.generator)
    try:
        generator = model_io.load_generator(FLAGS.generator)  # First: a wrong path fails in seconds.
        raw_dir = datasets.resolve_raw_dir(FLAGS.dataset, FLAGS.raw_data_dir)
        test_images, _ = datasets.load_numpy(FLAGS.dataset, "test", FLAGS.data_dir, raw_dir, FLAGS.download)
        classifier = classifier_lib.load_or_train(
            FLAGS.dataset, FLAGS.classifier_dir, FLAGS.data_dir, raw_dir, FLAGS.download
        )
    except (model_io.GeneratorLoadError, datasets.DataError, classifier_lib.ClassifierError) as e:
        logging.error("%s", e)
        sys.exit(1)

    evaluator = evaluate.Evaluator(classifier, datasets.to_float(test_images).numpy(), "test", FLAGS.batch_size)
    try:
        scores = evaluator.evaluate(generator, FLAGS.num_samples, FLAGS.seed)
    except evaluate.NonFiniteSamplesError as e:
        logging.error("%s: %s", FLAGS.generator, e)
        sys.exit(1)
    result = {
        "generator": os.path.abspath(FLAGS.generator),
        "dataset": FLAGS.dataset,
        "extractor": f"tf_gkd domain classifier {FLAGS.dataset}",
        "features_layer": classifier_lib.FEATURES_LAYER,
        "classifier_test_accuracy": classifier.info["test_accuracy"],
        "z_dim": model_io.z_dim(generator),
        **scores,
    }
    try:
        _write_json(result, output)
    except OSError as e:
        logging.error("Cannot write %s: %s", output, e)
        sys.exit(1)

    print(f"{'generator':>18s}  {FLAGS.generator}")
    print(f"{'extractor':>18s}  {result['extractor']} (test accuracy {result['classifier_test_accuracy']:.4f})")
    print(f"{'real split':>18s}  {FLAGS.dataset} test, {result['num_real']} images")
    for key in ("fid", "kid", "kid_std", "classifier_score"):
        print(f"{key:>18s}  {result[key]:.6g}")
    for key in ("num_samples", "seed", "params"):
        print(f"{key:>18s}  {result[key]:d}")
    print(f"{'written to':>18s}  {output}")


def run():
    flags.mark_flag_as_required("generator")
    app.run(main)


if __name__ == "__main__":
    run()
