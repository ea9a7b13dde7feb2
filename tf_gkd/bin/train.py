"""gkd-train and gkd-distill: train a teacher, or distil it into a student, in a run directory.

    gkd-train --model=gan --workdir=runs/teacher --flagfile=flags/gan_quickstart.cfg
    gkd-train --model=vae --workdir=runs/vae --flagfile=flags/fashion_mnist_vae.cfg
    gkd-distill --teacher=runs/teacher --workdir=runs/student --flagfile=flags/distill_20x.cfg
    gkd-distill --teacher=runs/teacher --workdir=runs/baseline --flagfile=flags/distill_20x.cfg --baseline

gkd-distill is gkd-train with --model=distill, the student sized by --student_kind,
--student_width and --student_depth (aliases of the generator_* flags), and the
teacher's dataset by default; --baseline trains the same student from scratch as a
plain GAN instead. Re-running on the same --workdir resumes from its last checkpoint.
"""

import dataclasses
import sys

from absl import app, flags, logging

from tf_gkd import distribute
from tf_gkd.bin import common_flags
from tf_gkd.data import datasets
from tf_gkd.distillation import teacher as teacher_lib
from tf_gkd.losses import distill as distill_losses
from tf_gkd.losses import gan as gan_losses
from tf_gkd.losses import vae as vae_losses
from tf_gkd.networks import factory
from tf_gkd.networks import io as model_io
from tf_gkd.training import callbacks
from tf_gkd.training import config as config_lib
from tf_gkd.training import runs

_DEFAULTS = config_lib.TrainConfig()

flags.DEFINE_enum(
    "model", _DEFAULTS.model, config_lib.MODELS,
    "What to train: gan, vae (the generator_* flags then configure its decoder), or distill "
    "(a student generator of the generator_* flags; see gkd-distill).",
)
flags.DEFINE_string("workdir", None, "Run directory: config, checkpoints, TensorBoard, samples, models.")
# Data.
common_flags.define_data_flags("Training dataset.", download_default=_DEFAULTS.download)
# Networks.
flags.DEFINE_integer("z_dim", _DEFAULTS.z_dim, "Latent size.", lower_bound=1)
flags.DEFINE_enum("generator_kind", _DEFAULTS.generator_kind, factory.KINDS, "Generator architecture.")
flags.DEFINE_float("generator_width", _DEFAULTS.generator_width, "Generator width multiplier (> 0).")
flags.DEFINE_integer("generator_depth", None, "Generator depth (default: the kind's own).", lower_bound=0)
flags.DEFINE_enum("discriminator_kind", _DEFAULTS.discriminator_kind, factory.TRUNK_KINDS, "Discriminator architecture.")
flags.DEFINE_float("discriminator_width", _DEFAULTS.discriminator_width, "Discriminator width multiplier (> 0).")
flags.DEFINE_integer("discriminator_depth", None, "Discriminator depth (default: the kind's own).", lower_bound=0)
flags.DEFINE_float(
    "discriminator_dropout", _DEFAULTS.discriminator_dropout, "Dropout before the discriminator's logit.",
    lower_bound=0, upper_bound=0.99,
)
flags.DEFINE_enum("encoder_kind", _DEFAULTS.encoder_kind, factory.TRUNK_KINDS, "VAE encoder architecture (model=vae).")
flags.DEFINE_float("encoder_width", _DEFAULTS.encoder_width, "VAE encoder width multiplier (> 0).")
flags.DEFINE_integer("encoder_depth", None, "VAE encoder depth (default: the kind's own).", lower_bound=0)
flags.DEFINE_enum(
    "likelihood", _DEFAULTS.likelihood, vae_losses.LIKELIHOODS,
    "VAE reconstruction likelihood on [0, 1] pixels: bernoulli (cross-entropy) or gaussian (fixed sigma).",
)
flags.DEFINE_float(
    "gaussian_sigma", _DEFAULTS.gaussian_sigma, "Fixed sigma of the gaussian likelihood, on [0, 1] pixels (> 0)."
)
flags.DEFINE_float("beta", _DEFAULTS.beta, "Weight of the VAE's KL term (1: the ELBO).", lower_bound=0)
# Distillation (model=distill).
flags.DEFINE_string("teacher", None, "Run directory of the teacher (a finished gkd-train run).")
flags.DEFINE_boolean(
    "init_discriminator", _DEFAULTS.init_discriminator, "Start the student's discriminator from the teacher's."
)
flags.DEFINE_enum("pixel_loss", _DEFAULTS.pixel_loss, distill_losses.PIXEL_LOSSES, "Pixel mimicry loss.")
flags.DEFINE_float("pixel_weight", _DEFAULTS.pixel_weight, "Weight of pixel mimicry.", lower_bound=0)
flags.DEFINE_float(
    "adversarial_weight", _DEFAULTS.adversarial_weight, "λ: weight of the adversarial term (0: no GAN loss).",
    lower_bound=0,
)
flags.DEFINE_float(
    "feature_weight", _DEFAULTS.feature_weight, "Weight of discriminator-feature mimicry.", lower_bound=0
)
flags.DEFINE_float(
    "posterior_fraction", _DEFAULTS.posterior_fraction,
    "VAE teachers: share of each batch with z from the teacher encoder's posterior on real images.",
    lower_bound=0, upper_bound=1,
)
flags.DEFINE_integer(
    "offline_pairs", _DEFAULTS.offline_pairs,
    "Offline distillation: write this many (z, teacher image) pairs first, then train from them alone "
    "(0: query the teacher online).",
    lower_bound=0,
)
# Optimisation.
flags.DEFINE_enum("loss", _DEFAULTS.loss, gan_losses.LOSSES, "GAN loss.")
flags.DEFINE_integer("d_steps", _DEFAULTS.d_steps, "Discriminator updates per generator update.", lower_bound=1)
flags.DEFINE_float("gp_weight", _DEFAULTS.gp_weight, "Gradient-penalty weight (wasserstein loss).", lower_bound=0)
flags.DEFINE_float("real_label", _DEFAULTS.real_label, "Target for real images (<1: one-sided label smoothing).")
flags.DEFINE_float("ema_decay", _DEFAULTS.ema_decay, "Decay of the generator weight average that is saved; 0 disables.")
flags.DEFINE_float(
    "g_learning_rate", _DEFAULTS.g_learning_rate, "Adam learning rate of the generator (gan) or the whole VAE (vae).",
    lower_bound=0,
)
flags.DEFINE_float("d_learning_rate", _DEFAULTS.d_learning_rate, "Discriminator Adam learning rate.", lower_bound=0)
flags.DEFINE_enum(
    "lr_decay", _DEFAULTS.lr_decay, config_lib.LR_DECAYS,
    "Learning-rate schedule: none (constant) or cosine (to 0 at --train_steps).",
)
flags.DEFINE_float("beta_1", _DEFAULTS.beta_1, "Adam beta_1.", lower_bound=0, upper_bound=1)
flags.DEFINE_float("beta_2", _DEFAULTS.beta_2, "Adam beta_2.", lower_bound=0, upper_bound=1)
flags.DEFINE_integer("batch_size", _DEFAULTS.batch_size, "Batch size.", lower_bound=1)
flags.DEFINE_integer("train_steps", _DEFAULTS.train_steps, "Total generator (gan) or VAE (vae) updates.", lower_bound=1)
flags.DEFINE_integer("seed", _DEFAULTS.seed, "Seed of weights, latents and data order.")
# Runtime.
flags.DEFINE_enum(
    "strategy", _DEFAULTS.strategy, distribute.STRATEGIES,
    "tf.distribute strategy: default (one device), mirrored (this machine's GPUs), multi_worker (machines "
    "listed in TF_CONFIG). --batch_size is the global batch, split across the replicas.",
)
flags.DEFINE_boolean("jit_compile", _DEFAULTS.jit_compile, "Compile the train step with XLA.")
flags.DEFINE_enum(
    "mixed_precision",
    _DEFAULTS.mixed_precision,
    config_lib.MIXED_PRECISION,
    "Keras dtype policy: mixed_bfloat16 for CPUs with AMX/AVX512-BF16 and recent GPUs, "
    "mixed_float16 (with loss scaling) for GPUs.",
)
flags.DEFINE_integer(
    "steps_per_execution", _DEFAULTS.steps_per_execution, "Train steps fused into one tf.function call.", lower_bound=1
)
# Outputs.
flags.DEFINE_integer("log_every", _DEFAULTS.log_every, "Steps between TensorBoard scalar writes.", lower_bound=1)
flags.DEFINE_integer("sample_every", _DEFAULTS.sample_every, "Steps between sample grids.", lower_bound=1)
flags.DEFINE_integer("checkpoint_every", _DEFAULTS.checkpoint_every, "Steps between checkpoints.", lower_bound=1)
flags.DEFINE_integer("keep_checkpoints", _DEFAULTS.keep_checkpoints, "Checkpoints kept.", lower_bound=1)
flags.DEFINE_integer("num_samples", _DEFAULTS.num_samples, "Images in each sample grid.", lower_bound=1)

