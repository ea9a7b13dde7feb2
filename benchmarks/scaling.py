"""Multi-worker scaling: the quickstart teacher's training on 1 and 2 local workers, one core each.

    .venv/bin/python benchmarks/scaling.py [--workdir=runs/bench_scaling] [--steps=400]

Trains flags/gan_quickstart.cfg for --steps steps, one step per execution, three ways, each
process limited to one thread pool of one core (TF_NUM_INTRAOP_THREADS=1):
- `reference`: one process, no distribution, global batch B/2 (the share of each of two workers);
- `1 worker`: one worker under MultiWorkerMirroredStrategy, global batch B/2 (the strategy's own cost);
- `2 workers`: two workers (gkd-launch) on 127.0.0.1, global batch B.
Each run's speed is the median of the steps/s its TensorBoard logged (`speed/steps_per_sec`, the
first interval left out: tracing). Prints steps/s, images/s and, for 2 workers, the communication
share of a step: 1 − (reference step time) / (2-worker step time), the time a worker spends on
anything but its own half of the batch. Every run is new (the directory is emptied first).
"""

import os
import shutil
import statistics
import subprocess
import sys

from absl import app, flags

from tf_gkd import rundir
from tf_gkd.evaluation import compare

flags.DEFINE_string("workdir", "runs/bench_scaling", "Directory of the benchmark's runs (emptied first).")
flags.DEFINE_integer("steps", 400, "Training steps of each run.", lower_bound=20)
flags.DEFINE_integer("batch_size", 64, "Global batch B of the 2-worker run.", lower_bound=2)
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data directory.")
FLAGS = flags.FLAGS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train_command(workdir, batch_size, strategy):
    command = [
        sys.executable, "-m", "tf_gkd.bin.train", f"--workdir={workdir}", "--flagfile=flags/gan_quickstart.cfg",
        f"--strategy={strategy}", "--steps_per_execution=1", f"--batch_size={batch_size}",
        f"--train_steps={FLAGS.steps}", f"--log_every={FLAGS.steps // 10}", f"--sample_every={FLAGS.steps}",
        f"--checkpoint_every={FLAGS.steps}",
    ]  # fmt: skip
    return command + ([f"--data_dir={FLAGS.data_dir}"] if FLAGS.data_dir else [])


def steps_per_second(workdir):
    """Median of the logged steps/s of a run, without its first interval."""
    curves = compare.read_training_curves(os.path.join(workdir, rundir.TENSORBOARD_DIR), prefix="speed/")
    _, values = curves["speed/steps_per_sec"]
    return statistics.median(values[1:])


def main(argv):
    del argv
    shutil.rmtree(FLAGS.workdir, ignore_errors=True)
    env = dict(os.environ, TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1", TF_CPP_MIN_LOG_LEVEL="2")
    half = FLAGS.batch_size // 2
    runs = {
        "reference": (half, train_command(os.path.join(FLAGS.workdir, "reference"), half, "default")),
        "1 worker": (
            half,
            [sys.executable, "-m", "tf_gkd.bin.launch", "--workers=1", "--"]
            + train_command(os.path.join(FLAGS.workdir, "1_worker"), half, "multi_worker"),
        ),
        "2 workers": (
            FLAGS.batch_size,
            [sys.executable, "-m", "tf_gkd.bin.launch", "--workers=2", "--"]
            + train_command(os.path.join(FLAGS.workdir, "2_workers"), FLAGS.batch_size, "multi_worker"),
        ),
    }
    speeds = {}
    for name, (batch, command) in runs.items():
        print(f"{name}: {' '.join(command)}", flush=True)
        subprocess.run(command, check=True, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
        workdir = next(arg.split("=", 1)[1] for arg in command if arg.startswith("--workdir="))
        speeds[name] = (batch, steps_per_second(workdir))
    print(f"\n{'run':10s} {'global batch':>12s} {'steps/s':>8s} {'images/s':>9s}")
    for name, (batch, speed) in speeds.items():
        print(f"{name:10s} {batch:12d} {speed:8.1f} {batch * speed:9.0f}")
    share = 1 - speeds["2 workers"][1] / speeds["reference"][1]
    images = {name: batch * speed for name, (batch, speed) in speeds.items()}
    print(
        f"\n2 workers: communication share of a step {share:.0%} (against one process on a worker's half "
        f"batch); images/s {images['2 workers'] / images['reference']:.2f}x the reference's"
    )


if __name__ == "__main__":
    app.run(main)
