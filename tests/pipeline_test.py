"""gkd-pipeline: the plan of stages, --dry_run, a tiny end-to-end run, skipping done stages, a failing stage."""

import json
import os
import subprocess
import sys

import pytest

from tf_gkd import contract, pipeline
from tf_gkd.evaluation import classifier as classifier_lib
from tf_gkd.networks import factory
from tf_gkd.networks import io as model_io


def test_plan_orders_the_stages_and_wires_their_directories(tmp_path):
    stages = pipeline.plan(
        str(tmp_path),
        "t.cfg",
        [("10x", "a.cfg"), ("20x", "b.cfg")],
        baseline_flagfile="base.cfg",
        export="20x",
        train_args=["--strategy=mirrored"],
        data_args=["--data_dir=D"],
    )
    assert [s.name for s in stages] == [
        "teacher",
        "student 10x",
        "student 20x",
        "baseline 10x",
        "baseline 20x",
        "export 20x",
        "report",
    ]
    assert [s.binary for s in stages] == ["gkd-train"] + ["gkd-distill"] * 4 + ["gkd-export", "gkd-evaluate"]
    teacher = str(tmp_path / "teacher")
    assert stages[2].args == (
        f"--teacher={teacher}",
        "--flagfile=b.cfg",
        f"--workdir={tmp_path / 'students' / '20x'}",
        "--data_dir=D",
        "--strategy=mirrored",
    )
    assert "--baseline" in stages[3].args and stages[3].args.index("--flagfile=a.cfg") < stages[3].args.index(
        "--flagfile=base.cfg"
    )  # The baseline recipe overrides the student's optimiser flags.
    assert f"--generator={tmp_path / 'students' / '20x'}" in stages[5].args
    report = stages[6].args
    assert f"--generator=10x_scratch={tmp_path / 'baselines' / '10x'}" in report and "--teacher=teacher" in report
    assert not any(s.done() for s in stages)


def test_plan_without_baselines_or_export_and_bad_names(tmp_path):
    stages = pipeline.plan(str(tmp_path), "t.cfg", [("20x", "b.cfg")])
    assert [s.name for s in stages] == ["teacher", "student 20x", "report"]
    with pytest.raises(ValueError, match="--export='5x' names no student.*'20x'"):
        pipeline.plan(str(tmp_path), "t.cfg", [("20x", "b.cfg")], export="5x")
    assert pipeline.parse_named(["flags/distill_20x.cfg", "s=x.cfg"], "students") == [
        ("distill_20x", "flags/distill_20x.cfg"),
        ("s", "x.cfg"),
    ]
    with pytest.raises(ValueError, match=r"Two students are named \['a'\]"):
        pipeline.parse_named(["a=x.cfg", "a=y.cfg"], "students")


def test_plan_trains_each_student_and_baseline_once_per_seed(tmp_path):
    stages = pipeline.plan(
        str(tmp_path), "t.cfg", [("20x", "b.cfg")], baseline_flagfile="base.cfg", export="20x", train_seeds=[3, 4]
    )
    assert [s.name for s in stages] == [
        "teacher",
        "student 20x",
        "student 20x_seed4",
        "baseline 20x",
        "baseline 20x_seed4",
        "export 20x",
        "report",
    ]
    assert "--seed=3" in stages[1].args and "--seed=4" in stages[2].args and "--seed=4" in stages[4].args
    assert not any(arg.startswith("--seed") for arg in stages[0].args)  # One teacher.
    assert stages[2].args.index("--flagfile=b.cfg") < stages[2].args.index("--seed=4")  # The seed wins.
    report = stages[-1].args
    students = tmp_path / "students"
    assert f"--generator=20x={students / '20x'}" in report and f"--generator=20x={students / '20x_seed4'}" in report
    assert f"--generator=20x_scratch={tmp_path / 'baselines' / '20x_seed4'}" in report
    with pytest.raises(ValueError, match="seed is repeated"):
        pipeline.plan(str(tmp_path), "t.cfg", [("20x", "b.cfg")], train_seeds=[1, 1])


def test_a_training_stage_is_done_once_its_generator_file_exists(tmp_path):
    stage = pipeline.plan(str(tmp_path), "t.cfg", [("20x", "b.cfg")])[0]
    os.makedirs(tmp_path / "teacher" / "checkpoints")  # An interrupted run: not done.
    assert not stage.done()
    (tmp_path / "teacher" / "decoder.keras").write_text("")  # A VAE teacher's final model.
    assert stage.done()


