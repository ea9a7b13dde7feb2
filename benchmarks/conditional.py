"""Class-conditional teacher and 20x student: label accuracy and FID, against the unconditional teacher.

    .venv/bin/python benchmarks/conditional.py --workdir=runs/conditional
        [--reference_teacher=runs/quickstart/teacher] [--seeds=0,1,2]

Runs `gkd-pipeline --flagfile=flags/pipeline_conditional.cfg --workdir=<workdir>` (stages already
done are skipped): a conditional teacher, its conditional 20x student, the student's twin trained
from scratch, the int8 export of the student. Without --reference_teacher, the unconditional
quickstart teacher (flags/gan_quickstart.cfg) is trained too, in <workdir>/reference_teacher.
Then one gkd-evaluate scores all four on the same latents into <workdir>/bench_report, and the
benchmark prints, with the targets:

- conditional teacher: label accuracy (the domain classifier's agreement with the class asked
  for) ≥ 0.85, and FID ≤ 1.1× the unconditional teacher's;
- conditional 20x student: label accuracy within 0.02 of its teacher's, FID ≤ 1.1× its teacher's;
- the student's int8 TFLite file: label accuracy within 0.01 of its float Keras model (both from
  the export report, on the same samples).

The table goes to <workdir>/conditional.json too.
"""

import json
import os
import subprocess
import sys

from absl import app, flags

from tf_gkd import rundir

import runs as runs_lib  # (benchmarks/runs.py)

flags.DEFINE_string("workdir", "runs/conditional", "The conditional pipeline's directory.")
flags.DEFINE_string(
    "reference_teacher", None, "Unconditional teacher run (default: train flags/gan_quickstart.cfg in --workdir)."
)
flags.DEFINE_list("seeds", ["0"], "Latent seeds of the scores (mean over them).")
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data directory.")
flags.DEFINE_string("classifier_dir", "saved_models/classifiers", "Cache of the domain classifiers.")
flags.DEFINE_integer("num_samples", 10_000, "Samples scored per generator and seed.")
FLAGS = flags.FLAGS

REPORT_DIR = "bench_report"


def _run(args):
    command = [sys.executable, "-c", args[0], *args[1:]]
    if FLAGS.data_dir:
        command.append(f"--data_dir={FLAGS.data_dir}")
    subprocess.run(command, check=True, cwd=runs_lib.REPO)


def main(argv):
    del argv
    workdir = FLAGS.workdir
    reference = FLAGS.reference_teacher or os.path.join(workdir, "reference_teacher")
    if not FLAGS.reference_teacher:
        runs_lib.timed_run(
            "train", reference, ["--flagfile=flags/gan_quickstart.cfg"], rundir.GENERATOR_FILES, FLAGS.data_dir
        )
    _run(
        [
            "from tf_gkd.bin.pipeline import run; run()",
            "--flagfile=flags/pipeline_conditional.cfg",
            f"--workdir={workdir}",
            f"--classifier_dir={FLAGS.classifier_dir}",
        ]
    )
    report_dir = os.path.join(workdir, REPORT_DIR)
    generators = {
        "unconditional": reference,
        "teacher": os.path.join(workdir, "teacher"),
        "20x": os.path.join(workdir, "students", "20x"),
        "20x_scratch": os.path.join(workdir, "baselines", "20x"),
    }
    _run(
        [
            "from tf_gkd.bin.evaluate import run; run()",
            *(f"--generator={name}={path}" for name, path in generators.items()),
            "--teacher=teacher",
            f"--output_dir={report_dir}",
            f"--classifier_dir={FLAGS.classifier_dir}",
            f"--num_samples={FLAGS.num_samples}",
            f"--seeds={','.join(FLAGS.seeds)}",
            "--latency_batch_sizes=1",
        ]
    )
    with open(os.path.join(report_dir, "metrics.json")) as f:
        entries = {e["name"]: e for e in json.load(f)["entries"]}
    with open(os.path.join(workdir, "export", "20x", "export_report.json")) as f:
        export = json.load(f)

    def mean(name, metric):
        return entries[name]["quality"][metric]["mean"] if metric in entries[name]["quality"] else None

    teacher_accuracy, student_accuracy = mean("teacher", "label_accuracy"), mean("20x", "label_accuracy")
    keras_accuracy = export["keras"].get("label_accuracy")
    int8_accuracy = export["tflite"].get("int8", {}).get("label_accuracy")
    table = {
        name: {metric: mean(name, metric) for metric in ("fid", "recall", "label_accuracy", "fid_class_mean")}
        for name in generators
    }
    checks = {
        "teacher label accuracy >= 0.85": teacher_accuracy >= 0.85,
        "teacher FID <= 1.1x the unconditional teacher's": mean("teacher", "fid") <= 1.1 * mean("unconditional", "fid"),
        "20x label accuracy within 0.02 of the teacher's": abs(student_accuracy - teacher_accuracy) <= 0.02,
        "20x FID <= 1.1x the teacher's": mean("20x", "fid") <= 1.1 * mean("teacher", "fid"),
        "20x int8 label accuracy within 0.01 of its float model": int8_accuracy is not None
        and abs(int8_accuracy - keras_accuracy) <= 0.01,
    }
    result = {
        "table": table,
        "export": {"keras_label_accuracy": keras_accuracy, "int8_label_accuracy": int8_accuracy},
        "checks": checks,
    }
    with open(os.path.join(workdir, "conditional.json"), "w") as f:
        json.dump(result, f, indent=2)

    print(f"\nScores over seeds {', '.join(FLAGS.seeds)}; report: {report_dir}/report.md")
    print(f"{'model':14s} {'FID':>8s} {'recall':>7s} {'label acc':>9s} {'class FID':>9s}")
    for name, row in table.items():
        cells = [f"{row[m]:.3f}" if row[m] is not None else "—" for m in ("recall", "label_accuracy")]
        class_fid = f"{row['fid_class_mean']:.2f}" if row["fid_class_mean"] is not None else "—"
        print(f"{name:14s} {row['fid']:8.2f} {cells[0]:>7s} {cells[1]:>9s} {class_fid:>9s}")
    print(f"20x export: label accuracy Keras {keras_accuracy:.4f}, int8 {int8_accuracy:.4f}")
    for check, ok in checks.items():
        print(f"{'met ' if ok else 'NOT '} {check}")


if __name__ == "__main__":
    app.run(main)
