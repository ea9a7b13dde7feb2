"""Running an exported `.tflite` generator with LiteRT alone: what an app would copy.

This module imports NumPy, `ai_edge_litert` and `tf_gkd.contract` (NumPy only:
the image shape and the latents of a seed) — never TensorFlow — so that it runs
where an app runs (`gkd-sample` is built on it; an app copies both files). A generator file
maps z `float32 [N, z_dim]` to images `float32 [N, H, W, C]` in [-1, 1]
(a class-conditional one takes a second input, `label`, one-hot `float32 [N, K]`);
every variant written by gkd-export, full-integer included, keeps float input
and output. N is any batch size (the input is resized to each batch), or the
one batch size of a fixed-batch file (`model_<variant>_b<N>.tflite`), which is
run on N latents at a time. LiteRT checks that a file is a valid TFLite flatbuffer; a file
modified inside its weights still parses, so a file listed in the
`export_report.json` beside it is also checked against the SHA-256 recorded
there.
"""

import functools
import hashlib
import json
import os
import statistics
import time

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from tf_gkd import errors
from tf_gkd.contract import check_image_shape, class_labels, latents, one_hot

REPORT_FILE = "export_report.json"


class TFLiteLoadError(errors.Error, ValueError):
    """A path does not hold a usable `.tflite` generator; the message names it."""


def sha256(path):
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_against_report(path):
    """Compares `path` with the SHA-256 that the `export_report.json` beside it records.

    Returns:
      True if the report lists the file and the digests match; False if there
      is no report or it does not list the file (nothing to check against).

    Raises:
      TFLiteLoadError: the file differs from the one that was exported and verified.
    """
    report = os.path.join(os.path.dirname(os.path.abspath(path)), REPORT_FILE)
    if not os.path.exists(report):
        return False
    with open(report) as f:
        expected = json.load(f).get("sha256", {}).get(os.path.basename(path))
    if expected is None:
        return False
    if sha256(path) != expected:
        raise TFLiteLoadError(
            f"{path} does not match the SHA-256 recorded in {report}: the file was modified or damaged "
            "after export. Export it again with gkd-export."
        )
    return True


def _is_image_shape(shape):
    try:
        check_image_shape(tuple(int(d) for d in shape))
    except ValueError:
        return False
    return True