def test_export_and_report_are_redone_when_their_arguments_change(tmp_path):
    def report_stage(students):
        return pipeline.plan(str(tmp_path), "t.cfg", students)[-1]

    stage = report_stage([("20x", "b.cfg")])
    os.makedirs(tmp_path / "report")
    for name in pipeline.REPORT_FILES:
        (tmp_path / "report" / name).write_text("{}")
    assert not stage.done()  # Outputs without a stamp: made by something else.
    stage.write_stamp()
    assert stage.done()
    assert not report_stage([("20x", "b.cfg"), ("10x", "a.cfg")]).done()  # One more student: redone.
    export = pipeline.plan(str(tmp_path), "t.cfg", [("20x", "b.cfg")], export="20x")[-2]
    assert "--overwrite" in export.args and export.stamp.startswith(str(tmp_path / "export" / "20x"))


# Run settings shared by the tiny teacher and student flagfiles.
TINY_RUN = """--batch_size=16
--train_steps=10
--steps_per_execution=5
--log_every=5
--sample_every=10
--checkpoint_every=10
--num_samples=16
"""
TEACHER = (
    """--model=gan
--generator_kind=dense
--discriminator_kind=dense
--generator_width=0.1
--discriminator_width=0.1
"""
    + TINY_RUN
)
STUDENT = (
    """--student_kind=dense
--student_width=0.05
"""
    + TINY_RUN
)
BASELINE = """--discriminator_kind=dense
--discriminator_width=0.1
--g_learning_rate=8e-4
"""


