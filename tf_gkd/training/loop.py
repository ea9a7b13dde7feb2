"""The run-directory life cycle shared by every trainer: resume, fit, save.

Checkpoints, TensorBoard events, sample grids and the final models go where
`tf_gkd.rundir` says. Re-running on the same directory resumes from the latest
checkpoint; a run that is already complete only (re)writes its final models.
"""

import os
import re

import tensorflow as tf
from absl import logging

from tf_gkd import contract, errors, files, rundir
from tf_gkd.data import datasets
from tf_gkd.networks import fast
from tf_gkd.networks import io as model_io
from tf_gkd.training import callbacks as cb

# The folder in which TensorFlow writes a checkpoint before renaming its files into place.
_UNFINISHED_SAVE = re.compile(r".+_temp$")


def checkpoint_dir(workdir):
    return os.path.join(workdir, rundir.CHECKPOINTS_DIR)


class ResumeError(errors.Error):
    """The run's checkpoints cannot be resumed as asked."""


def restore(model, workdir, keep, run_dir=None):
    """Builds the checkpoint of `model` and restores its newest state that loads; returns the manager.

    `model` provides `checkpoint_items()` (objects to save), `build_optimizers()`
    and `step` (a counter saved among those objects). The manager saves into
    `workdir`; the state is restored from `run_dir`'s checkpoints (default:
    `workdir`; a multi-worker run's other workers save into temporary
    directories and resume from the chief's). A checkpoint that does not load
    (say, truncated by a full disk) is skipped with a warning naming it, and
    the one before it is tried; the skipped files are left in place (the run
    overwrites them as it passes their steps again).

    Raises:
      ResumeError: the run has checkpoints and none of them loads.
    """
    directory = checkpoint_dir(run_dir or workdir)
    if run_dir is None:
        files.remove_leftovers(directory, _UNFINISHED_SAVE)
    checkpoint = tf.train.Checkpoint(**model.checkpoint_items())
    manager = tf.train.CheckpointManager(checkpoint, checkpoint_dir(workdir), max_to_keep=keep)
    model.build_optimizers()  # Keras creates optimizer slots lazily; restore needs them now.
    state = tf.train.get_checkpoint_state(directory)
    skipped = []
    for path in reversed(state.all_model_checkpoint_paths if state else []):
        try:
            checkpoint.restore(path).assert_existing_objects_matched()
        except Exception as e:  # Whatever a damaged file raises, it cannot be resumed from.
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            logging.warning("Skipped checkpoint %s: it does not load (%s).", path, reason)
            skipped.append(os.path.basename(path))
            continue
        logging.info("Resumed from %s (step %d).", path, int(model.step.numpy()))
        return manager
    if skipped:
        raise ResumeError(
            f"No checkpoint in {directory} loads (tried {', '.join(skipped)}; the reasons are above). Move "
            f"{directory} away to train the run again from step 0, or use a new --workdir."
        )
    return manager


def fit(model, make_dataset, config, workdir, final_models, extra_images=None, before_training=None, run_dir=None):
    """Trains `model` to `config.train_steps` steps in `workdir`, then saves `final_models`.

    Args:
      model: a compiled Keras model with `checkpoint_items()`, `build_optimizers()`,
        `step`, `num_classes` and `generate(z, labels)`, and optionally `fit_callbacks` (Keras callbacks
        that its training needs).
      make_dataset: callable seed -> infinite tf.data.Dataset of training batches.
        A resumed run gets a seed derived from its step, so it does not replay the
        batches it has already seen.
      config: the run's `TrainConfig`.
      final_models: {file name: Keras model} written at the end, atomically,
        made of Keras's own layers (`tf_gkd.networks.fast.plain`).
      extra_images: optional callable step -> {name: images}, more grids for
        TensorBoard and `samples/<name>_step_*.png`.
      before_training: optional callable step -> None, called once the run's
        state is restored and checked, before the loop writes anything (the
        caller writes its config there).
      run_dir: the run directory whose checkpoints are resumed, when this
        process writes elsewhere (a multi-worker run's other workers); default
        `workdir`.

    Raises:
      NonFiniteLossError: a loss became NaN/Inf; the last good checkpoint is kept.
      ResumeError: no checkpoint loads, or the remaining steps do not suit the run.
      Interrupted: Ctrl-C; the message gives the step of the last checkpoint.
    """
    manager = restore(model, workdir, config.keep_checkpoints, run_dir)
    start = int(model.step.numpy())
    remaining = config.train_steps - start
    if remaining > 0 and remaining % config.steps_per_execution:
        raise ResumeError(
            f"The run is at step {start}; the {remaining} remaining steps are not a multiple "
            f"of steps_per_execution={config.steps_per_execution}. Resume with the run's own "
            "--steps_per_execution."
        )
    if before_training is not None:
        before_training(start)
    if remaining > 0:
        z = contract.latents(config.num_samples, model.z_dim, config.seed)
        labels = contract.class_labels(config.num_samples, model.num_classes) if model.num_classes else None
        interrupt = cb.StopOnInterrupt()
        callbacks = [
            interrupt,
            cb.NanGuard(),  # Before the checkpoint: a NaN step must never be saved.
            cb.PeriodicCheckpoint(manager, config.checkpoint_every),
            cb.SummaryWriter(
                os.path.join(workdir, rundir.TENSORBOARD_DIR),
                os.path.join(workdir, rundir.SAMPLES_DIR),
                z,
                config.log_every,
                config.sample_every,
                extra_images=extra_images,
                labels=labels,
            ),
            cb.ProgressBar(config.train_steps),
            *getattr(model, "fit_callbacks", []),
        ]
        logging.info("Training steps %d → %d in %s.", start, config.train_steps, workdir)
        try:
            model.fit(
                datasets.without_autotune(make_dataset(config.seed + start)),
                epochs=1,
                steps_per_epoch=remaining,
                callbacks=callbacks,
                verbose=0,
                shuffle=False,  # The dataset shuffles itself, seeded.
            )
        except KeyboardInterrupt:
            interrupt.requested = True
        finally:
            interrupt.restore()
        if interrupt.requested:
            saved = f"step {_checkpoint_step(manager)}" if manager.latest_checkpoint else "none yet"
            step = int(model.step.numpy())
            raise errors.Interrupted(
                f"Interrupted at step {step} (last checkpoint: {saved}). Re-run the same command to resume."
            ) from None
        if manager.latest_checkpoint is None or int(model.step.numpy()) != _checkpoint_step(manager):
            manager.save(checkpoint_number=int(model.step.numpy()))
    else:
        logging.info("Run in %s is complete (step %d).", workdir, start)
    for name, network in final_models.items():
        path = os.path.join(workdir, name)
        # Keras's own layers in the file, so that it loads without tf_gkd.
        model_io.save_model_atomic(fast.plain(network), path)
        logging.info("Wrote %s", path)


def _checkpoint_step(manager):
    return int(manager.latest_checkpoint.rsplit("-", 1)[-1])
