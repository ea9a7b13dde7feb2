"""tf.distribute for tf_gkd's custom train steps: strategies, loss scaling, noise.

Every model is built and trained inside `make_strategy(name).scope()`. Under a
strategy each replica runs `train_step` on its share of the global batch, so a
custom step must take care of two things Keras's built-in losses do for it:

- the loss each replica minimises is its batch mean divided by the number of
  replicas (`scale_for_replicas`), so that the all-reduced (summed) gradients
  are those of the global-batch mean;
- the noise each replica draws (latents, reparameterisation noise) is its own
  slice of the global batch's noise (`normal`, `uniform`): replicas never share
  noise, and a run draws the same noise with one replica or many, so a
  mirrored run reproduces a single-device run up to floating-point rounding.
"""

import hashlib
import json
import os
import socket
import threading
import time

import keras
import tensorflow as tf

from tf_gkd import errors

STRATEGIES = ("default", "mirrored", "multi_worker")
CLUSTER_RESOLVERS = ("tf_config", "slurm")


class ClusterError(errors.Error, ValueError):
    """The cluster of a multi-worker run is not described well."""


def check_tf_config(text):
    """Checks the `TF_CONFIG` of a multi-worker run; returns it parsed.

    Raises:
      ClusterError: naming what is wrong (not JSON, no cluster, this task's index out of range...).
    """
    guide = "See https://www.tensorflow.org/guide/distributed_training#TF_CONFIG."
    try:
        tf_config = json.loads(text)
    except ValueError as e:
        raise ClusterError(f"TF_CONFIG is not valid JSON ({e}). {guide}") from None
    cluster = tf_config.get("cluster") if isinstance(tf_config, dict) else None
    if not isinstance(cluster, dict) or not cluster:
        raise ClusterError(f'TF_CONFIG has no "cluster" (a job name → list of host:port). {guide}')
    task = tf_config.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ClusterError(f'TF_CONFIG has no "task" with a "type" and an "index" for this worker. {guide}')
    hosts = cluster.get(task["type"])
    if not isinstance(hosts, list) or not isinstance(task["index"], int) or not 0 <= task["index"] < len(hosts):
        raise ClusterError(
            f"TF_CONFIG's task {task['type']!r} index {task['index']!r} is not in its cluster "
            f"({task['type']}: {hosts!r}). {guide}"
        )
    return tf_config


