"""The GAN teacher as a Keras model with its own `train_step`."""

import keras
import tensorflow as tf

from tf_gkd import distribute
from tf_gkd.losses import gan as gan_losses


def update_ema(ema_model, model, decay, step):
    """ema ← d·ema + (1 - d)·model for trainable weights; copies the rest (BN stats).

    d = min(decay, (1 + step) / (10 + step)) warms the average up, as
    `tf.train.ExponentialMovingAverage(num_updates=...)` does: early in training
    the average would otherwise be dominated by the random initial weights.
    """
    step = tf.cast(step, tf.float32)
    decay = tf.minimum(decay, (1.0 + step) / (10.0 + step))
    for ema_w, w in zip(ema_model.trainable_weights, model.trainable_weights):
        ema_w.assign_sub((1.0 - decay) * (ema_w - w))  # Three kernels per weight instead of four.
    for ema_w, w in zip(ema_model.non_trainable_weights, model.non_trainable_weights):
        ema_w.assign(w)


class GAN(keras.Model):
    """Generator and sigmoid discriminator trained adversarially.

    Args:
      generator: Keras model z [N, z_dim] → images [N, 28, 28, 1] in [-1, 1].
      discriminator: Keras model images → logits [N, 1].
      loss: one of `tf_gkd.losses.gan.LOSSES`.
      d_steps: discriminator updates per generator update (each on fresh z,
        the same real batch).
      gp_weight: weight of the gradient penalty (used by `wasserstein` only).
      ema_decay: decay of the exponential moving average of the generator's
        weights kept in `ema_generator`, the generator that is sampled and saved
        (averaging smooths out the oscillation of GAN training; 0 disables it).
      real_label: target for real images in the sigmoid losses (<1 is one-sided
        label smoothing).
      seed: seed of the model's `SeedGenerator` (z and interpolation weights).
    """

    def __init__(
        self,
        generator,
        discriminator,
        loss="non_saturating",
        d_steps=1,
        gp_weight=10.0,
        ema_decay=0.999,
        real_label=1.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if d_steps < 1:
            raise ValueError(f"d_steps must be >= 1. Received: d_steps={d_steps}")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1). Received: ema_decay={ema_decay}")
        self.generator = generator
        self.discriminator = discriminator
        self.loss_name = loss
        self.g_loss_fn, self.d_loss_fn = gan_losses.get(loss)
        self.d_steps = d_steps
        self.gp_weight = gp_weight
        self.ema_decay = ema_decay
        self.real_label = real_label
        self.z_dim = generator.input_shape[-1]
        self.ema_generator = keras.models.clone_model(generator)
        self.ema_generator.set_weights(generator.get_weights())
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.d_real_tracker = keras.metrics.Mean(name="d_real")
        self.d_fake_tracker = keras.metrics.Mean(name="d_fake")
        # Its networks are built; under a tf.distribute strategy Keras would otherwise
        # try to build this wrapper by calling it, and it has no `call`.
        self.built = True

    def compile(self, g_optimizer, d_optimizer, **kwargs):
        # Passing the generator's optimizer as `optimizer` stops Keras from
        # creating an unused default one.
        super().compile(optimizer=g_optimizer, **kwargs)
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer

    @property
    def metrics(self):
        return [self.d_loss_tracker, self.g_loss_tracker, self.d_real_tracker, self.d_fake_tracker]

    def sample_z(self, batch_size):
        return distribute.normal((batch_size, self.z_dim), self.seed_generator)

    def _discriminator_loss(self, real, fake):
        # One pass over real and fake together: half the kernel launches of two
        # calls (the discriminator has no batch-dependent layers).
        logits = self.discriminator(tf.concat([real, tf.cast(fake, real.dtype)], 0), training=True)
        real_logits, fake_logits = tf.split(logits, 2)
        if self.loss_name in ("non_saturating", "minimax"):
            loss = self.d_loss_fn(real_logits, fake_logits, real_label=self.real_label)
        else:
            loss = self.d_loss_fn(real_logits, fake_logits)
        if self.loss_name == "wasserstein":
            alpha = distribute.uniform((tf.shape(real)[0], 1, 1, 1), self.seed_generator)
            loss += self.gp_weight * gan_losses.gradient_penalty(self.discriminator, real, fake, alpha)
        return loss, real_logits, fake_logits

    def train_step(self, data):
        real = data[0] if isinstance(data, (tuple, list)) else data
        batch_size = tf.shape(real)[0]
        for _ in range(self.d_steps):
            with tf.GradientTape() as g_tape:
                fake = self.generator(self.sample_z(batch_size), training=True)
            with tf.GradientTape() as d_tape:
                d_loss, real_logits, fake_logits = self._discriminator_loss(real, tf.stop_gradient(fake))
            distribute.minimize(self.d_optimizer, d_tape, d_loss, self.discriminator.trainable_weights)

        # The generator step reuses the last fake batch and its recorded forward
        # pass (as the PyTorch DCGAN example does), saving one generator forward.
        with g_tape:
            g_loss = self.g_loss_fn(self.discriminator(fake, training=True))
        distribute.minimize(self.g_optimizer, g_tape, g_loss, self.generator.trainable_weights)
        update_ema(self.ema_generator, self.generator, self.ema_decay, self.g_optimizer.iterations)

        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        self.d_real_tracker.update_state(tf.sigmoid(tf.cast(real_logits, tf.float32)))
        self.d_fake_tracker.update_state(tf.sigmoid(tf.cast(fake_logits, tf.float32)))
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        # `evaluate` would otherwise call `self(x)`, which a GAN does not have.
        real = data[0] if isinstance(data, (tuple, list)) else data
        fake = self.ema_generator(self.sample_z(tf.shape(real)[0]), training=False)
        d_loss, _, fake_logits = self._discriminator_loss(real, fake)
        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(self.g_loss_fn(fake_logits))
        return {m.name: m.result() for m in self.metrics[:2]}

    def checkpoint_items(self):
        """Everything a resumed run needs, for `tf.train.Checkpoint(**items)`."""
        return dict(
            generator=self.generator,
            discriminator=self.discriminator,
            ema_generator=self.ema_generator,
            g_optimizer=self.g_optimizer,
            d_optimizer=self.d_optimizer,
            seed=self.seed_generator.state,
        )

    def build_optimizers(self):
        """Creates optimizer slots now so that a checkpoint can restore into them."""
        self.g_optimizer.build(self.generator.trainable_weights)
        self.d_optimizer.build(self.discriminator.trainable_weights)

    @property
    def step(self):
        """Number of generator updates so far (restored with the checkpoint)."""
        return self.g_optimizer.iterations

    def generate(self, z):
        """Images of the averaged generator for latents `z`."""
        return self.ema_generator(z, training=False)
