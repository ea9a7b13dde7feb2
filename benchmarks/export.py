"""Export for mobile: size, fidelity, FID and LiteRT latency of every TFLite variant of a student.

    .venv/bin/python benchmarks/export.py --generator=runs/<student> --teacher=runs/quickstart \
        --workdir=runs/bench_export [--num_samples=10000]

Exports --generator (the student) as gkd-export does, with FID on
--num_samples samples (the gkd-evaluate evaluator: the domain classifier's
features against the test split), and --teacher without FID, each into
<workdir>/{student,teacher} (replaced on every run). Prints, for each
variant, the student's file size and its ratio to fp32, its max/mean
absolute difference from the Keras student, its FID beside the Keras
student's, its LiteRT latency per image (one thread, batch 1 and batch 64;
median of repeated timed calls after warm-up) and the ratio of that latency
to the teacher's same variant; checks the targets (int8 at least 3.5×
smaller than fp32, FID within 10% of the Keras student's) and writes
`export_benchmark.json` in --workdir.
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

from tf_gkd.evaluation import evaluate  # noqa: E402
from tf_gkd.export import exporter  # noqa: E402
from tf_gkd.networks import io as model_io  # noqa: E402

flags.DEFINE_string("generator", None, "The student: a generator .keras file or run directory.")
flags.DEFINE_string("teacher", None, "The teacher, for the latency ratio: a generator .keras file or run directory.")
flags.DEFINE_string("workdir", "runs/bench_export", "Directory of the benchmark's exports and results.")
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data directory.")
flags.DEFINE_string("classifier_dir", "saved_models/classifiers", "Cache of the domain classifiers.")
flags.DEFINE_integer("num_samples", 10_000, "Samples scored for each FID.", lower_bound=2)
FLAGS = flags.FLAGS

# Targets of the export issue, for the student.
MIN_INT8_SIZE_RATIO = 3.5
MAX_FID_INCREASE = 0.10


def main(argv):
    del argv
    evaluator = evaluate.load_evaluator("fashion_mnist", FLAGS.classifier_dir, FLAGS.data_dir)
    student = exporter.export_generator(
        model_io.load_generator(FLAGS.generator),
        os.path.join(FLAGS.workdir, "student"),
        "student",
        overwrite=True,
        evaluator=evaluator,
        num_samples=FLAGS.num_samples,
    )
    teacher = exporter.export_generator(
        model_io.load_generator(FLAGS.teacher), os.path.join(FLAGS.workdir, "teacher"), "teacher", overwrite=True
    )

    fp32_size = student["tflite"]["fp32"]["size_bytes"]
    keras_fid = student["keras"]["fid"]
    rows = {}
    for variant, entry in student["tflite"].items():
        latency = entry["latency_ms_per_image"]
        teacher_latency = teacher["tflite"][variant]["latency_ms_per_image"]
        rows[variant] = {
            "size_bytes": entry["size_bytes"],
            "size_ratio_vs_fp32": fp32_size / entry["size_bytes"],
            "max_abs_diff": entry["max_abs_diff"],
            "mean_abs_diff": entry["mean_abs_diff"],
            "fid": entry["fid"],
            "fid_vs_keras": entry["fid"] / keras_fid,
            "ms_per_image_batch_1": latency["batch_1"],
            "ms_per_image_batch_64": latency["batch_64"],
            "teacher_ms_per_image_batch_1": teacher_latency["batch_1"],
            "teacher_ms_per_image_batch_64": teacher_latency["batch_64"],
            "latency_ratio_vs_teacher_batch_1": latency["batch_1"] / teacher_latency["batch_1"],
            "latency_ratio_vs_teacher_batch_64": latency["batch_64"] / teacher_latency["batch_64"],
            "ops": entry["ops"],
        }
    int8 = rows["int8"]
    targets = {
        "int8_size_ratio_at_least_3.5": int8["size_ratio_vs_fp32"] >= MIN_INT8_SIZE_RATIO,
        "int8_fid_within_10_percent": int8["fid"] <= (1 + MAX_FID_INCREASE) * keras_fid,
    }
    results = {
        "student": os.path.abspath(FLAGS.generator),
        "student_params": student["params"],
        "teacher": os.path.abspath(FLAGS.teacher),
        "teacher_params": teacher["params"],
        "keras_student_fid": keras_fid,
        "fid_setup": student["fid_setup"],
        "latency_threads": exporter.LATENCY_THREADS,
        "variants": rows,
        "targets_met": targets,
    }
    path = os.path.join(FLAGS.workdir, "export_benchmark.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=2)

    print(
        f"\nStudent {FLAGS.generator} ({student['params']:,} params) vs teacher {FLAGS.teacher} "
        f"({teacher['params']:,} params). FID: {FLAGS.num_samples} samples vs the fashion_mnist test split, "
        f"domain classifier features (test accuracy {evaluator.classifier.info['test_accuracy']:.4f}); "
        f"Keras student FID {keras_fid:.3f}. Latency: LiteRT, {exporter.LATENCY_THREADS} thread, ms per image."
    )
    print(
        f"{'variant':8s} {'bytes':>9s} {'x fp32':>6s} {'max abs':>8s} {'mean abs':>8s} {'FID':>7s} {'FID/K':>6s} "
        f"{'ms b1':>8s} {'ms b64':>8s} {'T ms b1':>8s} {'T ms b64':>8s} {'S/T b1':>7s} {'S/T b64':>7s}"
    )
    for variant, r in rows.items():
        print(
            f"{variant:8s} {r['size_bytes']:9d} {r['size_ratio_vs_fp32']:6.2f} {r['max_abs_diff']:8.3g} "
            f"{r['mean_abs_diff']:8.3g} {r['fid']:7.3f} {r['fid_vs_keras']:6.3f} {r['ms_per_image_batch_1']:8.4g} "
            f"{r['ms_per_image_batch_64']:8.4g} {r['teacher_ms_per_image_batch_1']:8.4g} "
            f"{r['teacher_ms_per_image_batch_64']:8.4g} {r['latency_ratio_vs_teacher_batch_1']:7.3g} "
            f"{r['latency_ratio_vs_teacher_batch_64']:7.3g}"
        )
    print(f"Operators (all variants, builtin only): {sorted({op for r in rows.values() for op in r['ops']})}")
    for target, met in targets.items():
        print(f"target {target}: {'met' if met else 'NOT met'}")
    logging.info("Wrote %s", path)


if __name__ == "__main__":
    flags.mark_flags_as_required(["generator", "teacher"])
    app.run(main)
