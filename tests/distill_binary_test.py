"""gkd-distill end to end: the student run directory, resume, offline mode, baseline, bad teachers."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tf_gkd.networks import factory
from tf_gkd.networks import io as model_io
from tf_gkd.runs import config as config_lib
from tf_gkd.runs import teacher as teacher_lib
from tf_gkd.runs import train as runs

pytestmark = pytest.mark.slow

STUDENT = [
    "--student_kind=dense",
    "--student_width=0.1",
    "--discriminator_kind=dense",
    "--discriminator_width=0.25",
    "--batch_size=16",
    "--steps_per_execution=5",
    "--num_samples=16",
    "--log_every=5",
    "--sample_every=10",
    "--checkpoint_every=10",
]


@pytest.fixture(scope="module")
def teacher_run(tiny_data_dir, tmp_path_factory):
    """A finished tiny GAN teacher run (z_dim 16)."""
    workdir = str(tmp_path_factory.mktemp("teacher"))
    config = config_lib.TrainConfig(
        data_dir=tiny_data_dir,
        z_dim=16,
        generator_kind="dense",
        discriminator_kind="dense",
        generator_width=0.5,
        discriminator_width=0.25,
        batch_size=16,
        train_steps=10,
        log_every=5,
        sample_every=10,
        checkpoint_every=10,
        num_samples=4,
    )
    runs.train(config, workdir)
    return workdir


def gkd_distill(workdir, data_dir, teacher, *args):
    cmd = [
        sys.executable,
        "-c",
        "from tf_gkd.bin.distill import run; run()",
        f"--workdir={workdir}",
        f"--data_dir={data_dir}",
        f"--teacher={teacher}",
        *STUDENT,
        *args,
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def tensorboard_tags(workdir):
    events = [f for f in os.listdir(os.path.join(workdir, "tb")) if f.startswith("events.out.tfevents")]
    return {
        v.tag
        for name in events
        for e in tf.compat.v1.train.summary_iterator(os.path.join(workdir, "tb", name))
        for v in e.summary.value
    }


def test_student_run_directory_contract_and_resume(tiny_data_dir, teacher_run, tmp_path):
    workdir = tmp_path / "student"
    result = gkd_distill(
        workdir, tiny_data_dir, teacher_run, "--train_steps=10", "--adversarial_weight=0.1", "--feature_weight=1"
    )
    assert result.returncode == 0, result.stderr

    saved = json.loads((workdir / "config.json").read_text())
    assert saved["model"] == "distill" and saved["teacher"] == teacher_run
    assert saved["z_dim"] == 16  # The teacher's, not the flag's default.
    assert saved["generator_width"] == 0.1  # --student_width.
    assert {
        "train/pixel",
        "train/psnr",
        "train/adversarial",
        "train/feature",
        "train/d_loss",
        "teacher_vs_student",
        "samples",
    } <= tensorboard_tags(str(workdir))
    assert "teacher_vs_student_step_0000010.png" in os.listdir(workdir / "samples")

    student = model_io.load_generator(str(workdir))  # A run directory resolves to its student.keras.
    teacher = model_io.load_generator(teacher_run)
    assert student.count_params() < teacher.count_params() / 3
    images = np.asarray(student(np.zeros((2, 16), np.float32)))
    assert images.shape == (2, 28, 28, 1) and np.all(np.abs(images) <= 1)

    again = gkd_distill(
        workdir, tiny_data_dir, teacher_run, "--train_steps=20", "--adversarial_weight=0.1", "--feature_weight=1"
    )
    assert again.returncode == 0, again.stderr
    assert "(step 10)" in again.stderr
    changed = gkd_distill(
        workdir, tiny_data_dir, teacher_run, "--train_steps=30", "--adversarial_weight=0.5", "--feature_weight=1"
    )
    assert changed.returncode == 1 and "adversarial_weight: 0.1 in the run, 0.5 now" in changed.stderr


def test_offline_distillation_trains_from_pairs(tiny_data_dir, teacher_run, tmp_path):
    workdir = tmp_path / "offline"
    result = gkd_distill(
        workdir, tiny_data_dir, teacher_run, "--train_steps=10", "--offline_pairs=48", "--adversarial_weight=0"
    )
    assert result.returncode == 0, result.stderr
    assert (workdir / "pairs.tfrecord").exists() and (workdir / "student.keras").exists()
    assert sum(1 for _ in tf.data.TFRecordDataset(str(workdir / "pairs.tfrecord"))) == 48


def test_baseline_trains_the_student_architecture_from_scratch(tiny_data_dir, teacher_run, tmp_path):
    workdir = tmp_path / "baseline"
    result = gkd_distill(workdir, tiny_data_dir, teacher_run, "--train_steps=10", "--baseline")
    assert result.returncode == 0, result.stderr
    saved = json.loads((workdir / "config.json").read_text())
    assert saved["model"] == "gan" and saved["generator_width"] == 0.1 and saved["dataset"] == "fashion_mnist"
    assert (workdir / "generator.keras").exists()


def test_bad_teachers_fail_before_training(tiny_data_dir, teacher_run, tmp_path):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    shutil.copy(os.path.join(teacher_run, "config.json"), unfinished)
    other_dataset = tmp_path / "mnist_teacher"
    shutil.copytree(teacher_run, other_dataset)
    config = json.loads((other_dataset / "config.json").read_text())
    (other_dataset / "config.json").write_text(json.dumps({**config, "dataset": "mnist"}))
    cases = [
        (tmp_path / "missing", "is not a directory"),
        (tmp_path, "has no config.json"),
        (unfinished, "If its training is unfinished, finish it first"),
        (other_dataset, "was trained on 'mnist', not 'fashion_mnist'"),
    ]
    for teacher, message in cases:
        config = config_lib.TrainConfig(model="distill", teacher=str(teacher), data_dir=tiny_data_dir)
        workdir = tmp_path / f"student_of_{teacher.name}"
        with pytest.raises(teacher_lib.TeacherError, match=message) as error:
            runs.train(config, str(workdir))
        assert str(teacher) in str(error.value)
        assert not workdir.exists()  # Nothing written: no config.json, no checkpoint.


def test_a_teacher_of_other_image_shapes_fails_before_training(tiny_data_dir, teacher_run, tmp_path):
    config = config_lib.TrainConfig(model="distill", teacher=teacher_run, data_dir=tiny_data_dir, image_size=32)
    workdir = tmp_path / "student"
    with pytest.raises(teacher_lib.TeacherError, match="makes 28x28x1 images, the fashion_mnist data here is 32x32x1"):
        runs.train(config, str(workdir))
    assert not workdir.exists()


def test_an_image_size_the_networks_cannot_have_fails_before_training(tiny_data_dir, tmp_path):
    config = config_lib.TrainConfig(data_dir=tiny_data_dir, image_size=30)
    workdir = tmp_path / "teacher"
    with pytest.raises(config_lib.ConfigError, match="fashion_mnist: .*Received: image size 30") as error:
        runs.train(config, str(workdir))
    assert error.value.field == "image_size"
    assert not workdir.exists()


def test_a_teacher_breaking_the_generator_contract_is_named(tiny_data_dir, teacher_run, tmp_path):
    teacher = tmp_path / "wrong_shape"
    shutil.copytree(teacher_run, teacher)
    model_io.save_model_atomic(factory.make_discriminator("dense", width=0.1), str(teacher / "generator.keras"))
    result = gkd_distill(tmp_path / "student", tiny_data_dir, teacher, "--train_steps=10")
    assert result.returncode == 1
    assert f"{teacher}/generator.keras: a generator takes z [N, z_dim]" in result.stderr
    assert not (tmp_path / "student").exists()


def test_init_discriminator_needs_a_teacher_discriminator(tiny_data_dir, teacher_run, tmp_path):
    teacher = tmp_path / "no_discriminator"
    shutil.copytree(teacher_run, teacher)
    os.remove(teacher / "discriminator.keras")
    config = config_lib.TrainConfig(
        model="distill",
        teacher=str(teacher),
        data_dir=tiny_data_dir,
        init_discriminator=True,
        generator_kind="dense",
        discriminator_kind="dense",
        batch_size=16,
        num_samples=4,
    )
    with pytest.raises(teacher_lib.TeacherError, match="has no discriminator.keras to start from"):
        runs.train(config, str(tmp_path / "student"))
    assert not (tmp_path / "student").exists()


def test_student_started_from_the_teacher(teacher_run):
    # The teacher is a dense generator at width 0.5 (64-unit hidden layers); the student, at 0.25,
    # starts as its 32 units of largest norm per layer.
    config = config_lib.TrainConfig(
        model="distill",
        teacher=teacher_run,
        student_init="teacher",
        z_dim=16,
        generator_kind="dense",
        generator_width=0.25,
    )
    teacher = teacher_lib.load_teacher(teacher_run, config.dataset)
    model = runs.build_distiller(config, teacher)
    kernel = teacher.generator.get_layer("dense_0").get_weights()[0]
    kept = np.sort(np.argsort(-np.abs(kernel).sum(0))[:32])
    for student in (model.student, model.ema_student):
        np.testing.assert_array_equal(student.get_layer("dense_0").get_weights()[0], kernel[:, kept])


def test_student_init_from_another_architecture_is_refused(tiny_data_dir, teacher_run, tmp_path):
    result = gkd_distill(
        tmp_path / "student", tiny_data_dir, teacher_run, "--student_init=teacher", "--student_kind=conv4"
    )
    assert result.returncode == 1
    assert "--student_init=teacher needs a student of the teacher's kind and depth" in result.stderr
    assert "generator_kind='dense'" in result.stderr
    assert not (tmp_path / "student").exists()
