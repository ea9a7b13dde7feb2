"""gkd-launch: try multi-worker training on one machine: N workers of one command on free local ports.

    gkd-launch --workers=2 -- gkd-train --flagfile=flags/smoke.cfg --strategy=multi_worker \
        --steps_per_execution=1 --workdir=runs/two_workers

Starts the command after `--` once per worker, each with the `TF_CONFIG` that
names every worker (127.0.0.1 and a free port each) and its own index, the way
a cluster scheduler would on several machines. Each output line is prefixed
with its worker. Ctrl-C and SIGTERM are passed on to every worker. When a worker
fails, the others are stopped at once and gkd-launch exits with that worker's
status, naming it; it exits 0 when every worker has.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

from absl import app, flags, logging

from tf_gkd import children, errors

flags.DEFINE_integer("workers", 2, "Number of worker processes.", lower_bound=1)
flags.DEFINE_float("stop_timeout", 10.0, "Seconds the other workers get to stop after one fails, before SIGKILL.")
FLAGS = flags.FLAGS


class WorkerFailed(errors.Error):
    """A worker exited non-zero; gkd-launch exits with its status."""

    def __init__(self, message, status):
        super().__init__(message)
        self.exit_status = status if 0 < status < 256 else 1


def tf_config(ports, index):
    """The TF_CONFIG of worker `index` of a cluster of local workers on `ports`."""
    return json.dumps(
        {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}
    )


def _relay(index, stream):
    for line in stream:
        sys.stdout.write(f"[worker {index}] {line}")
        sys.stdout.flush()


def _stop(processes, timeout):
    for p in processes:
        if p.poll() is None:
            p.terminate()
    deadline = time.time() + timeout
    for p in processes:
        try:
            p.wait(timeout=max(0.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def main(argv):
    command = argv[1:]
    if not command:
        raise app.UsageError(
            "Give the command after --, e.g. gkd-launch --workers=2 -- gkd-train --strategy=multi_worker ..."
        )
    ports = children.free_ports(FLAGS.workers)
    logging.info("Starting %d workers on 127.0.0.1 ports %s: %s", FLAGS.workers, ports, " ".join(command))
    processes = []
    for index in range(FLAGS.workers):
        processes.append(
            subprocess.Popen(
                command,
                env=dict(os.environ, TF_CONFIG=tf_config(ports, index)),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                preexec_fn=children.DIE_WITH_PARENT,
            )
        )
    relays = [threading.Thread(target=_relay, args=(i, p.stdout), daemon=True) for i, p in enumerate(processes)]
    for relay in relays:
        relay.start()

    def forward(signum, frame):
        del frame
        for p in processes:
            if p.poll() is None:
                p.send_signal(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    while True:
        statuses = [p.poll() for p in processes]
        failed = next(((i, s) for i, s in enumerate(statuses) if s not in (None, 0)), None)
        if failed or all(s == 0 for s in statuses):
            break
        time.sleep(0.2)
    if failed:
        _stop(processes, FLAGS.stop_timeout)
    for relay in relays:
        relay.join(timeout=5)
    if failed:
        index, status = failed
        raise WorkerFailed(f"Worker {index} exited with status {status}; the other workers were stopped.", status)
    logging.info("All %d workers finished.", FLAGS.workers)


def run():
    app.run(errors.with_messages(main))


if __name__ == "__main__":
    run()
