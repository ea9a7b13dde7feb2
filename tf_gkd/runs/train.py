"""Training runs from a `TrainConfig` (teachers and students): data, networks, model, run directory.

The composition root of training: it builds a run's networks with the
factory (or loads the teacher's), turns them into their fast training versions
(`--fast_layers`), puts them into the model of the run, and hands that to the
training loop.
"""

import dataclasses
import json
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from tf_gkd import contract, distribute, files, precision, rundir
from tf_gkd.data import datasets
from tf_gkd.data import pairs as pairs_lib
from tf_gkd.models import distiller as distill_lib
from tf_gkd.models import gan as gan_lib
from tf_gkd.models import vae as vae_lib
from tf_gkd.networks import factory, fast, narrow
from tf_gkd.networks import io as model_io
from tf_gkd.runs import config as config_lib
from tf_gkd.runs import teacher as teacher_lib
from tf_gkd.runs import vae_report
from tf_gkd.training import loop


class _Offset(keras.optimizers.schedules.LearningRateSchedule):
    """`schedule` of the run's step for an optimizer whose first update is the run's step `offset`."""

    def __init__(self, schedule, offset):
        self.schedule = schedule
        self.offset = offset

    def __call__(self, step):
        return self.schedule(step + self.offset)

    def get_config(self):
        return {"schedule": keras.saving.serialize_keras_object(self.schedule), "offset": self.offset}


def make_optimizer(learning_rate, config, updates_per_step=1, first_step=0):
    """Adam of `config`; with `lr_decay=cosine` its rate decays to 0 over the run's updates.

    `first_step`: the run's step at which the optimizer makes its first update
    (a discriminator idle until then), so that its rate is the run's at every step.
    """
    if config.lr_decay == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, config.train_steps * updates_per_step)
        if first_step:
            learning_rate = _Offset(learning_rate, first_step)
    optimizer = keras.optimizers.Adam(learning_rate, beta_1=config.beta_1, beta_2=config.beta_2)
    if config.mixed_precision == "mixed_float16":
        # float16 gradients underflow without loss scaling; bfloat16 has float32's range.
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def for_training(config, *networks):
    """`networks` as they train: tf_gkd's fast layers with `fast_layers=auto`, as they are with `off`.

    None stays None. Called once every network of a model is built, so that
    the copies it makes do not change the initial weights of the networks
    built after them.
    """
    if config.fast_layers == "off":
        return networks
    return tuple(None if network is None else fast.accelerate(network) for network in networks)


def make_generator(config, image_shape, name="generator", num_classes=0):
    """The generator of `config`'s generator_* options (and z_dim) for images of `image_shape` (and `num_classes`)."""
    return factory.make_generator(
        config.generator_kind,
        config.z_dim,
        config.generator_width,
        config.generator_depth,
        name=name,
        image_shape=image_shape,
        num_classes=num_classes,
    )


def make_discriminator(config, image_shape, num_classes=0):
    """The discriminator of `config`'s discriminator_* options for images of `image_shape` (and `num_classes`)."""
    return factory.make_discriminator(
        config.discriminator_kind,
        config.discriminator_width,
        config.discriminator_depth,
        dropout=config.discriminator_dropout,
        image_shape=image_shape,
        num_classes=num_classes,
    )


def num_classes(config):
    """The number of classes of a `--conditional` run (the data's), 0 for an unconditional one.

    Raises:
      ConfigError: a conditional run on data without labels.
    """
    if not config.conditional:
        return 0
    names = datasets.DataSpec.of(config).label_names()
    if not names:
        raise config_lib.ConfigError(
            f"--conditional needs labelled data, and {config.dataset} has no labels (a folder has them from one "
            "level of class subfolders): drop --conditional, or use labelled data.",
            "conditional",
        )
    return len(names)


