"""Training on several machines: worker processes on 127.0.0.1 under MultiWorkerMirroredStrategy."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_gkd import children, distribute
from tf_gkd.bin import launch
from tf_gkd.runs import config as config_lib
from tf_gkd.runs import train as runs

pytestmark = pytest.mark.slow

TINY = dict(
    generator_kind="dense",
    discriminator_kind="dense",
    generator_width=0.25,
    discriminator_width=0.25,
    batch_size=16,
    train_steps=10,
    steps_per_execution=1,
    log_every=5,
    sample_every=10,
    checkpoint_every=5,
    num_samples=4,
    mixed_precision="off",  # Equal to a single process up to float32 rounding.
)


def start_workers(
    workdir, data_dir, tmp_dir, binary="train", options=TINY, num_workers=2, per_worker=None, started=None
):
    """Starts gkd-<binary> with `options` (updated by worker i's `per_worker[i]`) as `num_workers` processes.

    `started`: the indices of the workers started (default: all of them).
    """
    ports = children.free_ports(num_workers)
    per_worker = per_worker or [{}] * num_workers

    def flags(i):
        return [f"--{name}={value}" for name, value in (options | per_worker[i]).items()]

    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                f"tf_gkd.bin.{binary}",
                f"--workdir={workdir}",
                f"--data_dir={data_dir}",
                "--strategy=multi_worker",
                *flags(i),
            ],
            env=dict(os.environ, TF_CONFIG=launch.tf_config(ports, i), TMPDIR=str(tmp_dir), TF_CPP_MIN_LOG_LEVEL="2"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in (range(num_workers) if started is None else started)
    ]
    return processes


def run_workers(*args, **kwargs):
    """`start_workers` to the end; returns each worker's (exit status, output)."""
    return [(p.wait(timeout=300), p.stdout.read()) for p in start_workers(*args, **kwargs)]


def test_two_workers_train_like_one_process_and_only_the_chief_writes(tiny_data_dir, tmp_path):
    workdir, worker_tmp = tmp_path / "run", tmp_path / "worker_tmp"
    worker_tmp.mkdir()
    for status, output in run_workers(workdir, tiny_data_dir, worker_tmp):
        assert status == 0, output
    assert {"config.json", "checkpoints", "tb", "samples", "generator.keras", "discriminator.keras"} <= set(
        os.listdir(workdir)
    )
    assert os.listdir(worker_tmp) == []  # The other worker's directory is gone.

    # The same global batch in one process ends with the same weights.
    single = tmp_path / "single"
    runs.train(config_lib.TrainConfig(data_dir=tiny_data_dir, **TINY), str(single))
    for name in ("generator.keras", "discriminator.keras"):
        two = keras.saving.load_model(workdir / name).get_weights()
        one = keras.saving.load_model(single / name).get_weights()
        for a, b in zip(two, one, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5, err_msg=name)


def test_a_cluster_of_one_worker_trains(tiny_data_dir, tmp_path):
    ((status, output),) = run_workers(tmp_path / "run", tiny_data_dir, tmp_path, num_workers=1)
    assert status == 0, output
    assert (tmp_path / "run" / "generator.keras").exists()


def test_two_workers_distil_like_one_process(tiny_data_dir, tmp_path):
    teacher = tmp_path / "teacher"
    runs.train(config_lib.TrainConfig(data_dir=tiny_data_dir, **TINY), str(teacher))
    # The adversary joins at step 5: the retraced step runs on both workers.
    options = dict(
        TINY,
        teacher=teacher,
        generator_width=0.1,
        adversarial_weight=0.1,
        adversarial_weight_schedule="ramp_up:0.5:1",
        init_discriminator=True,
    )
    worker_tmp = tmp_path / "worker_tmp"
    worker_tmp.mkdir()
    for status, output in run_workers(tmp_path / "student", tiny_data_dir, worker_tmp, "distill", options):
        assert status == 0, output
    assert os.listdir(worker_tmp) == []

    single = tmp_path / "single"
    runs.train(
        config_lib.TrainConfig(data_dir=tiny_data_dir, model="distill", **dict(options, teacher=str(teacher))),
        str(single),
    )
    two = keras.saving.load_model(tmp_path / "student" / "student.keras").get_weights()
    one = keras.saving.load_model(single / "student.keras").get_weights()
    for a, b in zip(two, one, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_killed_workers_resume_from_the_chiefs_checkpoint(tiny_data_dir, tmp_path):
    workdir, worker_tmp = tmp_path / "run", tmp_path / "worker_tmp"
    worker_tmp.mkdir()
    options = dict(TINY, train_steps=2000, checkpoint_every=10, log_every=10, sample_every=1000)
    processes = start_workers(workdir, tiny_data_dir, worker_tmp, options=options)
    deadline = time.time() + 120
    while (step := latest_step(workdir)) is None or step < 20:
        assert all(p.poll() is None for p in processes), [p.stdout.read() for p in processes]
        assert time.time() < deadline, "no checkpoint written in time"
        time.sleep(0.05)
    for p in processes:
        p.send_signal(signal.SIGKILL)
        p.wait()
    killed_at = latest_step(workdir)
    finish = dict(options, train_steps=killed_at + 10)
    for status, output in run_workers(workdir, tiny_data_dir, worker_tmp, options=finish):
        assert status == 0, output
        assert f"(step {killed_at})" in output  # Both workers resumed from the chief's checkpoint.
    assert latest_step(workdir) == killed_at + 10
    # The killed worker's own directory went when the restarted one started, and that one's at its end.
    assert not [name for name in os.listdir(worker_tmp) if name.startswith("tf_gkd_")]

    # One process interrupted at the same step ends with the same weights.
    single = tmp_path / "single"
    runs.train(config_lib.TrainConfig(data_dir=tiny_data_dir, **dict(options, train_steps=killed_at)), str(single))
    runs.train(config_lib.TrainConfig(data_dir=tiny_data_dir, **finish), str(single))
    two = keras.saving.load_model(workdir / "generator.keras").get_weights()
    one = keras.saving.load_model(single / "generator.keras").get_weights()
    for a, b in zip(two, one, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_workers_started_with_different_options_are_refused(tiny_data_dir, tmp_path):
    seeds = [{"seed": 0}, {"seed": 1}]
    for status, output in run_workers(tmp_path / "run", tiny_data_dir, tmp_path, per_worker=seeds):
        assert status == 1, output
        assert "The workers of this run were started with different options" in output
        assert "Traceback" not in output
    assert not (tmp_path / "run").exists()


def latest_step(workdir):
    path = tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints"))
    return int(path.rsplit("-", 1)[1]) if path else None


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "TF_CONFIG is not valid JSON"),
        ('{"task": {"type": "worker", "index": 0}}', 'TF_CONFIG has no "cluster"'),
        ('{"cluster": {"worker": ["127.0.0.1:1"]}}', 'TF_CONFIG has no "task"'),
        (
            '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 1}}',
            "TF_CONFIG's task 'worker' index 1 is not in its cluster",
        ),
    ],
)
def test_a_bad_tf_config_is_named(text, message):
    with pytest.raises(distribute.ClusterError, match=message):
        distribute.check_tf_config(text)


