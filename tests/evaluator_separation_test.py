"""The evaluation classifier (the one FID is scored with) is never a training signal.

Training a teacher or distilling a student must never load it, directly or
through distillation; otherwise FID would measure how well the student fooled
its own judge.
"""

import os
import subprocess
import sys

import keras
import pytest

from tf_gkd.evaluation import classifier as classifier_lib
from tf_gkd.evaluation import evaluate
from tf_gkd.runs import config as config_lib
from tf_gkd.runs import train as runs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("module", ["tf_gkd.bin.train", "tf_gkd.bin.distill"])
def test_training_binaries_do_not_import_the_evaluation(module):
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.startswith('tf_gkd.evaluation')))"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_training_and_distillation_never_load_the_classifier(tiny_data_dir, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("training loaded the evaluation classifier")

    monkeypatch.setattr(classifier_lib, "load_or_train", refuse)
    monkeypatch.setattr(classifier_lib, "DomainClassifier", refuse)
    monkeypatch.setattr(evaluate, "Evaluator", refuse)
    loaded = []
    load_model = keras.saving.load_model
    monkeypatch.setattr(
        keras.saving, "load_model", lambda path, *a, **k: loaded.append(path) or load_model(path, *a, **k)
    )
    tiny = dict(
        data_dir=tiny_data_dir,
        z_dim=8,
        generator_kind="dense",
        generator_width=0.1,
        discriminator_kind="dense",
        discriminator_width=0.1,
        batch_size=8,
        train_steps=2,
        log_every=2,
        sample_every=2,
        checkpoint_every=2,
        num_samples=4,
    )
    teacher = str(tmp_path / "teacher")
    runs.train(config_lib.TrainConfig(**tiny), teacher)
    # Every term that could carry a training signal: pixels, the adversary (from the teacher's discriminator),
    # its features, the distribution term, scheduled weights, R1.
    student = config_lib.TrainConfig(
        **tiny,
        model="distill",
        teacher=teacher,
        adversarial_weight=0.1,
        feature_weight=0.1,
        init_discriminator=True,
        pixel_weight_schedule="ramp_down:0:1",
        adversarial_weight_schedule="ramp_up:0:1",
        r1_weight=1.0,
    )
    runs.train(student, str(tmp_path / "student"))
    assert loaded and not any(classifier_lib.CLASSIFIER_FILE in str(path) for path in loaded)
