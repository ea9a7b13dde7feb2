"""gkd-evaluate: FID, KID and classifier score of a generator against the test split.

    gkd-evaluate --generator=runs/quickstart            # a run directory or a .keras file

Prints the scores and writes them as JSON (default: `eval.json` in the run
directory, or `<name>_eval.json` beside a `.keras` file).
"""

import json
import os
import sys

from absl import app, flags, logging

from tf_gkd.data import datasets
from tf_gkd.evaluation import classifier as classifier_lib
from tf_gkd.evaluation import evaluate
from tf_gkd.networks import io as model_io

flags.DEFINE_string("generator", None, "A generator .keras file, or a run directory holding generator.keras.")
flags.DEFINE_enum("dataset", "fashion_mnist", datasets.DATASETS, "Dataset whose test split is the reference.")
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data directory (default: tfds's own).")
flags.DEFINE_string("raw_data_dir", None, "Directory with the raw IDX .gz files (default: Debian's location).")
flags.DEFINE_boolean("download", False, "Let tensorflow-datasets download the data (needs internet).")
flags.DEFINE_string("classifier_dir", "saved_models/classifiers", "Cache of the domain classifiers.")
flags.DEFINE_integer("num_samples", 10_000, "Generated samples scored.", lower_bound=2)
flags.DEFINE_integer("seed", 0, "Seed of the latents.")
flags.DEFINE_string("output", None, "JSON output path (default: beside the generator).")
FLAGS = flags.FLAGS


def default_output(generator_path):
    if os.path.isdir(generator_path):
        return os.path.join(generator_path, "eval.json")
    return os.path.splitext(generator_path)[0] + "_eval.json"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    try:
        generator = model_io.load_generator(FLAGS.generator)
        raw_dir = datasets.resolve_raw_dir(FLAGS.dataset, FLAGS.raw_data_dir)
        classifier = classifier_lib.load_or_train(
            FLAGS.dataset, FLAGS.classifier_dir, FLAGS.data_dir, raw_dir, FLAGS.download
        )
        test_images, _ = datasets.load_numpy(FLAGS.dataset, "test", FLAGS.data_dir, raw_dir, FLAGS.download)
    except (model_io.GeneratorLoadError, datasets.DataError, classifier_lib.ClassifierError) as e:
        logging.error("%s", e)
        sys.exit(1)

    evaluator = evaluate.Evaluator(classifier, datasets.to_float(test_images).numpy(), f"{FLAGS.dataset} test split")
    result = evaluator.evaluate(generator, FLAGS.num_samples, FLAGS.seed)
    result.update(
        generator=os.path.abspath(FLAGS.generator),
        extractor=f"tf_gkd domain classifier ({FLAGS.dataset}, 'features' layer, "
        f"test accuracy {classifier.info.get('test_accuracy', float('nan')):.4f})",
    )
    output = FLAGS.output or default_output(FLAGS.generator)
    tmp = output + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=2)
    os.replace(tmp, output)
    print(f"{'generator':>18s}: {FLAGS.generator}")
    for key in ("fid", "kid", "classifier_score", "params", "num_samples"):
        print(f"{key:>18s}: {result[key]:.6g}")
    print(f"{'written to':>18s}: {output}")


def run():
    flags.mark_flag_as_required("generator")
    app.run(main)


if __name__ == "__main__":
    run()