def load_split(config, split):
    """(uint8 images [N, S, S, C], int64 labels) of a split of the config's data.

    Raises:
      DataError: the data cannot be loaded.
      ConfigError: the network factory cannot build networks of the images' size.
    """
    spec = datasets.DataSpec.of(config)
    try:
        factory.stages(spec.image_shape())
    except ValueError as e:
        raise config_lib.ConfigError(f"{spec.name}: {e}", "image_size") from None
    return spec.load(split)


def build_gan(config, image_shape, num_classes=0):
    """The GAN of `config` for images of `image_shape` (H, W, C) (conditional on `num_classes` > 0), compiled."""
    keras.utils.set_random_seed(config.seed)
    generator = make_generator(config, image_shape, num_classes=num_classes)
    discriminator = make_discriminator(config, image_shape, num_classes)
    generator, discriminator = for_training(config, generator, discriminator)
    model = gan_lib.GAN(
        generator,
        discriminator,
        loss=config.loss,
        d_steps=config.d_steps,
        gp_weight=config.gp_weight,
        ema_decay=config.ema_decay,
        real_label=config.real_label,
        r1_weight=config.r1_weight,
        r1_interval=config.r1_interval,
        seed=config.seed,
    )
    model.compile(
        g_optimizer=make_optimizer(config.g_learning_rate, config),
        d_optimizer=make_optimizer(config.d_learning_rate, config, updates_per_step=config.d_steps),
        jit_compile=config.jit_compile,
        steps_per_execution=config.steps_per_execution,
    )
    return model


def build_vae(config, image_shape, num_classes=0):
    """The VAE of `config` for images of `image_shape` (H, W, C) (conditional on `num_classes` > 0), compiled.

    `generator_*` configure the decoder.
    """
    keras.utils.set_random_seed(config.seed)
    encoder = factory.make_encoder(
        config.encoder_kind,
        config.z_dim,
        config.encoder_width,
        config.encoder_depth,
        image_shape=image_shape,
        num_classes=num_classes,
    )
    decoder = make_generator(config, image_shape, name="decoder", num_classes=num_classes)
    encoder, decoder = for_training(config, encoder, decoder)
    model = vae_lib.VAE(
        encoder,
        decoder,
        beta=config.beta,
        likelihood=config.likelihood,
        gaussian_sigma=config.gaussian_sigma,
        seed=config.seed,
    )
    model.compile(
        optimizer=make_optimizer(config.g_learning_rate, config),
        jit_compile=config.jit_compile,
        steps_per_execution=config.steps_per_execution,
    )
    return model


def train(config, workdir):
    """Trains (or resumes) the model of `config` in `workdir`; returns it.

    The run directory is locked for the whole run, and nothing but its lock
    is written into it until every check (configuration, data, teacher,
    checkpoints) has passed: a run that fails early leaves no config behind.

    Raises:
      ConfigError, DataError, TeacherError, GeneratorLoadError, ResumeError:
        before training starts, when the configuration, the data, the teacher
        or the run's checkpoints are unusable.
      LockedError: another process is using `workdir`.
      NonFiniteLossError: a loss became NaN/Inf; the last good checkpoint is kept.
      Interrupted: Ctrl-C.
    """
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise config_lib.ConfigError(f"--workdir {workdir} is a file, not a directory: choose another --workdir.")
    strategy = distribute.make_strategy(config.strategy, config.cluster_resolver, config.cluster_timeout)
    if strategy.num_replicas_in_sync > 1:
        logging.info("Training on %d replicas (%s).", strategy.num_replicas_in_sync, config.strategy)
    if distribute.worker(strategy) is not None:
        # Paths may differ between machines; every other option must be the same on every worker.
        options = dataclasses.replace(config, data_dir=None, raw_data_dir=None)
        if not distribute.same_everywhere(strategy, json.dumps(dataclasses.asdict(options), sort_keys=True)):
            raise config_lib.ConfigError(
                "The workers of this run were started with different options: start every worker with the same "
                "command (only --data_dir and --raw_data_dir may differ)."
            )
    if not distribute.is_chief(strategy):
        # Another worker of a multi-worker run: the same steps and saves as the chief, written to a
        # temporary directory of its own that goes at the end; it resumes from the chief's checkpoints.
        task_type, task_id = distribute.worker(strategy)
        with files.process_directory(f"{task_type}{task_id}") as own_dir:
            logging.info(
                "Worker %s %d: the chief writes %s; this worker writes to %s.", task_type, task_id, workdir, own_dir
            )
            with strategy.scope():
                return _train(config, own_dir, run_dir=workdir)
    with files.locked(files.directory_lock(workdir), f"Run directory {workdir}"):
        for directory in (workdir, os.path.join(workdir, rundir.SAMPLES_DIR)):
            files.remove_leftovers(directory)
        # Every network (the teacher's too), optimizer and metric is created in the
        # scope, so that each replica holds a copy.
        with strategy.scope():
            return _train(config, workdir)