def make_strategy(name, cluster_resolver="tf_config", cluster_timeout=300.0):
    """The `tf.distribute.Strategy` called `name` (one of `STRATEGIES`).

    `default`: no distribution (one device). `mirrored`: synchronous data
    parallelism over this machine's GPUs (or its CPU when there are none).
    `multi_worker`: synchronous data parallelism over several machines, found
    by `cluster_resolver` (one of `CLUSTER_RESOLVERS`), once every one of them
    answers (`wait_for_workers`, at most `cluster_timeout` seconds).
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        resolver = make_cluster_resolver(cluster_resolver)
        wait_for_workers(resolver, cluster_timeout)
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    raise ValueError(f"Unknown strategy. Expected one of {STRATEGIES}. Received: {name!r}")


def make_cluster_resolver(kind):
    """The cluster of a multi-worker run: from `TF_CONFIG` (`tf_config`) or from a Slurm job step (`slurm`).

    Raises:
      ClusterError: the environment does not describe a cluster of that kind.
    """
    if kind == "tf_config":
        if "TF_CONFIG" not in os.environ:
            raise ClusterError(
                "--strategy=multi_worker needs the TF_CONFIG environment variable describing the cluster "
                "(see https://www.tensorflow.org/guide/distributed_training#TF_CONFIG), or "
                "--cluster_resolver=slurm inside a Slurm job."
            )
        check_tf_config(os.environ["TF_CONFIG"])
        return tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if kind == "slurm":
        missing = [name for name in ("SLURM_PROCID", "SLURM_STEP_NODELIST") if name not in os.environ]
        if missing:
            raise ClusterError(
                f"--cluster_resolver=slurm runs inside a Slurm job step (srun), whose environment sets "
                f"{', '.join(missing)}; it is not set here."
            )
        return tf.distribute.cluster_resolver.SlurmClusterResolver()
    raise ValueError(f"Unknown cluster resolver. Expected one of {CLUSTER_RESOLVERS}. Received: {kind!r}")


def wait_for_workers(resolver, timeout, poll_seconds=0.5):
    """Returns once every other worker of `resolver`'s cluster accepts connections on its port.

    TensorFlow's strategy waits for missing workers without a time limit, and a
    process waiting there ignores SIGTERM; this check runs before it, in
    Python. Meanwhile this worker listens on its own port (closed on return,
    before TensorFlow's server takes it), so that the others see it too.

    Raises:
      ClusterError: this worker's port is taken, or workers did not answer within `timeout` seconds (named).
    """
    cluster = resolver.cluster_spec().as_dict()
    addresses = {
        (job, index): address for job in ("chief", "worker") for index, address in enumerate(cluster.get(job, []))
    }
    own = addresses.pop((resolver.task_type, resolver.task_id))
    try:
        listener = socket.create_server(("", int(own.rsplit(":", 1)[1])))
    except OSError as e:
        raise ClusterError(
            f"This worker ({resolver.task_type} {resolver.task_id}) cannot listen on its port {own} ({e}): "
            "stop the process that holds it, or give this worker another port in the cluster's description."
        ) from None
    listener.settimeout(poll_seconds)
    stop = threading.Event()

    def answer():
        while not stop.is_set():
            try:
                listener.accept()[0].close()
            except OSError:  # Timed out: look at `stop` again.
                pass

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    waiting, errors_seen = dict(addresses), {}
    deadline = time.monotonic() + timeout
    try:
        while waiting:
            for task, address in list(waiting.items()):
                host, port = address.rsplit(":", 1)
                try:
                    socket.create_connection((host, int(port)), timeout=poll_seconds).close()
                    del waiting[task]
                except OSError as e:
                    errors_seen[task] = e
            if waiting and time.monotonic() > deadline:
                missing = "; ".join(
                    f"{job} {index} at {address} ({errors_seen[job, index]})"
                    for (job, index), address in waiting.items()
                )
                raise ClusterError(
                    f"Workers did not answer within {timeout:g} s: {missing}. Start every worker of the cluster "
                    "(the same command, each with its own task index) and check its host names and ports; "
                    "--cluster_timeout sets the wait."
                )
            if waiting:
                time.sleep(poll_seconds)
    finally:
        stop.set()
        thread.join()
        listener.close()


def worker(strategy):
    """(task type, index) of this process in a multi-worker cluster; None on one machine."""
    resolver = strategy.cluster_resolver
    if resolver is None or not resolver.task_type:
        return None
    return resolver.task_type, resolver.task_id


def num_workers(strategy):
    """Number of worker processes (chief included) of `strategy`'s cluster; 1 on one machine."""
    if worker(strategy) is None:
        return 1
    return sum(
        len(tasks)
        for job, tasks in strategy.cluster_resolver.cluster_spec().as_dict().items()
        if job in ("chief", "worker")
    )


def is_chief(strategy):
    """True for the process that writes the run directory: the only one, the "chief", or worker 0 without one.

    TensorFlow's multi-worker convention: every worker runs the same saves
    (checkpointing may need them all), the chief into the run directory, the
    others into temporary directories that they delete.
    """
    task = worker(strategy)
    if task is None or task[0] == "chief":
        return True
    return task == ("worker", 0) and "chief" not in strategy.cluster_resolver.cluster_spec().as_dict()


def same_everywhere(strategy, text):
    """True when `text` is the same in every replica of `strategy` (a collective: every worker must call it).

    Its SHA-256 bytes and their squares are summed across replicas: they equal
    the replica count times this replica's only when every replica's are equal.
    """
    digest = tf.constant(list(hashlib.sha256(text.encode()).digest()), tf.float32)
    mine = tf.concat([digest, digest * digest], 0)  # Sums of these stay exact in float32.
    total = strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.identity(mine)), axis=None)
    return bool(tf.reduce_all(total == mine * strategy.num_replicas_in_sync))


def num_replicas():
    return tf.distribute.get_strategy().num_replicas_in_sync


def scale_for_replicas(loss):
    """Per-replica loss → the share whose gradients the optimizer's all-reduce sums.

    Every replica sees 1/R of the global batch and the optimizer sums the
    replicas' gradients; dividing each replica's batch mean by R makes that sum
    the gradient of the global-batch mean.
    """
    return loss / tf.cast(num_replicas(), loss.dtype)


def minimize(optimizer, tape, loss, variables):
    """One optimizer step on `loss`, a batch mean recorded by `tape`.

    The replica and mixed-float16 loss scaling are recorded on the same tape,
    so that the gradients flow through them.
    """
    with tape:
        scaled = optimizer.scale_loss(scale_for_replicas(loss))
    grads = tape.gradient(scaled, variables)
    optimizer.apply_gradients(zip(grads, variables))


def _replica_slice(draw, shape):
    """`draw(global_shape)` for the global batch, sliced to this replica's rows.

    `shape[0]` is the replica's batch size; all replicas hold equal shares.
    `draw` takes its seed from a `keras.random.SeedGenerator`, which every
    replica advances alike.
    """
    context = tf.distribute.get_replica_context()
    replicas = 1 if context is None else context.num_replicas_in_sync
    if replicas == 1:
        return draw(shape)
    rows = shape[0]
    noise = draw((rows * replicas, *shape[1:]))
    start = context.replica_id_in_sync_group * rows
    return noise[start : start + rows]


def normal(shape, seed_generator, dtype="float32"):
    """Standard-normal noise of `shape` for this replica (see `_replica_slice`)."""
    return _replica_slice(lambda s: keras.random.normal(s, dtype=dtype, seed=seed_generator), tuple(shape))


def uniform(shape, seed_generator, dtype="float32"):
    """Uniform [0, 1) noise of `shape` for this replica (see `_replica_slice`)."""
    return _replica_slice(lambda s: keras.random.uniform(s, dtype=dtype, seed=seed_generator), tuple(shape))
