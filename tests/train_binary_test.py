"""gkd-train end to end: outputs, resume after SIGKILL, Ctrl-C, a locked run, NaN guard, bad flags."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_gkd import contract, errors, files, precision
from tf_gkd.runs import config as config_lib
from tf_gkd.runs import train as runs
from tf_gkd.training import callbacks, loop

pytestmark = pytest.mark.slow

TINY = [
    "--generator_kind=dense",
    "--discriminator_kind=dense",
    "--generator_width=0.25",
    "--discriminator_width=0.25",
    "--batch_size=16",
    "--steps_per_execution=5",
    "--num_samples=16",
]


def gkd_train(workdir, data_dir, *args, wait=True):
    cmd = [sys.executable, "-m", "tf_gkd.bin.train", f"--workdir={workdir}", f"--data_dir={data_dir}", *TINY, *args]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def latest_step(workdir):
    path = tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints"))
    return int(path.rsplit("-", 1)[1]) if path else None


def start_and_wait_for_checkpoint(workdir, data_dir, args, step):
    """A gkd-train process, once it has checkpointed `step` or later."""
    process = gkd_train(workdir, data_dir, *args, wait=False)
    deadline = time.time() + 120
    while latest_step(workdir) is None or latest_step(workdir) < step:
        assert process.poll() is None, process.stdout.read()
        assert time.time() < deadline, "no checkpoint written in time"
        time.sleep(0.05)
    return process


def test_run_directory_contract(tiny_data_dir, tmp_path):
    workdir = tmp_path / "run"
    result = gkd_train(
        workdir, tiny_data_dir, "--train_steps=20", "--log_every=5", "--sample_every=10", "--checkpoint_every=10"
    )
    assert result.returncode == 0, result.stdout + result.stderr

    saved = json.loads((workdir / "config.json").read_text())
    assert saved["train_steps"] == 20 and saved["generator_kind"] == "dense" and saved["data_dir"] == tiny_data_dir
    assert saved["mixed_precision"] == precision.resolve("auto")  # What auto chose on this machine.
    assert latest_step(str(workdir)) == 20
    assert sorted(os.listdir(workdir / "samples")) == ["step_0000000.png", "step_0000010.png", "step_0000020.png"]
    events = [f for f in os.listdir(workdir / "tb") if f.startswith("events.out.tfevents")]
    assert events
    tags = {
        v.tag for e in tf.compat.v1.train.summary_iterator(str(workdir / "tb" / events[0])) for v in e.summary.value
    }
    assert {"train/d_loss", "train/g_loss", "samples"} <= tags

    generator = keras.saving.load_model(workdir / "generator.keras", safe_mode=True)
    images = np.asarray(generator(np.zeros((3, 100), "float32")))
    assert images.shape == (3, 28, 28, 1) and np.all(np.abs(images) <= 1)
    discriminator = keras.saving.load_model(workdir / "discriminator.keras", safe_mode=True)
    assert discriminator(images).shape == (3, 1)

    # A complete run is not retrained; a longer --train_steps extends it.
    again = gkd_train(workdir, tiny_data_dir, "--train_steps=30", "--checkpoint_every=10")
    assert again.returncode == 0, again.stderr
    assert "Resumed from" in again.stderr and latest_step(str(workdir)) == 30


def test_resume_after_sigkill_loses_at_most_one_interval(tiny_data_dir, tmp_path):
    workdir = str(tmp_path / "run")
    args = ["--train_steps=3000", "--checkpoint_every=10", "--log_every=10", "--sample_every=1000"]
    process = start_and_wait_for_checkpoint(workdir, tiny_data_dir, args, 30)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved_step = latest_step(workdir)
    assert 30 <= saved_step < 3000

    # Resume and finish 20 steps later.
    result = gkd_train(workdir, tiny_data_dir, *args[1:], f"--train_steps={saved_step + 20}")
    assert result.returncode == 0, result.stderr
    assert f"(step {saved_step})" in result.stderr
    assert latest_step(workdir) == saved_step + 20


def test_changed_configuration_is_refused(tiny_data_dir, tmp_path):
    workdir = tmp_path / "run"
    assert (
        gkd_train(
            workdir, tiny_data_dir, "--train_steps=5", "--log_every=5", "--sample_every=5", "--checkpoint_every=5"
        ).returncode
        == 0
    )
    before = sorted(os.listdir(workdir / "checkpoints"))
    result = gkd_train(workdir, tiny_data_dir, "--train_steps=10", "--loss=hinge")
    assert result.returncode == 1
    assert "loss: 'non_saturating' in the run, 'hinge' now" in result.stderr
    assert sorted(os.listdir(workdir / "checkpoints")) == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["--loss=least_squares"], "--loss"),
        (["--generator_width=-1"], "generator_width must be positive"),
        (["--batch_size=0"], "--batch_size"),
        (["--train_steps=12", "--steps_per_execution=5"], "multiple of steps_per_execution"),
    ],
)
def test_bad_flags_are_usage_errors(tiny_data_dir, tmp_path, args, message):
    result = gkd_train(tmp_path / "run", tiny_data_dir, *args)
    assert result.returncode != 0
    assert message in result.stderr
    assert not (tmp_path / "run").exists()


def test_missing_workdir_is_a_usage_error():
    result = subprocess.run([sys.executable, "-m", "tf_gkd.bin.train"], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "--workdir" in result.stderr


def test_missing_data_fails_fast_with_instructions(tmp_path):
    start = time.time()
    result = gkd_train(tmp_path / "run", str(tmp_path / "empty"), f"--raw_data_dir={tmp_path / 'nothing'}")
    assert result.returncode == 1
    assert "dataset-fashion-mnist" in result.stderr
    assert time.time() - start < 60


def test_nan_loss_stops_training_and_keeps_last_checkpoint(tiny_gan_config, tmp_path):
    workdir = str(tmp_path / "run")
    config = tiny_gan_config(steps_per_execution=1, sample_every=5)
    runs.train(config, workdir)
    checkpoint_files = {
        f: os.path.getmtime(os.path.join(workdir, "checkpoints", f))
        for f in os.listdir(os.path.join(workdir, "checkpoints"))
    }

    longer = config_lib.TrainConfig(**{**config.__dict__, "train_steps": 20})
    model = runs.build_gan(longer, contract.DEFAULT_IMAGE_SHAPE)
    nan_images = np.full((64, 28, 28, 1), np.nan, np.float32)
    make_dataset = lambda seed: tf.data.Dataset.from_tensors((nan_images[:8], np.zeros(8))).repeat()  # noqa: E731
    with pytest.raises(callbacks.NonFiniteLossError, match="last good checkpoint"):
        loop.fit(model, make_dataset, longer, workdir, final_models={})
    assert latest_step(workdir) == 10
    assert checkpoint_files == {
        f: os.path.getmtime(os.path.join(workdir, "checkpoints", f))
        for f in os.listdir(os.path.join(workdir, "checkpoints"))
    }


class _CtrlCAt(keras.callbacks.Callback):
    """Sends this process SIGINT at the end of one step, as a user's Ctrl-C."""

    def __init__(self, batch):
        super().__init__()
        self.batch = batch

    def on_train_batch_end(self, batch, logs=None):
        if batch == self.batch:
            os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_stops_training_after_the_current_step_and_restores_the_handler(tiny_gan_config, tmp_path):
    config = tiny_gan_config(steps_per_execution=1, train_steps=50, checkpoint_every=5)
    model = runs.build_gan(config, contract.DEFAULT_IMAGE_SHAPE)
    model.fit_callbacks = [_CtrlCAt(batch=12)]
    images = np.zeros((8, 28, 28, 1), np.float32)
    make_dataset = lambda seed: tf.data.Dataset.from_tensors((images, np.zeros(8))).repeat()  # noqa: E731
    # SIGINT after step 13 (batch 12), once the interrupt callback has looked: training stops after step 14.
    with pytest.raises(errors.Interrupted, match=r"Interrupted at step 14 \(last checkpoint: step 10\)"):
        loop.fit(model, make_dataset, config, str(tmp_path / "run"), final_models={})
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_stops_with_a_message_and_the_run_resumes(tiny_data_dir, tmp_path):
    workdir = str(tmp_path / "run")
    args = ["--train_steps=3000", "--checkpoint_every=10", "--log_every=10", "--sample_every=1000"]
    process = start_and_wait_for_checkpoint(workdir, tiny_data_dir, args, 20)
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=60)[0]
    assert process.returncode == 130, output
    assert "Traceback" not in output
    assert re.search(
        r"Interrupted at step \d+ \(last checkpoint: step \d+\)\. Re-run the same command to resume\.", output
    )


def test_a_second_process_on_a_run_directory_is_refused(tiny_data_dir, tmp_path):
    workdir = tmp_path / "run"
    with files.locked(files.directory_lock(workdir), "the test"):
        result = gkd_train(workdir, tiny_data_dir, "--train_steps=10")
    assert result.returncode == 1
    assert f"Run directory {workdir} is in use by another process (pid {os.getpid()} on" in result.stderr
    assert "Traceback" not in result.stderr and not workdir.exists()
