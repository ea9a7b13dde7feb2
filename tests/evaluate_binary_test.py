"""gkd-evaluate end to end on tiny generators, classifier and dataset, by subprocess: one generator, and a report.

By subprocess, not in-process: importing two binaries into one process would
define their common flags (--data_dir, --seed, ...) twice.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from tf_gkd.evaluation import classifier as classifier_lib
from tf_gkd.networks import factory
from tf_gkd.networks import io as model_io

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gkd_evaluate(tiny_data_dir, tmp_path_factory):
    """Runs gkd-evaluate on the tiny dataset with a tiny cached classifier; returns the CompletedProcess."""
    # An untrained classifier in the cache: the binary only needs one that loads (training is tested elsewhere).
    classifier_dir = tmp_path_factory.mktemp("classifiers")
    cache = classifier_dir / "fashion_mnist"
    model_io.save_model_atomic(factory.make_classifier(width=0.25), str(cache / classifier_lib.CLASSIFIER_FILE))
    (cache / classifier_lib.INFO_FILE).write_text(json.dumps({"dataset": "fashion_mnist", "test_accuracy": 0.1}))

    def run(*args):
        cmd = [
            sys.executable,
            "-m",
            "tf_gkd.bin.evaluate",
            f"--data_dir={tiny_data_dir}",
            f"--classifier_dir={classifier_dir}",
            "--num_samples=50",
            "--batch_size=20",
            *args,
        ]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300)

    return run


def test_scores_a_run_directory(gkd_evaluate, tmp_path):
    run = tmp_path / "run"
    generator = factory.make_generator("dense", width=0.1)
    model_io.save_model_atomic(generator, str(run / "generator.keras"))
    result = gkd_evaluate(f"--generator={run}", "--seed=3")
    assert result.returncode == 0, result.stderr

    scores = json.loads((run / "eval.json").read_text())
    for key in ("fid", "kid", "kid_std", "classifier_score", "classifier_test_accuracy", "precision", "recall"):
        assert np.isfinite(scores[key]), key
    assert scores["precision_recall_k"] == 3
    assert scores["extractor"] == "tf_gkd domain classifier of fashion_mnist (trained on labels), its `features` layer"
    assert scores["real_split"] == "test" and scores["num_real"] == 64
    assert scores["num_samples"] == 50 and scores["seed"] == 3 and scores["z_dim"] == 100
    assert scores["params"] == model_io.count_params(generator)
    assert "fid" in result.stdout and str(run / "eval.json") in result.stdout


def test_a_bad_generator_path_is_named_and_exits_1(gkd_evaluate, tmp_path):
    missing = tmp_path / "nope.keras"
    result = gkd_evaluate(f"--generator={missing}")
    assert result.returncode == 1
    assert f"No generator at {missing}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "nope_eval.json").exists()


def test_compares_generators_in_a_report_and_exits_1_for_a_bad_one(gkd_evaluate, tmp_path):
    teacher, student = tmp_path / "teacher", tmp_path / "student"
    model_io.save_model_atomic(factory.make_generator("dense", width=0.2), str(teacher / "generator.keras"))
    (teacher / "config.json").write_text(json.dumps({"model": "gan"}))
    model_io.save_model_atomic(factory.make_generator("dense", width=0.1), str(student / "student.keras"))
    (student / "config.json").write_text(json.dumps({"model": "distill", "teacher": str(teacher)}))
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"garbage")
    output_dir = tmp_path / "report"
    result = gkd_evaluate(
        f"--generator={teacher}",
        f"--generator=s={student},{broken}",
        f"--output_dir={output_dir}",
        "--seeds=0,1",
        "--latency_batch_sizes=1,8",
        "--latency_min_seconds=0.01",
    )
    assert result.returncode == 1, result.stderr
    assert f"{broken} is not a valid .keras archive" in result.stderr
    assert "Traceback" not in result.stderr

    metrics = json.loads((output_dir / "metrics.json").read_text())
    assert [(e["name"], e["role"]) for e in metrics["entries"]] == [("teacher", "teacher"), ("s", "student")]
    assert [f["name"] for f in metrics["failed"]] == ["broken"]
    student_metrics = metrics["entries"][1]
    assert len(student_metrics["quality"]["fid"]["values"]) == 2
    assert np.isfinite(student_metrics["fidelity"]["psnr"]["mean"])
    assert student_metrics["vs_teacher"]["params"]["value"] > 1
    for name in ("report.md", "samples.png", "pareto_size.png", "pareto_latency.png"):
        assert (output_dir / name).exists(), name
    assert not (teacher / "eval.json").exists()  # A comparison writes its report only.
    assert "FAILED broken" in result.stdout and str(output_dir / "report.md") in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--generator=a", "--generator=b"], "pass --output_dir"),
        (["--generator=a", "--seeds=0,1"], "pass --output_dir"),
        (["--generator=a", "--seeds=x"], "--seeds must be a comma-separated list of integers"),
    ],
)
def test_usage_errors(gkd_evaluate, args, message):
    result = gkd_evaluate(*args)
    assert result.returncode == 1 and message in result.stderr


def test_help_of_the_console_script_explains_the_exit_status():
    # As the gkd-evaluate wrapper runs it: __main__ is not the module with the docstring and flags.
    cmd = [sys.executable, "-c", "from tf_gkd.bin.evaluate import run; run()", "--help"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)  # absl's --help exits with 1.
    assert "the exit status is then 1" in result.stdout.replace("\n", " ")
    assert "--output_dir" in result.stdout and "--seeds" in result.stdout