class TFLiteGenerator:
    """A `.tflite` generator run by the LiteRT interpreter, called on batches of z like a Keras model.

    A file with a fixed batch size (`batch_size`; None for a dynamic batch) is
    never resized: it is invoked on that many latents at a time, the last batch
    padded with zeros whose images are dropped.

    Args:
      path: the `.tflite` file.
      num_threads: CPU threads of the interpreter.

    Raises:
      TFLiteLoadError: the file is missing, not a valid TFLite model (truncated
        or corrupt), differs from the SHA-256 of the report beside it, or is not
        a generator z [N, z_dim] float32 (, label [N, K] float32) → images [N, S, S, C] float32.
    """

    def __init__(self, path, num_threads=1):
        if not os.path.isfile(path):
            raise TFLiteLoadError(f"No .tflite model at {path}: the file does not exist.")
        check_against_report(path)
        self.path = path
        try:
            self._interpreter = Interpreter(model_path=path, num_threads=num_threads)
        except ValueError as e:  # LiteRT's flatbuffer verifier rejects truncated and garbled files.
            raise TFLiteLoadError(f"{path} is not a valid TFLite model (truncated or corrupt file?): {e}") from None
        inputs, outputs = self._interpreter.get_input_details(), self._interpreter.get_output_details()
        if len(inputs) == 2:
            # A conditional generator's two inputs are told apart by their names in the signature.
            named = self._interpreter.get_signature_runner().get_input_details()
            by_index = {d["index"]: d for d in inputs}
            inputs = [by_index[named[name]["index"]] for name in ("z", "label") if name in named]
        if (
            len(inputs) not in (1, 2)
            or any(len(d["shape"]) != 2 or d["dtype"] != np.float32 for d in inputs)
            or len(outputs) != 1
            or not _is_image_shape(outputs[0]["shape"][1:])
            or outputs[0]["dtype"] != np.float32
        ):
            found = [(tuple(d["shape"]), np.dtype(d["dtype"]).name) for d in inputs + outputs]
            raise TFLiteLoadError(
                f"{path} is not a generator z [N, z_dim] float32 (and, class-conditional, label [N, K] float32) → "
                f"images [N, S, S, 1 or 3] float32; its inputs and outputs are {found}."
            )
        self._inputs, self._output = [d["index"] for d in inputs], outputs[0]["index"]
        self.z_dim = int(inputs[0]["shape"][1])
        self.num_classes = int(inputs[1]["shape"][1]) if len(inputs) == 2 else 0
        self.image_shape = tuple(int(d) for d in outputs[0]["shape"][1:])
        # A dynamic batch is negative in the shape signature (the shape itself holds a placeholder).
        batch = int(inputs[0]["shape_signature"][0])
        self.batch_size = None if batch < 0 else batch
        self._batch = None

    def __call__(self, z, labels=None):
        """Images float32 [N, H, W, C] for z float32 [N, z_dim] (and int `labels` [N], class-conditional).

        One invocation (fixed batch: one per batch).

        Raises:
          ValueError: z of another shape; labels missing for a conditional
            file, given to an unconditional one, or out of range.
        """
        z = np.asarray(z, np.float32)
        if z.ndim != 2 or z.shape[1] != self.z_dim or len(z) < 1:
            raise ValueError(f"Expected z of shape [N >= 1, {self.z_dim}]. Received: shape {z.shape}.")
        tensors = [z]
        if self.num_classes:
            if labels is None or len(labels) != len(z):
                raise ValueError(
                    f"{self.path} is class-conditional ({self.num_classes} classes): give one label per z."
                )
            tensors.append(one_hot(labels, self.num_classes))
        elif labels is not None:
            raise ValueError(f"{self.path} is unconditional: it takes no labels.")
        if self.batch_size is not None and len(z) != self.batch_size:
            n = self.batch_size
            padded = [np.concatenate([t, np.zeros((-len(t) % n, t.shape[1]), np.float32)]) for t in tensors]
            return np.concatenate(
                [self._invoke([t[start : start + n] for t in padded]) for start in range(0, len(padded[0]), n)]
            )[: len(z)]
        return self._invoke(tensors)

    def _invoke(self, tensors):
        if len(tensors[0]) != self._batch:  # Re-plan the tensors only when the batch size changes.
            if self.batch_size is None:
                for index, tensor in zip(self._inputs, tensors):
                    self._interpreter.resize_tensor_input(index, tensor.shape)
            self._interpreter.allocate_tensors()
            self._batch = len(tensors[0])
        for index, tensor in zip(self._inputs, tensors):
            self._interpreter.set_tensor(index, tensor)
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output).copy()

    def prepared(self, z, labels=None):
        """A call without arguments that runs the interpreter on `z` (and `labels`), set in place now.

        What a latency times: the runtime's work alone, as LiteRT's
        benchmark_model times an invocation, without this wrapper's checks
        and copies in and out. A fixed-batch file asked for another batch
        size: the whole call (one invocation per batch).
        """
        if self.batch_size is not None and len(z) != self.batch_size:
            return lambda: self(z, labels)
        self(z, labels)  # Checks the inputs, plans the tensors and sets them; the inputs stay set.
        return self._interpreter.invoke

    def generate(self, z, labels=None, batch_size=500):
        """Images for any number of latents (and labels), `batch_size` per invocation (a multiple of a fixed batch)."""
        if self.batch_size is not None:
            batch_size = self.batch_size * max(1, batch_size // self.batch_size)
        return np.concatenate(
            [
                self(z[start : start + batch_size], None if labels is None else labels[start : start + batch_size])
                for start in range(0, len(z), batch_size)
            ]
        )


def latency_ms_per_image(model, batch_size, min_repeats=20, min_seconds=0.5, warmup=3):
    """Median wall time of one call of `model` on `batch_size` latents, in milliseconds per image.

    A model with a `prepared` method (a `TFLiteGenerator`) is timed on the
    call it returns: the runtime's invocation alone. `warmup` untimed calls
    first (allocation, caches); then at least `min_repeats` calls, and more
    until `min_seconds` have passed, each timed with `time.perf_counter`.
    The median over that many calls is what the occasional stall of a shared
    machine barely moves, even for a call of microseconds.
    """
    inputs = [latents(batch_size, model.z_dim, seed=0)]
    if getattr(model, "num_classes", 0):  # A class-conditional model, asked for classes 0, 1, ... in turn.
        inputs.append(class_labels(batch_size, model.num_classes))
    call = model.prepared(*inputs) if hasattr(model, "prepared") else functools.partial(model, *inputs)
    for _ in range(warmup):
        call()
    times = []
    deadline = time.perf_counter() + min_seconds
    while len(times) < min_repeats or time.perf_counter() < deadline:
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times) / batch_size