FLAGS = flags.FLAGS


def config_from_flags(flag_values=FLAGS, **overrides):
    """The `TrainConfig` given by the parsed flags and `overrides`; invalid combinations are usage errors."""
    values = {f.name: flag_values[f.name].value for f in dataclasses.fields(config_lib.TrainConfig)}
    values.update(overrides)
    try:
        return config_lib.TrainConfig(**values)
    except config_lib.ConfigError as e:
        raise app.UsageError(str(e)) from None


_ERRORS = (
    datasets.DataError,
    config_lib.ConfigError,
    callbacks.NonFiniteLossError,
    teacher_lib.TeacherError,
    model_io.GeneratorLoadError,
)


def _train(config):
    try:
        runs.train(config, FLAGS.workdir)
    except _ERRORS as e:
        logging.error("%s", e)
        sys.exit(1)
    logging.info("Done: %s", FLAGS.workdir)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    _train(config_from_flags())


def distill_main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS["model"].present:
        raise app.UsageError("gkd-distill trains students: drop --model (--baseline trains one from scratch).")
    overrides = {"model": "gan" if FLAGS.baseline else "distill"}
    if FLAGS.teacher and not FLAGS["dataset"].present:
        try:
            overrides["dataset"] = teacher_lib.read_config(FLAGS.teacher).get("dataset")
        except teacher_lib.TeacherError as e:
            logging.error("%s", e)
            sys.exit(1)
    _train(config_from_flags(**overrides))


def run():
    flags.mark_flag_as_required("workdir")
    app.run(main)


def run_distill():
    for role in ("kind", "width", "depth"):
        flags.DEFINE_alias(f"student_{role}", f"generator_{role}")
    # The 20x student of the default teacher (flags/distill_20x.cfg), not a teacher-sized one.
    flags.FLAGS.set_default("generator_kind", "conv4")
    flags.FLAGS.set_default("generator_width", 0.25)
    flags.DEFINE_boolean(
        "baseline", False, "Train the student architecture from scratch as a plain GAN (no teacher), for comparison."
    )
    flags.mark_flag_as_required("workdir")
    flags.mark_flag_as_required("teacher")
    app.run(distill_main)


if __name__ == "__main__":
    run()
