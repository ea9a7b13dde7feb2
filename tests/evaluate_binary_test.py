"""gkd-evaluate end to end on a tiny generator, classifier and dataset, by subprocess.

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
    model_io.save_model_atomic(classifier_lib.make_classifier(width=0.25), str(cache / classifier_lib.CLASSIFIER_FILE))
    (cache / classifier_lib.INFO_FILE).write_text(json.dumps({"dataset": "fashion_mnist", "test_accuracy": 0.1}))

    def run(*args):
        cmd = [
            sys.executable, "-m", "tf_gkd.bin.evaluate", f"--data_dir={tiny_data_dir}",
            f"--classifier_dir={classifier_dir}", "--num_samples=50", "--batch_size=20", *args,
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
    for key in ("fid", "kid", "kid_std", "classifier_score", "classifier_test_accuracy"):
        assert np.isfinite(scores[key]), key
    assert scores["extractor"] == "tf_gkd domain classifier fashion_mnist"
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
