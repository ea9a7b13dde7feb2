"""gkd-evaluate: score generators with the domain classifier; compare a teacher and its students side by side.

    gkd-evaluate --generator=runs/quickstart/teacher    # one generator: eval.json in the run directory
    gkd-evaluate --generator=runs/quickstart/teacher --generator=s20=runs/student_20x \\
        --generator=runs/scratch_20x --seeds=0,1,2 --output_dir=reports/20x

One generator (a run directory or a `.keras` file) without --output_dir: FID,
KID, classifier score, precision and recall against the test split, printed
and written as JSON with the extractor, real split and sample count they
depend on (default: `eval.json` in the run directory, or `<name>_eval.json`
beside a `.keras` file).

With --output_dir (needed for several generators, or --teacher): every
generator is measured on the same latents for each of --seeds — quality as
above, PSNR and SSIM against the teacher's images of the same z, parameters,
multiply-accumulates, .keras size, Keras latency per image, and the TFLite
figures of its gkd-export directory if there is one — and the directory gets
metrics.json, report.md, PNG figures (aligned samples, Pareto plots of FID
against size and latency, training curves) and TensorBoard events.

A path that is not a generator is reported by name and listed as failed in
the report while the others are scored; the exit status is then 1 (after the
report is written). Features and probabilities come from tf_gkd's domain
classifier of the dataset (trained once and cached in --classifier_dir).
"""

import os
import sys

from absl import app, flags

from tf_gkd import contract, errors, files, rundir
from tf_gkd.bin import common, evaluator_flags
from tf_gkd.evaluation import classifier as classifier_lib
from tf_gkd.evaluation import compare, evaluate, report
from tf_gkd.networks import io as model_io

flags.DEFINE_multi_string(
    "generator",
    None,
    "A generator to score: a .keras file or a run directory (its generator.keras, decoder.keras or student.keras), "
    "optionally labelled NAME=PATH. Repeat the flag or separate with commas to compare several (needs "
    "--output_dir). A path that is not a generator is listed as failed and the exit status is 1.",
)
flags.DEFINE_string(
    "teacher",
    None,
    "Reference of PSNR/SSIM: the NAME of a --generator entry, or a PATH (added as an entry if it is none). "
    "Default: the first entry whose run is a teacher (a gkd-train GAN or VAE run).",
)
flags.DEFINE_string(
    "output_dir",
    None,
    "Write the comparison report here: metrics.json, report.md, PNG figures and TensorBoard events (tb/).",
)
common.define_data_flags("Its test split is the reference.")
evaluator_flags.define_classifier_dir_flag()
# FID's covariance and KID's unbiased estimate need two samples at least.
flags.DEFINE_integer("num_samples", 10_000, "Generated samples scored per generator and seed.", lower_bound=2)
flags.DEFINE_integer("batch_size", 500, "Images per forward pass of the generator and the classifier.", lower_bound=1)
flags.DEFINE_list(
    "seeds", ["0"], "Seeds of the latents (mean ± std over several); a seed gives every generator the same z."
)
flags.DEFINE_alias("seed", "seeds")
flags.DEFINE_integer("precision_recall_k", 3, "k of the k-NN manifolds of precision and recall.", lower_bound=1)
flags.DEFINE_list("latency_batch_sizes", ["1", "256"], "Batch sizes of the Keras latency (--output_dir).")
flags.DEFINE_float(
    "latency_min_seconds", 0.5, "Least time spent timing each latency (at least 20 calls).", lower_bound=0
)
flags.DEFINE_string(
    "exports_dir",
    "saved_models",
    "Where gkd-export directories are: an entry NAME's TFLite figures are read from <exports_dir>/NAME/.",
)
flags.DEFINE_string(
    "output",
    None,
    "One generator without --output_dir: JSON output path (default: eval.json in the run "
    "directory, or beside the file).",
)
FLAGS = flags.FLAGS


def default_output(generator_path):
    """`<run dir>/eval.json` for a run directory, `<name>_eval.json` beside a `.keras` file."""
    if os.path.isdir(generator_path):
        return os.path.join(generator_path, rundir.EVAL_FILE)
    return os.path.splitext(generator_path)[0] + "_eval.json"


