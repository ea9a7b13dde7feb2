"""The adversary of a generator: a discriminator with its optimizer, loss and metrics.

A GAN contains one; a generator distiller contains one when its loss has an
adversarial, a feature or a distribution term, and none for pure mimicry. The
adversary trains its discriminator against real images (`train_step`), and
gives the generator side its terms: the generator loss of the discriminator's
logits, and the discriminator's `features` activations for feature-level losses.
A class-conditional discriminator (`factory.make_discriminator(num_classes=K)`)
takes the one-hot labels of each batch too: every method takes them, None
for an unconditional one.
"""

import keras
import tensorflow as tf

from tf_gkd import distribute
from tf_gkd.contract import conditioned
from tf_gkd.losses import gan as gan_losses
from tf_gkd.networks import factory


class Adversary:
    """A discriminator trained against real images with one of `tf_gkd.losses.gan.LOSSES`.

    Args:
      discriminator: Keras model images → logits [N, 1]; with a layer named
        `features` (`factory.FEATURES_LAYER`), `features_and_logits` is available.
      seed_generator: the owning model's `keras.random.SeedGenerator`, for the
        interpolation weights of the gradient penalty.
      loss: one of `tf_gkd.losses.gan.LOSSES`.
      gp_weight: weight of the gradient penalty (`wasserstein` only).
      real_label: target for real images (< 1: one-sided label smoothing; the
        sigmoid losses only).
      r1_weight: γ of the R1 penalty, (γ/2)·E‖∇D(x)‖² on real images; 0 leaves it out.
      r1_interval: the penalty is computed on every `r1_interval`-th discriminator
        update only, weighted `r1_interval` times (lazy regularisation, as in
        StyleGAN2): the same penalty on average for a fraction of its second
        backward pass.
    """

    def __init__(
        self,
        discriminator,
        seed_generator,
        loss="non_saturating",
        gp_weight=10.0,
        real_label=1.0,
        r1_weight=0.0,
        r1_interval=1,
    ):
        if r1_weight < 0:
            raise ValueError(f"r1_weight must be >= 0. Received: r1_weight={r1_weight}")
        if r1_interval < 1:
            raise ValueError(f"r1_interval must be >= 1. Received: r1_interval={r1_interval}")
        self.discriminator = discriminator
        self.seed_generator = seed_generator
        self.loss = loss
        self.generator_loss, self._discriminator_loss = gan_losses.get(loss)
        self.gp_weight = gp_weight
        self.real_label = real_label
        self.r1_weight = r1_weight
        self.r1_interval = r1_interval
        self.optimizer = None
        self._critic = None  # A view of the discriminator (no weights of its own) for feature losses.
        if factory.FEATURES_LAYER in [layer.name for layer in discriminator.layers]:
            features = discriminator.get_layer(factory.FEATURES_LAYER).output
            self._critic = keras.Model(discriminator.inputs, [features, discriminator.outputs[0]])
        self.loss_tracker = keras.metrics.Mean(name="d_loss")
        self.real_tracker = keras.metrics.Mean(name="d_real")
        self.fake_tracker = keras.metrics.Mean(name="d_fake")

    def compile(self, optimizer):
        self.optimizer = optimizer

    def logits(self, images, labels=None, training=True):
        """The discriminator's logits of `images` (of classes `labels`, one-hot, when it is conditional)."""
        return self.discriminator(conditioned(images, labels), training=training)

    def discriminator_loss(self, real, fake, real_labels=None, fake_labels=None):
        """(loss, real logits, fake logits) of the discriminator on a real and a fake batch (and their labels)."""
        # One pass over real and fake together: half the kernel launches of two
        # calls (the discriminator has no batch-dependent layers).
        labels = None if real_labels is None else tf.concat([real_labels, tf.cast(fake_labels, real_labels.dtype)], 0)
        logits = self.logits(tf.concat([real, tf.cast(fake, real.dtype)], 0), labels)
        real_logits, fake_logits = tf.split(logits, 2)
        loss = self._discriminator_loss(real_logits, fake_logits, real_label=self.real_label)

        def critic(images, training):
            # The penalties' images are taken as of the real images' classes (a GAN's fakes share them).
            return self.logits(images, real_labels, training)

        if self.loss == "wasserstein":
            alpha = distribute.uniform((tf.shape(real)[0], 1, 1, 1), self.seed_generator)
            loss += self.gp_weight * gan_losses.gradient_penalty(critic, real, fake, alpha)
        if self.r1_weight > 0:
            loss += 0.5 * self.r1_weight * self._r1(critic, real)
        return loss, real_logits, fake_logits

    def _r1(self, critic, real):
        """The R1 penalty of this update: every update's, or `r1_interval` times it on every `r1_interval`-th."""
        if self.r1_interval == 1:
            return gan_losses.r1_penalty(critic, real)
        due = tf.equal(self.optimizer.iterations % self.r1_interval, 0)
        return tf.cond(
            due,
            lambda: self.r1_interval * gan_losses.r1_penalty(critic, real),
            lambda: tf.zeros((), tf.float32),
        )

    def train_step(self, real, fake, real_labels=None, fake_labels=None):
        """One discriminator update on `real` and `fake` (no gradient reaches the generator); returns the loss terms."""
        with tf.GradientTape() as tape:
            loss, real_logits, fake_logits = self.discriminator_loss(
                real, tf.stop_gradient(fake), real_labels, fake_labels
            )
        distribute.minimize(self.optimizer, tape, loss, self.discriminator.trainable_weights)
        return loss, real_logits, fake_logits

    def features_and_logits(self, images, labels=None):
        """The discriminator's `features` activations and logits of `images` (and one-hot `labels`), in one pass."""
        if self._critic is None:
            raise ValueError(
                f"The discriminator {self.discriminator.name!r} has no {factory.FEATURES_LAYER!r} layer, which "
                "feature losses read: build it with tf_gkd.networks.factory.make_discriminator."
            )
        return self._critic(conditioned(images, labels), training=True)

    def update_metrics(self, loss, real_logits, fake_logits):
        """Records a step's discriminator loss and its mean D(x) on real and fake images."""
        self.loss_tracker.update_state(loss)
        self.real_tracker.update_state(tf.sigmoid(tf.cast(real_logits, tf.float32)))
        self.fake_tracker.update_state(tf.sigmoid(tf.cast(fake_logits, tf.float32)))

    @property
    def metrics(self):
        return [self.loss_tracker, self.real_tracker, self.fake_tracker]

    def build_optimizer(self):
        """Creates the optimizer's slots now so that a checkpoint can restore into them."""
        self.optimizer.build(self.discriminator.trainable_weights)

    def checkpoint_items(self):
        """The adversary's share of a run's checkpoint (the keys are those of earlier runs, which still load)."""
        return dict(discriminator=self.discriminator, d_optimizer=self.optimizer)
