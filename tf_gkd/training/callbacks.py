"""Keras callbacks of every training run: NaN guard, Ctrl-C, checkpoints, TensorBoard, progress.

They key everything on the model's own step counter (`model.step`, restored
with the checkpoint), not on Keras's batch index, which restarts at 0 when a run
resumes and advances by `steps_per_execution` at a time.
"""

import math
import os
import signal
import threading
import time

import keras
import numpy as np
import tensorflow as tf
import tqdm

from tf_gkd import errors
from tf_gkd import images as image_utils


class NonFiniteLossError(errors.Error, RuntimeError):
    """Training produced a NaN or Inf loss."""


def _crossed(step, previous, every):
    """True when a multiple of `every` lies in (previous, step]."""
    return step // every > previous // every


class NanGuard(keras.callbacks.Callback):
    """Stops training at the first non-finite logged value, before it can be checkpointed.

    Must come before `PeriodicCheckpoint` in the callback list. The logged values
    are running means since the last TensorBoard write, so one NaN step anywhere
    in that window makes them NaN.
    """

    def on_train_batch_end(self, batch, logs=None):
        bad = {k: v for k, v in (logs or {}).items() if not math.isfinite(float(v))}
        if bad:
            raise NonFiniteLossError(
                f"Non-finite loss at step {int(self.model.step.numpy())}: {bad}. Training stopped; the "
                "last good checkpoint is intact. Lower the learning rates (--g_learning_rate, "
                "--d_learning_rate) or train in float32 (--mixed_precision=off)."
            )


class StopOnInterrupt(keras.callbacks.Callback):
    """Ctrl-C (SIGINT) during training stops it after the current group of steps; a second one at once.

    The first SIGINT only sets `requested`, which `fit` reads after every group
    of steps: a KeyboardInterrupt raised wherever the main thread happens to be
    can land in code that swallows it (a finalizer, a checkpoint's background
    save) and be lost. The caller turns `requested` into its interruption.
    Nothing changes when SIGINT is not Python's default (ignored by the parent,
    or handled by someone else) or `fit` runs off the main thread.
    """

    def __init__(self):
        super().__init__()
        self.requested = False
        self._previous = None

    def on_train_begin(self, logs=None):
        if threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                self._previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, self._previous)  # A second Ctrl-C raises KeyboardInterrupt at once.

    def on_train_batch_end(self, batch, logs=None):
        if self.requested:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        self.restore()

    def restore(self):
        """Puts back the SIGINT handler it replaced (also when `fit` ended with an exception)."""
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


class PeriodicCheckpoint(keras.callbacks.Callback):
    """Saves a `tf.train.CheckpointManager` checkpoint every `every` steps."""

    def __init__(self, manager, every):
        super().__init__()
        self.manager = manager
        self.every = every
        self._last = None

    def on_train_begin(self, logs=None):
        self._last = int(self.model.step.numpy())

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.step.numpy())
        if _crossed(step, self._last, self.every):
            self.manager.save(checkpoint_number=step)
        self._last = step


class SummaryWriter(keras.callbacks.Callback):
    """TensorBoard scalars every `log_every` steps; image grids (and PNGs) every `sample_every`.

    After each scalar write the loss trackers are reset, so every point is the
    mean over the last `log_every` steps rather than since the start.
    Images come from `model.generate(z, labels)` on a fixed batch of latents
    `z` (and, class-conditional, `labels` cycling through the classes: one
    class per column), so a grid shows how the same samples evolve.
    """

    def __init__(self, logdir, samples_dir, z, log_every, sample_every, extra_images=None, labels=None):
        super().__init__()
        self.writer = tf.summary.create_file_writer(logdir)
        self.samples_dir = samples_dir
        self.z = z
        self.labels = labels
        # A conditional grid has one column per class.
        self.cols = None if labels is None else int(max(labels)) + 1
        self.log_every = log_every
        self.sample_every = sample_every
        # Optional callable step -> {name: images [N, H, W, C] in [-1, 1]} of model-specific
        # grids, written to TensorBoard and as samples/<name>_step_*.png.
        self.extra_images = extra_images
        self._last = None
        self._log_step = None
        self._log_time = None

    def on_train_begin(self, logs=None):
        self._last = self._log_step = int(self.model.step.numpy())
        self._log_time = time.perf_counter()
        if self._last == 0:
            self.write_images(0)

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.step.numpy())
        if _crossed(step, self._last, self.log_every):
            now = time.perf_counter()
            with self.writer.as_default(step=step):
                for name, value in (logs or {}).items():
                    tf.summary.scalar(f"train/{name}", float(value))
                tf.summary.scalar("speed/steps_per_sec", (step - self._log_step) / (now - self._log_time))
            self.model.reset_metrics()
            self._log_step, self._log_time = step, now
        if _crossed(step, self._last, self.sample_every):
            self.write_images(step)
        self._last = step

    def write_images(self, step):
        grids = {"samples": np.asarray(self.model.generate(self.z, self.labels))}
        if self.extra_images:
            grids.update(self.extra_images(step))
        with self.writer.as_default(step=step):
            for name, images in grids.items():
                tf.summary.image(name, image_utils.make_grid(images, self.cols)[None], step=step)
        self.writer.flush()
        for name, images in grids.items():
            # samples/step_*.png for the samples, samples/<name>_step_*.png for the extras.
            prefix = "" if name == "samples" else f"{name}_"
            image_utils.save_grid_png(
                images,
                os.path.join(self.samples_dir, f"{prefix}step_{step:07d}.png"),
                title=f"{name}, step {step}",
                cols=self.cols,
            )

    def on_train_end(self, logs=None):
        self.writer.flush()


class ProgressBar(keras.callbacks.Callback):
    """A tqdm bar over the whole run (resumed runs start part-way), with ETA and losses."""

    def __init__(self, total_steps):
        super().__init__()
        self.total_steps = total_steps
        self.bar = None

    def on_train_begin(self, logs=None):
        step = int(self.model.step.numpy())
        self.bar = tqdm.tqdm(total=self.total_steps, initial=step, unit="step", dynamic_ncols=True, mininterval=1.0)
        self._last = step

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.step.numpy())
        self.bar.update(step - self._last)
        self._last = step
        if logs:
            self.bar.set_postfix({k: f"{float(v):.3f}" for k, v in logs.items()}, refresh=False)

    def on_train_end(self, logs=None):
        self.bar.close()
