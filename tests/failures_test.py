"""Failures users meet: each is a clear message and exit status, and nothing is written or clobbered.

The cases of the README's "When things go wrong": locked directories, runs that fail their
checks, resumes that change options, damaged checkpoints and files, leftovers of killed
processes, and how the binaries report all of them.
"""

import errno
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile

import keras
import numpy as np
import pytest

from tf_gkd import errors, files, rundir
from tf_gkd.data import datasets, idx
from tf_gkd.networks import factory
from tf_gkd.networks import io as model_io
from tf_gkd.runs import config as config_lib
from tf_gkd.runs import teacher as teacher_lib
from tf_gkd.runs import train as runs
from tf_gkd.training import loop

HEX = "0123456789abcdef" * 2  # A temporary name's 32 hex digits.


# Locks and leftovers.


def test_a_locked_directory_is_refused_naming_its_holder(tmp_path):
    lock = files.directory_lock(tmp_path)
    with files.locked(lock, "Run directory X"):
        holder = rf"\(pid {os.getpid()} on {socket.gethostname()}, since \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d\)"
        with pytest.raises(errors.LockedError, match=rf"Run directory X is in use by another process {holder}"):
            with files.locked(lock, "Run directory X"):
                pass
    assert not os.path.exists(lock)  # Released and gone.
    with files.locked(lock, "Run directory X"):
        pass


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path, caplog):
    lock = files.directory_lock(tmp_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom tf_gkd import files\n"
            f"with files.locked({str(lock)!r}, 'X'):\n    print('held', flush=True)\n    time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(errors.LockedError, match=f"pid {holder.pid} "):
            with files.locked(lock, "X"):
                pass
    finally:
        holder.kill()
        holder.wait()
    with caplog.at_level(logging.WARNING, logger="absl"), files.locked(lock, "Run directory X"):
        pass
    assert (
        f"Took over the lock of Run directory X from a process that ended without releasing it (pid {holder.pid}"
        in (caplog.text)
    )


def test_a_directory_made_for_a_lock_alone_goes_with_it(tmp_path):
    with files.locked(files.directory_lock(tmp_path / "new"), "X"):
        assert os.listdir(tmp_path / "new") == [files.LOCK_FILE]
    assert not (tmp_path / "new").exists()


def test_leftovers_of_killed_writers_are_removed(tmp_path):
    (tmp_path / f".tmp-{HEX}-config.json").write_text("{")
    (tmp_path / "notes.txt").write_text("mine")
    assert files.remove_leftovers(tmp_path) == [f".tmp-{HEX}-config.json"]
    assert os.listdir(tmp_path) == ["notes.txt"]

    # An export killed while it replaced the previous one: the previous one is put back.
    (tmp_path / f".export.tmp-{HEX}").mkdir()
    (tmp_path / f".export.tmp-{HEX}.old").mkdir()
    (tmp_path / f".export.tmp-{HEX}.old" / "report.json").write_text("previous")
    (tmp_path / f".other.tmp-{HEX}").mkdir()  # Another directory's: not ours to remove.
    assert files.remove_replacement_leftovers(tmp_path / "export") == [f".export.tmp-{HEX}"]
    assert sorted(os.listdir(tmp_path)) == [f".other.tmp-{HEX}", "export", "notes.txt"]
    assert (tmp_path / "export" / "report.json").read_text() == "previous"


def test_the_directories_of_dead_processes_are_removed_by_the_next_one(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # Ended and reaped: its pid runs nothing (until the system reuses it).
    left = [f"tf_gkd_worker1_pid{dead.pid}_abc", f"tf_gkd_worker1_pid{os.getppid()}_def", "tf_gkd_notes", "other"]
    for name in left:
        (tmp_path / name).mkdir()
    with files.process_directory("worker2") as directory:
        assert os.path.basename(directory).startswith(f"tf_gkd_worker2_pid{os.getpid()}_")
        assert sorted(os.listdir(tmp_path)) == sorted([*left[1:], os.path.basename(directory)])
    assert sorted(os.listdir(tmp_path)) == sorted(left[1:])


# Training runs (in process: tiny networks on the tiny dataset).


def test_a_run_that_fails_its_checks_writes_nothing(tiny_gan_config, tiny_data_dir, tmp_path):
    workdir = tmp_path / "run"
    with pytest.raises(datasets.DataError):
        runs.train(
            tiny_gan_config(data_dir=str(tmp_path / "no_data"), raw_data_dir=str(tmp_path / "no_raw")), str(workdir)
        )
    assert not workdir.exists()
    # The corrected command is not refused as "another configuration".
    runs.train(tiny_gan_config(), str(workdir))
    assert json.loads((workdir / rundir.CONFIG_FILE).read_text())["data_dir"] == tiny_data_dir


def test_a_workdir_that_is_a_file_is_named(tiny_gan_config, tmp_path):
    (tmp_path / "run").write_text("mine")
    with pytest.raises(config_lib.ConfigError, match=f"--workdir {tmp_path / 'run'} is a file"):
        runs.train(tiny_gan_config(), str(tmp_path / "run"))
    assert (tmp_path / "run").read_text() == "mine"


def test_a_run_in_use_is_refused(tiny_gan_config, tmp_path):
    workdir = tmp_path / "run"
    with files.locked(files.directory_lock(workdir), "another run"):
        with pytest.raises(errors.LockedError, match=f"Run directory {workdir} is in use by another process"):
            runs.train(tiny_gan_config(), str(workdir))
        assert os.listdir(workdir) == [files.LOCK_FILE]


def test_changes_on_resume_are_recorded_with_their_step(tiny_gan_config, tmp_path, caplog):
    workdir = str(tmp_path / "run")
    runs.train(tiny_gan_config(), workdir)
    with caplog.at_level(logging.INFO, logger="absl"):
        runs.train(tiny_gan_config(train_steps=20, g_learning_rate=1e-3, seed=3), workdir)
    saved = json.loads((tmp_path / "run" / rundir.CONFIG_FILE).read_text())
    assert saved["g_learning_rate"] == 1e-3 and saved["train_steps"] == 20
    assert saved[config_lib.RESUMES_KEY] == [
        {"step": 10, "changes": {"g_learning_rate": [8e-4, 1e-3], "seed": [0, 3], "train_steps": [10, 20]}}
    ]
    assert (
        "Resuming at step 10 with changed options: g_learning_rate 0.0008 → 0.001, train_steps 10 → 20, seed 0 → 3"
        in caplog.text
    )


def checkpoint_files(workdir, step):
    directory = os.path.join(workdir, rundir.CHECKPOINTS_DIR)
    return sorted(os.path.join(directory, f) for f in os.listdir(directory) if f.startswith(f"ckpt-{step}."))


def test_a_damaged_checkpoint_falls_back_to_the_one_before(tiny_gan_config, tmp_path, caplog):
    workdir = str(tmp_path / "run")
    runs.train(tiny_gan_config(), workdir)  # Checkpoints at steps 5 and 10.
    for path in checkpoint_files(workdir, 10):
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)  # A disk that filled up.
    unfinished = tmp_path / "run" / rundir.CHECKPOINTS_DIR / "ckpt-12_temp"  # A save that was killed.
    unfinished.mkdir()
    with caplog.at_level(logging.INFO, logger="absl"):
        model = runs.train(tiny_gan_config(train_steps=15), workdir)
    assert not unfinished.exists()
    assert f"Skipped checkpoint {os.path.join(workdir, rundir.CHECKPOINTS_DIR, 'ckpt-10')}: it does not load" in (
        caplog.text
    )
    assert "(step 5)" in caplog.text and int(model.step) == 15

    for step in (5, 10, 15):
        for path in checkpoint_files(workdir, step):
            with open(path, "wb") as f:
                f.write(b"garbage")
    directory = os.path.join(workdir, rundir.CHECKPOINTS_DIR)
    with pytest.raises(loop.ResumeError, match=f"No checkpoint in {directory} loads .*Move {directory} away"):
        runs.train(tiny_gan_config(train_steps=20), workdir)


def test_a_resume_with_other_steps_per_execution_is_a_message(tiny_gan_config, tmp_path):
    workdir = str(tmp_path / "run")
    runs.train(tiny_gan_config(train_steps=15), workdir)
    before = (tmp_path / "run" / rundir.CONFIG_FILE).read_text()
    config = tiny_gan_config(train_steps=20, steps_per_execution=10, log_every=10, checkpoint_every=10)
    with pytest.raises(loop.ResumeError, match="at step 15; the 5 remaining steps are not a multiple"):
        runs.train(config, workdir)
    assert (tmp_path / "run" / rundir.CONFIG_FILE).read_text() == before


def test_a_corrupt_config_is_named(tiny_gan_config, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / rundir.CONFIG_FILE).write_text('{"model": ')
    path = tmp_path / "run" / rundir.CONFIG_FILE
    with pytest.raises(config_lib.ConfigError, match=f"{path} is not valid JSON"):
        runs.train(tiny_gan_config(), str(tmp_path / "run"))
    with pytest.raises(teacher_lib.TeacherError, match=f"Teacher {path} is not valid JSON"):
        teacher_lib.read_config(str(tmp_path / "run"))


def test_a_teacher_file_that_does_not_load_is_named_before_anything_is_written(tiny_gan_config, tmp_path):
    teacher = tmp_path / "teacher"
    runs.train(tiny_gan_config(), str(teacher))
    (teacher / rundir.DISCRIMINATOR_FILE).write_bytes(b"not a keras file")
    student = tmp_path / "student"
    config = tiny_gan_config(model="distill", teacher=str(teacher), adversarial_weight=0.1)
    with pytest.raises(teacher_lib.TeacherError, match=f"{teacher / rundir.DISCRIMINATOR_FILE} is not a valid .keras"):
        runs.train(config, str(student))
    assert not student.exists()

    # A Lambda layer is refused by Keras's safe mode: a message too.
    z = keras.Input((4,))
    keras.Model(z, keras.layers.Lambda(lambda x: x * 2)(z)).save(teacher / rundir.DISCRIMINATOR_FILE)
    with pytest.raises(teacher_lib.TeacherError, match=f"Teacher file {teacher / rundir.DISCRIMINATOR_FILE} cannot"):
        runs.train(config, str(student))
    assert not student.exists()


# Data.


def test_raw_files_of_another_image_size_are_named_and_nothing_is_prepared(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for split, n in (("train", 8), ("test", 4)):
        idx.write_idx(raw / idx.RAW_FILES[f"{split}_images"], np.zeros((n, 32, 32), np.uint8))
        idx.write_idx(raw / idx.RAW_FILES[f"{split}_labels"], np.zeros(n, np.uint8))
    with pytest.raises(datasets.DataError, match=f"{raw / idx.RAW_FILES['train_images']} holds 32x32 images"):
        datasets.prepare("fashion_mnist", data_dir=str(tmp_path / "tfds"), raw_dir=str(raw))
    assert not (tmp_path / "tfds" / "fashion_mnist").exists()


def test_a_preparation_in_progress_is_refused_and_a_killed_one_cleaned_up(tiny_raw_dir, tmp_path):
    dataset_dir = tmp_path / "tfds" / "fashion_mnist"
    with files.locked(files.sibling_lock(dataset_dir), "the test"):
        with pytest.raises(errors.LockedError, match=f"Dataset fashion_mnist in {dataset_dir} is in use"):
            datasets.prepare("fashion_mnist", data_dir=str(tmp_path / "tfds"), raw_dir=str(tiny_raw_dir))
    leftover = dataset_dir / "incomplete.ABC123_3.0.1"
    leftover.mkdir(parents=True)
    builder = datasets.prepare("fashion_mnist", data_dir=str(tmp_path / "tfds"), raw_dir=str(tiny_raw_dir))
    assert builder.is_prepared() and not leftover.exists()


# How the binaries report failures.


def run_main(error):
    def main(argv):
        raise error

    with pytest.raises(SystemExit) as exit_info:
        errors.with_messages(main)([])
    return exit_info.value.code


@pytest.mark.parametrize(
    "error, status, message",
    [
        (errors.LockedError("Run directory r is in use"), 1, "Run directory r is in use"),
        (errors.Interrupted("Interrupted at step 5"), 130, "Interrupted at step 5"),
        (KeyboardInterrupt(), 130, "Interrupted."),
        (
            OSError(errno.EROFS, "Read-only file system", "/mnt/runs/a"),
            1,
            "Cannot use /mnt/runs/a: Read-only file system (the file system is read-only: choose a writable",
        ),
        (
            OSError(errno.ENOSPC, "No space left on device", "/r/x"),
            1,
            "Cannot use /r/x: No space left on device (the disk is full",
        ),
        (PermissionError(errno.EACCES, "Permission denied", "/r"), 1, "(check its permissions)"),
    ],
)
def test_failures_become_messages_and_exit_statuses(error, status, message, caplog):
    with caplog.at_level(logging.ERROR, logger="absl"):
        assert run_main(error) == status
    assert message in caplog.text


def test_a_bug_keeps_its_traceback():
    def main(argv):
        raise TypeError("a bug")

    with pytest.raises(TypeError, match="a bug"):
        errors.with_messages(main)([])


def test_every_binary_reports_through_one_place():
    bin_dir = os.path.join(os.path.dirname(errors.__file__), "bin")
    sources = {name: open(os.path.join(bin_dir, name)).read() for name in os.listdir(bin_dir) if name[0] != "_"}
    runners = {name for name, source in sources.items() if "app.run(" in source}
    assert runners == {f"{b}.py" for b in ("train", "distill", "evaluate", "export", "sample", "pipeline", "launch")}
    for name in runners:
        assert "app.run(errors.with_messages(main))" in sources[name], name
        assert "logging.error" not in sources[name], name  # Messages of failures come from one place.


def test_generator_files_keep_their_own_message(tmp_path):
    path = tmp_path / "g.keras"
    model_io.save_model_atomic(factory.make_generator("dense", 4, 0.25), str(path))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(model_io.GeneratorLoadError, match="not a valid .keras archive"):
        model_io.load_generator(str(path))