def _train(config, workdir, run_dir=None):
    """`train` inside the strategy's scope; writes go to `workdir`, the run is `run_dir` (default: `workdir`)."""
    teacher = None
    if config.model == "distill":
        # The student takes the teacher's z; checked before anything is written.
        teacher = teacher_lib.load_teacher(config.teacher, config.dataset)
        # The teacher runs on every step (and writes the offline pairs): in its fast version too.
        generator, encoder = for_training(config, teacher.generator, teacher.encoder)
        teacher = dataclasses.replace(teacher, generator=generator, encoder=encoder)
        if config.init_discriminator and teacher.discriminator_path is None:
            raise teacher_lib.TeacherError(
                f"Teacher {teacher.run_dir} has no {rundir.DISCRIMINATOR_FILE} to start from "
                "(a VAE run has none): drop --init_discriminator."
            )
        if config.student_init == "teacher":
            kind, depth = teacher.config.get("generator_kind"), teacher.config.get("generator_depth")
            if (kind, depth) != (config.generator_kind, config.generator_depth):
                raise teacher_lib.TeacherError(
                    "--student_init=teacher needs a student of the teacher's kind and depth: teacher "
                    f"{teacher.run_dir} has generator_kind={kind!r}, generator_depth={depth}; the student "
                    "generator_kind="
                    f"{config.generator_kind!r}, generator_depth={config.generator_depth}. Pass --student_kind and "
                    "--student_depth to match."
                )
        if config.z_dim != teacher.z_dim:
            logging.info("Student z_dim set to the teacher's, %d.", teacher.z_dim)
            config = dataclasses.replace(config, z_dim=teacher.z_dim)
    # The policy `auto` stands for on this machine: what the run records and resumes with.
    config = dataclasses.replace(config, mixed_precision=precision.resolve(config.mixed_precision))
    config_lib.check_resume(config, run_dir or workdir)
    precision.apply(config.mixed_precision)
    images, labels = load_split(config, "train")
    logging.info("Loaded %s: %d training images.", config.dataset, len(images))
    classes = num_classes(config)
    if teacher is not None:
        teacher_lib.check_image_shape(teacher, images.shape[1:], config.dataset)
        teacher_lib.check_conditioning(teacher, classes)
        return _train_distill(config, workdir, images, labels, teacher, run_dir)
    return _TRAINERS[config.model](config, workdir, images, labels, classes, run_dir)


def _train_gan(config, workdir, images, labels, classes, run_dir):
    """The GAN branch of `train`."""
    model = build_gan(config, images.shape[1:], classes)
    logging.info(
        "Generator %s: %d parameters; discriminator: %d.",
        config.generator_kind,
        model.generator.count_params(),
        model.discriminator.count_params(),
    )
    loop.fit(
        model,
        lambda seed: datasets.train_dataset(images, labels, config.batch_size, seed),
        config,
        workdir,
        final_models={rundir.GENERATOR_FILE: model.ema_generator, rundir.DISCRIMINATOR_FILE: model.discriminator},
        before_training=lambda step: config_lib.record(config, workdir, step),
        run_dir=run_dir,
    )
    return model