def test_slurm_job_steps_are_resolved(monkeypatch):
    for name, value in {
        "SLURM_PROCID": "1",
        "SLURM_STEP_NUM_TASKS": "2",
        "SLURM_STEP_NODELIST": "node[7-8]",
        "SLURM_STEP_TASKS_PER_NODE": "1(x2)",
    }.items():
        monkeypatch.setenv(name, value)
    resolver = distribute.make_cluster_resolver("slurm")
    assert resolver.cluster_spec().as_dict() == {"worker": ["node7:8888", "node8:8888"]}
    assert (resolver.task_type, resolver.task_id) == ("worker", 1)


def test_a_missing_cluster_is_named(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.delenv("SLURM_PROCID", raising=False)
    with pytest.raises(distribute.ClusterError, match="needs the TF_CONFIG environment variable"):
        distribute.make_cluster_resolver("tf_config")
    with pytest.raises(distribute.ClusterError, match="SLURM_PROCID"):
        distribute.make_cluster_resolver("slurm")


def local_resolver(ports, index):
    cluster = tf.train.ClusterSpec({"worker": [f"127.0.0.1:{port}" for port in ports]})
    return tf.distribute.cluster_resolver.SimpleClusterResolver(cluster, task_type="worker", task_id=index)


def test_workers_wait_for_each_other_before_the_strategy_starts():
    ports = children.free_ports(3)
    failures, servers = [], []

    def start(index):
        time.sleep(index)  # Started one after another, each waits for the later ones.
        try:
            distribute.wait_for_workers(local_resolver(ports, index), timeout=30, poll_seconds=0.1)
        except distribute.ClusterError as e:
            failures.append(e)
        else:  # TensorFlow's server takes the port next.
            servers.append(socket.create_server(("", ports[index])))

    threads = [threading.Thread(target=start, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for server in servers:
        server.close()
    assert not failures
    assert len(servers) == 3


def test_a_worker_that_does_not_answer_is_named_and_the_port_is_released():
    ports = children.free_ports(2)
    start = time.monotonic()
    with pytest.raises(distribute.ClusterError, match=f"worker 1 at 127.0.0.1:{ports[1]} .*--cluster_timeout"):
        distribute.wait_for_workers(local_resolver(ports, 0), timeout=1, poll_seconds=0.1)
    assert time.monotonic() - start < 10
    socket.create_server(("", ports[0])).close()  # Free for TensorFlow's server again.


def test_a_worker_whose_port_is_taken_is_told_so():
    ports = children.free_ports(2)
    with socket.create_server(("", ports[0])):
        with pytest.raises(distribute.ClusterError, match=f"cannot listen on its port 127.0.0.1:{ports[0]}"):
            distribute.wait_for_workers(local_resolver(ports, 0), timeout=1)


def test_a_lone_worker_fails_after_the_cluster_timeout(tiny_data_dir, tmp_path):
    """One worker of two started: it stops with a clear error instead of waiting for ever, and writes nothing."""
    (process,) = start_workers(
        tmp_path / "run", tiny_data_dir, tmp_path, options=TINY | {"cluster_timeout": 2}, started=[0]
    )
    status, output = process.wait(timeout=120), process.stdout.read()
    assert status == 1, output
    assert "Workers did not answer within 2 s: worker 1 at 127.0.0.1:" in output
    assert "Traceback" not in output
    assert not (tmp_path / "run").exists()


def test_multi_worker_runs_one_step_per_execution():
    with pytest.raises(config_lib.ConfigError, match="Pass --steps_per_execution=1"):
        config_lib.TrainConfig(strategy="multi_worker", steps_per_execution=10)


def gkd_launch(*args):
    return subprocess.run(
        [sys.executable, "-m", "tf_gkd.bin.launch", *args], capture_output=True, text=True, timeout=120
    )


def test_launch_gives_each_worker_its_tf_config():
    script = (
        "import json, os; t = json.loads(os.environ['TF_CONFIG']); "
        "print(t['task']['index'], len(t['cluster']['worker']))"
    )
    result = gkd_launch("--workers=3", "--", sys.executable, "-c", script)
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == ["[worker 0] 0 3", "[worker 1] 1 3", "[worker 2] 2 3"]


def test_launch_stops_every_worker_when_one_fails():
    script = (
        "import json, os, sys, time\n"
        "if json.loads(os.environ['TF_CONFIG'])['task']['index'] == 1: sys.exit(3)\n"
        "time.sleep(100)"
    )
    start = time.time()
    result = gkd_launch("--workers=2", "--", sys.executable, "-c", script)
    assert result.returncode == 3
    assert "Worker 1 exited with status 3; the other workers were stopped." in result.stderr
    assert time.time() - start < 60
