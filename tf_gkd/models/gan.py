"""The GAN teacher as a Keras model with its own `train_step`."""

import keras
import tensorflow as tf

from tf_gkd import contract, distribute
from tf_gkd.contract import conditioned
from tf_gkd.models import ema
from tf_gkd.models.adversary import Adversary
from tf_gkd.models.base import TrainStepModel


class GAN(TrainStepModel):
    """A generator trained against an adversary (a sigmoid discriminator, its optimizer, loss and metrics).

    Class-conditional when its networks are (`factory`'s `num_classes`):
    batches are then (images, int labels), and each fake batch is generated
    for the classes of the real batch it is judged with.

    Args:
      generator: Keras model z [N, z_dim] (, one-hot label [N, K]) → images [N, H, W, C] in [-1, 1].
      discriminator: Keras model images (, one-hot label) → logits [N, 1].
      loss: one of `tf_gkd.losses.gan.LOSSES`.
      d_steps: discriminator updates per generator update (each on fresh z,
        the same real batch).
      gp_weight: weight of the gradient penalty (used by `wasserstein` only).
      ema_decay: decay of the exponential moving average of the generator's
        weights kept in `ema_generator`, the generator that is sampled and saved
        (averaging smooths out the oscillation of GAN training; 0 disables it).
      real_label: target for real images in the sigmoid losses (<1 is one-sided
        label smoothing).
      r1_weight: γ of the discriminator's R1 penalty (0: none).
      r1_interval: the R1 penalty is applied every `r1_interval` discriminator
        updates, weighted as many times (`Adversary`).
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
        r1_weight=0.0,
        r1_interval=1,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if d_steps < 1:
            raise ValueError(f"d_steps must be >= 1. Received: d_steps={d_steps}")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1). Received: ema_decay={ema_decay}")
        self.generator = generator
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.adversary = Adversary(
            discriminator,
            self.seed_generator,
            loss=loss,
            gp_weight=gp_weight,
            real_label=real_label,
            r1_weight=r1_weight,
            r1_interval=r1_interval,
        )
        self.d_steps = d_steps
        self.ema_decay = ema_decay
        self.z_dim = contract.z_dim(generator)
        contract.check_conditioned_alike({"generator": generator, "discriminator": discriminator})
        self.num_classes = contract.num_classes(generator)
        self.ema_generator = ema.averaged_copy(generator)
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        # Its networks are built; under a tf.distribute strategy Keras would otherwise
        # try to build this wrapper by calling it, and it has no `call`.
        self.built = True

    def compile(self, g_optimizer, d_optimizer, **kwargs):
        # Passing the generator's optimizer as `optimizer` stops Keras from
        # creating an unused default one.
        super().compile(optimizer=g_optimizer, **kwargs)
        self.g_optimizer = g_optimizer
        self.adversary.compile(d_optimizer)

    @property
    def discriminator(self):
        return self.adversary.discriminator

    @property
    def metrics(self):
        d_loss, d_real, d_fake = self.adversary.metrics
        return [d_loss, self.g_loss_tracker, d_real, d_fake]

    def sample_z(self, batch_size):
        return distribute.normal((batch_size, self.z_dim), self.seed_generator)

    def _batch(self, data):
        """(real images, their one-hot labels or None) of a batch."""
        real = data[0] if isinstance(data, (tuple, list)) else data
        if not self.num_classes:
            return real, None
        if not isinstance(data, (tuple, list)):
            raise ValueError("A class-conditional GAN trains on batches of (images, labels).")
        return real, self.one_hot(data[1])

    def train_step(self, data):
        real, labels = self._batch(data)
        batch_size = tf.shape(real)[0]
        for _ in range(self.d_steps):
            with tf.GradientTape() as g_tape:
                fake = self.generator(conditioned(self.sample_z(batch_size), labels), training=True)
            d_terms = self.adversary.train_step(real, fake, labels, labels)

        # The generator step reuses the last fake batch and its recorded forward
        # pass (as the PyTorch DCGAN example does), saving one generator forward.
        with g_tape:
            g_loss = self.adversary.generator_loss(self.adversary.logits(fake, labels))
        distribute.minimize(self.g_optimizer, g_tape, g_loss, self.generator.trainable_weights)
        ema.update_ema(self.ema_generator, self.generator, self.ema_decay, self.g_optimizer.iterations)

        self.adversary.update_metrics(*d_terms)
        self.g_loss_tracker.update_state(g_loss)
        return self.logs()

    def test_step(self, data):
        # `evaluate` would otherwise call `self(x)`, which a GAN does not have.
        real, labels = self._batch(data)
        fake = self.ema_generator(conditioned(self.sample_z(tf.shape(real)[0]), labels), training=False)
        d_loss, _, fake_logits = self.adversary.discriminator_loss(real, fake, labels, labels)
        self.adversary.loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(self.adversary.generator_loss(fake_logits))
        return self.logs(self.metrics[:2])

    def checkpoint_items(self):
        """Everything a resumed run needs, for `tf.train.Checkpoint(**items)`."""
        return dict(
            generator=self.generator,
            ema_generator=self.ema_generator,
            g_optimizer=self.g_optimizer,
            seed=self.seed_generator.state,
            **self.adversary.checkpoint_items(),
        )

    def build_optimizers(self):
        """Creates optimizer slots now so that a checkpoint can restore into them."""
        self.g_optimizer.build(self.generator.trainable_weights)
        self.adversary.build_optimizer()

    @property
    def step(self):
        """Number of generator updates so far (restored with the checkpoint)."""
        return self.g_optimizer.iterations

    def generate(self, z, labels=None):
        """Images of the averaged generator for latents `z` (and int `labels`, conditional)."""
        return self.ema_generator(contract.generator_inputs(self.ema_generator, z, labels), training=False)