def _score_one(path, seed):
    """One generator, no report: scores printed and written as JSON (eval.json by default)."""
    output = FLAGS.output or default_output(path)
    generator = model_io.load_generator(path)  # First: a wrong path fails in seconds.
    evaluator = evaluator_flags.load_evaluator(FLAGS.precision_recall_k, FLAGS.batch_size)
    try:
        scores = evaluator.evaluate(generator, FLAGS.num_samples, seed)
    except evaluate.NonFiniteSamplesError as e:
        raise evaluate.NonFiniteSamplesError(f"{path}: {e}") from None
    result = {
        "generator": os.path.abspath(path),
        "dataset": FLAGS.dataset,
        "extractor": evaluator.classifier.describe(),
        "features_layer": classifier_lib.FEATURES_LAYER,
        "classifier_test_accuracy": evaluator.classifier.info["test_accuracy"],
        "z_dim": contract.z_dim(generator),
        **scores,
    }
    files.write_json(result, output)

    print(f"{'generator':>18s}  {path}")
    print(f"{'extractor':>18s}  {result['extractor']} (test accuracy {result['classifier_test_accuracy']:.4f})")
    print(f"{'real split':>18s}  {FLAGS.dataset} test, {result['num_real']} images")
    quality = ("fid", "kid", "kid_std", "classifier_score", "precision", "recall")
    for key in quality + ("label_accuracy", "fid_class_mean", "fid_class_worst"):
        if key in result:
            print(f"{key:>18s}  {result[key]:.6g}")
    for key in ("num_samples", "seed", "params"):
        print(f"{key:>18s}  {result[key]:d}")
    print(f"{'written to':>18s}  {output}")


def _compare(specs, seeds):
    """Several generators (or one with --output_dir): the report in --output_dir; exits 1 if any failed."""
    try:
        entries, teacher = compare.load_entries(specs, FLAGS.teacher)
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    comparison = compare.compare(
        entries,
        teacher,
        evaluator_flags.load_evaluator(FLAGS.precision_recall_k, FLAGS.batch_size),
        seeds=seeds,
        num_samples=FLAGS.num_samples,
        latency_batch_sizes=common.int_list("latency_batch_sizes", 1),
        latency_min_seconds=FLAGS.latency_min_seconds,
        exports_dir=FLAGS.exports_dir,
    )
    result = report.write(comparison, FLAGS.output_dir)

    latency = f"batch_{min(comparison.settings['latency']['batch_sizes'])}"
    print(f"{'model':20s} {'role':9s} {'params':>10s} {'FID':>16s} {'PSNR dB':>14s} {'ms/img ' + latency:>16s}")
    for e in result["entries"]:
        fid = e["quality"]["fid"]
        psnr = (e["fidelity"] or {}).get("psnr")
        print(
            f"{e['name']:20s} {e['role']:9s} {e['cost']['params']['value']:10,d} "
            f"{report.mean_std(fid['values'], 2):>16s} {report.mean_std(psnr['values'] if psnr else [], 2):>14s} "
            f"{e['cost']['keras_latency'][latency]['value']:16.4g}"
        )
    for failure in result["failed"]:
        print(f"FAILED {failure['name']}: {failure['error']}")
    print(f"Report: {os.path.join(FLAGS.output_dir, report.REPORT_FILE)}")
    if result["failed"]:
        sys.exit(1)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    specs = [spec for value in FLAGS.generator for spec in value.split(",") if spec]
    seeds = common.int_list("seeds", 0)
    if FLAGS.output_dir or FLAGS.teacher or len(specs) > 1:
        if not FLAGS.output_dir:
            raise app.UsageError("Comparing generators writes a report: pass --output_dir=DIR.")
        if FLAGS.output:
            raise app.UsageError("--output is the JSON of one generator without --output_dir; drop one of them.")
        _compare(specs, seeds)
    else:
        if len(seeds) > 1:
            raise app.UsageError("Several --seeds give mean ± std in a report: pass --output_dir=DIR.")
        _score_one(specs[0], seeds[0])


def run():
    flags.mark_flag_as_required("generator")
    common.help_from(__name__)
    app.run(errors.with_messages(main))


if __name__ == "__main__":
    run()