def _train_vae(config, workdir, images, labels, classes, run_dir):
    """The VAE branch of `train`: fit, then the held-out evaluation and latent pictures."""
    model = build_vae(config, images.shape[1:], classes)
    logging.info(
        "VAE: %s encoder, %d parameters; %s decoder: %d.",
        config.encoder_kind,
        model.encoder.count_params(),
        config.generator_kind,
        model.decoder.count_params(),
    )
    test_images, test_labels = load_split(config, "test")
    test_images = datasets.to_float(test_images).numpy()
    # Each tile of the reconstruction grid holds two images: num_samples images in all.
    shown = test_images[: max(1, config.num_samples // 2)]
    shown_labels = test_labels[: len(shown)] if model.num_classes else None
    loop.fit(
        model,
        lambda seed: datasets.train_dataset(images, labels, config.batch_size, seed),
        config,
        workdir,
        final_models={rundir.DECODER_FILE: model.decoder, rundir.ENCODER_FILE: model.encoder},
        extra_images=lambda step: {"reconstructions": vae_report.reconstruction_pairs(model, shown, shown_labels)},
        before_training=lambda step: config_lib.record(config, workdir, step),
        run_dir=run_dir,
    )
    vae_report.write_report(
        model,
        workdir,
        test_images,
        test_labels,
        f"{config.dataset} test split",
        label_names=datasets.DataSpec.of(config).label_names(),
    )
    return model


def build_distiller(config, teacher):
    """The `GeneratorDistiller` of `config` for a `teacher_lib.Teacher`, compiled.

    The student starts from the teacher's generator with `student_init=teacher`;
    in offline mode (`offline_pairs`) the distiller is given no teacher network
    to run. The discriminator (needed by the adversarial, feature and
    distribution terms) starts from the teacher's with `init_discriminator`.
    """
    keras.utils.set_random_seed(config.seed)
    image_shape = model_io.image_shape(teacher.generator)
    classes = contract.num_classes(teacher.generator)
    student = make_generator(config, image_shape, name="student", num_classes=classes)
    if config.student_init == "teacher":
        narrow.narrow_from(teacher.generator, student)
    if config.offline_pairs:
        teacher = dataclasses.replace(teacher, generator=None, encoder=None)
    discriminator = None
    if config.adversarial_weight > 0 or config.feature_weight > 0 or config.distribution_weight > 0:
        if config.init_discriminator:
            discriminator = keras.saving.load_model(teacher.discriminator_path, safe_mode=True, compile=False)
        else:
            discriminator = make_discriminator(config, image_shape, classes)
    # Already fast networks (a teacher loaded by `train`) are left as they are.
    student, discriminator, teacher_generator, teacher_encoder = for_training(
        config, student, discriminator, teacher.generator, teacher.encoder
    )
    model = distill_lib.GeneratorDistiller(
        teacher_generator,
        student,
        discriminator,
        teacher_encoder=teacher_encoder,
        pixel_loss=config.pixel_loss,
        pixel_weight=config.pixel_weight,
        adversarial_weight=config.adversarial_weight,
        feature_weight=config.feature_weight,
        distribution_weight=config.distribution_weight,
        distribution_target=config.distribution_target,
        posterior_fraction=config.posterior_fraction,
        pixel_weight_schedule=config.pixel_weight_schedule,
        adversarial_weight_schedule=config.adversarial_weight_schedule,
        total_steps=config.train_steps,
        loss=config.loss,
        gp_weight=config.gp_weight,
        ema_decay=config.ema_decay,
        real_label=config.real_label,
        r1_weight=config.r1_weight,
        r1_interval=config.r1_interval,
        seed=config.seed,
    )
    model.compile(
        optimizer=make_optimizer(config.g_learning_rate, config),
        d_optimizer=make_optimizer(config.d_learning_rate, config, first_step=model.adversary_start)
        if discriminator is not None
        else None,
        jit_compile=config.jit_compile,
        steps_per_execution=config.steps_per_execution,
    )
    return model


def distill_dataset(model, config, images, labels, seed, pairs=None):
    """The batches of `GeneratorDistiller` `model`: real images if it uses them, teacher pairs if given.

    `pairs` is `pairs_lib.pairs_dataset` of an offline run. Pure online mimicry
    draws z in the train step and reads no image: its batches only carry their size.
    """
    parts = []
    if model.uses_real_images:
        real = datasets.train_dataset(images, labels, config.batch_size, seed)
        if model.num_classes:
            parts.append(real.map(lambda x, y: {"real": x, "real_labels": y}))
        else:
            parts.append(real.map(lambda x, y: {"real": x}))
    if pairs is not None:
        shuffled = pairs.cache().shuffle(min(config.offline_pairs, 50_000), seed=seed).repeat()
        parts.append(shuffled.batch(config.batch_size, drop_remainder=True))
    if not parts:
        return tf.data.Dataset.from_tensors({"batch": tf.zeros([config.batch_size, 0])}).repeat()
    dataset = parts[0] if len(parts) == 1 else tf.data.Dataset.zip(*parts).map(lambda r, t: {**r, **t})
    return dataset.prefetch(datasets.PREFETCH_BATCHES)


def _train_distill(config, workdir, images, labels, teacher, run_dir):
    """The distillation branch of `train`: online, or offline from a file of teacher pairs.

    Offline, the teacher writes its pairs once the run's checks have passed,
    and from then on is not used: the first pairs are the fixed grid's (same
    latents).
    """
    fixed_z = contract.latents(config.num_samples, config.z_dim, config.seed)
    pairs_path = os.path.join(workdir, rundir.PAIRS_FILE)
    teacher_generator = teacher.generator
    image_shape = model_io.image_shape(teacher_generator)
    classes = contract.num_classes(teacher_generator)
    fixed_labels = contract.class_labels(config.num_samples, classes) if classes else None
    model = build_distiller(config, teacher)
    logging.info(
        "Student %s: %d parameters; teacher: %s.",
        config.generator_kind,
        model.student.count_params(),
        config.teacher,
    )
    teacher_grid = None

    def before_training(step):
        nonlocal teacher_grid
        config_lib.record(config, workdir, step)
        if config.offline_pairs and not os.path.exists(pairs_path):
            logging.info("Writing %d teacher pairs to %s.", config.offline_pairs, pairs_path)
            pairs_lib.write_pairs(teacher_generator, pairs_path, config.offline_pairs, config.seed)
        if config.offline_pairs:
            pairs = pairs_lib.pairs_dataset(pairs_path, config.z_dim, image_shape, classes)
            teacher_grid = np.stack([p["teacher"] for p in pairs.take(config.num_samples).as_numpy_iterator()])
        else:
            inputs = contract.generator_inputs(teacher_generator, fixed_z, fixed_labels)
            teacher_grid = np.asarray(teacher_generator(inputs, training=False))

    def make_dataset(seed):
        pairs = None
        if config.offline_pairs:
            pairs = pairs_lib.pairs_dataset(pairs_path, config.z_dim, image_shape, classes)
        return distill_dataset(model, config, images, labels, seed, pairs)

    def side_by_side(step):
        student = np.asarray(model.generate(fixed_z, fixed_labels))
        return {"teacher_vs_student": np.concatenate([teacher_grid, student], axis=2)}

    loop.fit(
        model,
        make_dataset,
        config,
        workdir,
        final_models={rundir.STUDENT_FILE: model.ema_student},
        extra_images=side_by_side,
        before_training=before_training,
        run_dir=run_dir,
    )
    return model


_TRAINERS = {"gan": _train_gan, "vae": _train_vae}
