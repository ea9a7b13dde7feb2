"""Training a teacher from a `TrainConfig`: data, networks, model, run directory."""

import keras
from absl import logging

from tf_gkd.data import datasets
from tf_gkd.networks import factory
from tf_gkd.training import config as config_lib
from tf_gkd.training import gan as gan_lib
from tf_gkd.training import loop


def set_precision(policy):
    """Sets Keras's global dtype policy ('off' means float32)."""
    keras.mixed_precision.set_global_policy("float32" if policy == "off" else policy)


def make_optimizer(learning_rate, config):
    optimizer = keras.optimizers.Adam(learning_rate, beta_1=config.beta_1, beta_2=config.beta_2)
    if config.mixed_precision == "mixed_float16":
        # float16 gradients underflow without loss scaling; bfloat16 has float32's range.
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def load_train_data(config):
    raw_dir = datasets.resolve_raw_dir(config.dataset, config.raw_data_dir)
    return datasets.load_numpy(
        config.dataset, "train", data_dir=config.data_dir, raw_dir=raw_dir, download=config.download
    )


def build_gan(config):
    """The GAN of `config`, compiled."""
    keras.utils.set_random_seed(config.seed)
    generator = factory.make_generator(
        config.generator_kind, config.z_dim, config.generator_width, config.generator_depth
    )
    discriminator = factory.make_discriminator(
        config.discriminator_kind,
        config.discriminator_width,
        config.discriminator_depth,
        dropout=config.discriminator_dropout,
    )
    model = gan_lib.GAN(
        generator,
        discriminator,
        loss=config.loss,
        d_steps=config.d_steps,
        gp_weight=config.gp_weight,
        ema_decay=config.ema_decay,
        real_label=config.real_label,
        seed=config.seed,
    )
    model.compile(
        g_optimizer=make_optimizer(config.g_learning_rate, config),
        d_optimizer=make_optimizer(config.d_learning_rate, config),
        jit_compile=config.jit_compile,
        steps_per_execution=config.steps_per_execution,
    )
    return model


def train(config, workdir):
    """Trains (or resumes) the teacher of `config` in `workdir`; returns the model."""
    config_lib.write_or_check(config, workdir)
    set_precision(config.mixed_precision)
    images, labels = load_train_data(config)
    logging.info("Loaded %s: %d training images.", config.dataset, len(images))
    model = build_gan(config)
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
        final_models={"generator.keras": model.ema_generator, "discriminator.keras": model.discriminator},
    )
    return model