def run_tiny_pipeline(workdir, tmp_path, *args):
    """gkd-pipeline on the flagfiles teacher.cfg and student.cfg in `tmp_path`, exporting and scoring cheaply."""
    cmd = [
        sys.executable,
        "-m",
        "tf_gkd.bin.pipeline",
        f"--workdir={workdir}",
        f"--classifier_dir={tmp_path / 'classifiers'}",
        f"--teacher_flagfile={tmp_path / 'teacher.cfg'}",
        f"--students=tiny={tmp_path / 'student.cfg'}",
        "--export=tiny",
        "--export_args=--skip_fid",
        "--export_args=--qat_steps=20",
        "--evaluate_args=--num_samples=40",
        "--evaluate_args=--batch_size=20",
        "--evaluate_args=--latency_batch_sizes=1",
        "--evaluate_args=--latency_min_seconds=0.01",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_tiny_pipeline_end_to_end_then_skips_done_stages(tiny_data_dir, tmp_path):
    for name, text in (("teacher", TEACHER), ("student", STUDENT), ("baseline", BASELINE)):
        (tmp_path / f"{name}.cfg").write_text(text)
    # An untrained classifier in the cache: the report only needs one that loads.
    cache = tmp_path / "classifiers" / "fashion_mnist"
    model_io.save_model_atomic(factory.make_classifier(width=0.25), str(cache / classifier_lib.CLASSIFIER_FILE))
    (cache / classifier_lib.INFO_FILE).write_text(json.dumps({"dataset": "fashion_mnist", "test_accuracy": 0.1}))
    workdir = tmp_path / "pipe"

    def gkd_pipeline(*args):
        return run_tiny_pipeline(
            workdir, tmp_path, f"--data_dir={tiny_data_dir}", f"--baseline_flagfile={tmp_path / 'baseline.cfg'}", *args
        )

    dry = gkd_pipeline("--dry_run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("to do") == 5 and "done" not in dry.stdout
    assert not workdir.exists()  # A dry run writes nothing.

    result = gkd_pipeline()
    assert result.returncode == 0, result.stderr[-3000:]
    assert (workdir / "teacher" / "generator.keras").exists()
    assert (workdir / "students" / "tiny" / "student.keras").exists()
    assert (workdir / "baselines" / "tiny" / "generator.keras").exists()
    assert (workdir / "export" / "tiny" / "model_int8.tflite").exists()
    metrics = json.loads((workdir / "report" / "metrics.json").read_text())
    roles = {e["name"]: e["role"] for e in metrics["entries"]}
    assert roles == {"teacher": "teacher", "tiny": "student", "tiny_scratch": "baseline"}
    assert f"Report: {workdir / 'report' / 'report.md'}" in result.stdout
    assert f"Exported student: {workdir / 'export' / 'tiny'}" in result.stdout

    again = gkd_pipeline()
    assert again.returncode == 0, again.stderr[-3000:]
    assert "[teacher]" not in again.stdout and "total" in again.stdout  # Nothing re-ran.
    assert gkd_pipeline("--dry_run").stdout.count("done") == 5


@pytest.mark.slow
def test_tiny_colour_pipeline_at_32x32x3_class_conditional(shapes_data_dir, tmp_path):
    conv = "--generator_kind=conv\n--discriminator_kind=conv\n--generator_width=0.1\n--discriminator_width=0.1\n"
    (tmp_path / "teacher.cfg").write_text("--model=gan\n" + conv + TINY_RUN)
    (tmp_path / "student.cfg").write_text("--student_kind=conv4\n--student_width=0.05\n--adversarial_weight=0.5\n"
                                          "--discriminator_width=0.1\n" + TINY_RUN)  # fmt: skip
    workdir = tmp_path / "pipe"
    result = run_tiny_pipeline(
        workdir,
        tmp_path,
        "--dataset=gkd_shapes/tiny",
        f"--data_dir={shapes_data_dir}",
        "--baseline_flagfile=",
        "--train_args=--conditional",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for path in ("teacher/generator.keras", "students/tiny/student.keras"):
        generator = model_io.load_generator(str(workdir / path))
        assert model_io.image_shape(generator) == (32, 32, 3) and contract.num_classes(generator) == 10
    report = json.loads((workdir / "export" / "tiny" / "export_report.json").read_text())
    assert (
        "label float32 [N, 10] (one-hot) -> images uint8 [N, 32, 32, 3]"
        in (report["saved_model"]["signatures"]["serving_uint8"])
    )
    assert set(report["tflite"]) == {"fp32", "fp16", "dynamic", "int8", "int8_qat"}
    for entry in report["tflite"].values():  # Each matched the Keras model on the verification inputs.
        assert entry["max_abs_diff"] <= entry["tolerance"]["max_abs_diff"]
        assert entry["label_shape"] == [None, 10]
    metrics = json.loads((workdir / "report" / "metrics.json").read_text())
    assert {e["name"] for e in metrics["entries"]} == {"teacher", "tiny"}
    for entry in metrics["entries"]:
        assert entry["quality"]["fid"]["mean"] >= 0 and 0 <= entry["quality"]["label_accuracy"]["mean"] <= 1
        assert entry["quality"]["fid_class_worst"]["mean"] >= entry["quality"]["fid_class_mean"]["mean"]
    assert "Class by class" in (workdir / "report" / "report.md").read_text()
    assert (workdir / "report" / "classes.png").exists()  # One row per class of the teacher and the student.
    assert "gkd_shapes_tiny (trained on labels)" in metrics["settings"]["extractor"]
    # The domain classifier of the data was trained on its labels and cached under the data's key.
    info = json.loads((tmp_path / "classifiers" / "gkd_shapes_tiny" / "info.json").read_text())
    assert info["task"] == "labels"


@pytest.mark.slow
def test_a_failing_stage_stops_the_pipeline_with_its_name(tiny_data_dir, tmp_path):
    (tmp_path / "teacher.cfg").write_text(TEACHER + "--loss=no_such_loss\n")
    (tmp_path / "student.cfg").write_text(STUDENT)
    cmd = [
        sys.executable,
        "-m",
        "tf_gkd.bin.pipeline",
        f"--workdir={tmp_path / 'pipe'}",
        f"--data_dir={tiny_data_dir}",
        f"--teacher_flagfile={tmp_path / 'teacher.cfg'}",
        f"--students=tiny={tmp_path / 'student.cfg'}",
        "--baseline_flagfile=",
        "--export=",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "Stage 'teacher' failed" in result.stderr and "no_such_loss" in result.stderr
    assert not (tmp_path / "pipe" / "students").exists()


def test_a_missing_flagfile_is_a_usage_error(tmp_path):
    cmd = [sys.executable, "-m", "tf_gkd.bin.pipeline", f"--workdir={tmp_path}", "--teacher_flagfile=nope.cfg"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "The flagfile of teacher, 'nope.cfg', does not exist" in result.stderr
