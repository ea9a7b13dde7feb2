"""The run-directory life cycle shared by every trainer: resume, fit, save.

Checkpoints, TensorBoard events, sample grids and the final models go where
`tf_gkd.rundir` says. Re-running on the same directory resumes from the latest
checkpoint; a run that is already complete only (re)writes its final models.
"""

import os

import tensorflow as tf
from absl import logging

from tf_gkd import contract, rundir
from tf_gkd.data import datasets
from tf_gkd.networks import fast
from tf_gkd.networks import io as model_io
from tf_gkd.training import callbacks as cb


def checkpoint_dir(workdir):
    return os.path.join(workdir, rundir.CHECKPOINTS_DIR)


def restore(model, workdir, keep):
    """Builds the checkpoint of `model` and restores its latest state; returns the manager.

    `model` provides `checkpoint_items()` (objects to save), `build_optimizers()`
    and `step` (a counter saved among those objects).
    """
    checkpoint = tf.train.Checkpoint(**model.checkpoint_items())
    manager = tf.train.CheckpointManager(checkpoint, checkpoint_dir(workdir), max_to_keep=keep)
    model.build_optimizers()  # Keras creates optimizer slots lazily; restore needs them now.
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        logging.info("Resumed from %s (step %d).", manager.latest_checkpoint, int(model.step))
    return manager


def fit(model, make_dataset, config, workdir, final_models, extra_images=None):
    """Trains `model` to `config.train_steps` steps in `workdir`, then saves `final_models`.

    Args:
      model: a compiled Keras model with `checkpoint_items()`, `build_optimizers()`,
        `step` and `generate(z)`, and optionally `fit_callbacks` (Keras callbacks
        that its training needs).
      make_dataset: callable seed -> infinite tf.data.Dataset of training batches.
        A resumed run gets a seed derived from its step, so it does not replay the
        batches it has already seen.
      config: the run's `TrainConfig`.
      final_models: {file name: Keras model} written at the end, atomically,
        made of Keras's own layers (`tf_gkd.networks.fast.plain`).
      extra_images: optional callable step -> {name: images}, more grids for
        TensorBoard and `samples/<name>_step_*.png`.

    Raises:
      NonFiniteLossError: a loss became NaN/Inf; the last good checkpoint is kept.
    """
    manager = restore(model, workdir, config.keep_checkpoints)
    start = int(model.step)
    remaining = config.train_steps - start
    if remaining > 0:
        if remaining % config.steps_per_execution:
            raise ValueError(
                f"The run is at step {start}; the {remaining} remaining steps are not a multiple "
                f"of steps_per_execution={config.steps_per_execution}. Resume with the run's own "
                "--steps_per_execution."
            )
        z = contract.latents(config.num_samples, model.z_dim, config.seed)
        callbacks = [
            cb.NanGuard(),  # Before the checkpoint: a NaN step must never be saved.
            cb.PeriodicCheckpoint(manager, config.checkpoint_every),
            cb.SummaryWriter(
                os.path.join(workdir, rundir.TENSORBOARD_DIR),
                os.path.join(workdir, rundir.SAMPLES_DIR),
                z,
                config.log_every,
                config.sample_every,
                extra_images=extra_images,
            ),
            cb.ProgressBar(config.train_steps),
            *getattr(model, "fit_callbacks", []),
        ]
        logging.info("Training steps %d → %d in %s.", start, config.train_steps, workdir)
        model.fit(
            datasets.without_autotune(make_dataset(config.seed + start)),
            epochs=1,
            steps_per_epoch=remaining,
            callbacks=callbacks,
            verbose=0,
            shuffle=False,  # The dataset shuffles itself, seeded.
        )
        if manager.latest_checkpoint is None or int(model.step) != _checkpoint_step(manager):
            manager.save(checkpoint_number=int(model.step))
    else:
        logging.info("Run in %s is complete (step %d).", workdir, start)
    for name, network in final_models.items():
        path = os.path.join(workdir, name)
        # Keras's own layers in the file, so that it loads without tf_gkd.
        model_io.save_model_atomic(fast.plain(network), path)
        logging.info("Wrote %s", path)


def _checkpoint_step(manager):
    return int(manager.latest_checkpoint.rsplit("-", 1)[-1])
