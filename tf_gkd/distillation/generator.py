"""Generator distillation: a small student generator learns to reproduce a frozen teacher.

For each batch the student and the teacher see the same latents z; the
student's loss is

    L = w_pixel · |S(z) - T(z)|  +  λ · L_GAN(D(S(z)))  +  w_feature · ‖f(S(z)) - f(T(z))‖²

where D is a discriminator trained against real images (as in a GAN) and f its
`features` layer. λ = 0 and w_feature = 0 give pure mimicry, with no
discriminator at all. Targets come from the teacher on the fly (online) or from
a file of (z, T(z)) pairs written beforehand (offline: the teacher is not
needed while the student trains; see `tf_gkd.distillation.pairs`).

A VAE teacher's decoder is distilled like a GAN generator; given the teacher's
encoder, part of every batch takes z from the posterior q(z|x) of real images
instead of the prior, so that the student also learns the region of latent
space the decoder was trained on.
"""

import keras
import tensorflow as tf

from tf_gkd import distribute
from tf_gkd.losses import distill as distill_losses
from tf_gkd.training import gan as gan_lib


class GeneratorDistiller(gan_lib.GAN):
    """Trains `student` to mimic the frozen `teacher` (plus an optional adversarial term).

    Args:
      teacher: generator z [N, z_dim] → images [N, 28, 28, 1]; frozen here.
        None for offline training, where every batch brings its targets.
      student: generator with the same z_dim, trained.
      discriminator: images → logits with a `features` layer, trained against
        real images; required when `adversarial_weight` or `feature_weight` > 0,
        otherwise None.
      teacher_encoder: optional VAE encoder images → [mean, log_var] (frozen);
        with it, a `posterior_fraction` of each batch takes z from q(z|x) of the
        batch's real images.
      pixel_loss: one of `tf_gkd.losses.distill.PIXEL_LOSSES`.
      pixel_weight, adversarial_weight, feature_weight: the loss weights (λ is
        `adversarial_weight`).
      posterior_fraction: share of each batch with posterior latents (VAE teachers).
      loss, ema_decay, real_label, seed: as for `tf_gkd.training.gan.GAN`; the
        saved student is the weight average `ema_generator`.

    Batches are dicts: {"real": images} online, {"real", "z", "teacher"}
    offline (the teacher's images for those z, precomputed). Online training
    that reads no images (`uses_real_images` is False: pure mimicry of a GAN
    teacher) takes {"batch": a [N, 0] tensor}, which only gives the batch size
    N, so that no input pipeline competes with the train step for the CPU.
    """

    def __init__(
        self,
        teacher,
        student,
        discriminator=None,
        teacher_encoder=None,
        pixel_loss="l1",
        pixel_weight=1.0,
        adversarial_weight=0.0,
        feature_weight=0.0,
        posterior_fraction=0.5,
        loss="non_saturating",
        ema_decay=0.999,
        real_label=1.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(
            student, discriminator, loss=loss, ema_decay=ema_decay, real_label=real_label, seed=seed, **kwargs
        )
        needs_discriminator = adversarial_weight > 0 or feature_weight > 0
        if needs_discriminator and discriminator is None:
            raise ValueError(
                "adversarial_weight and feature_weight need a discriminator. Received: "
                f"adversarial_weight={adversarial_weight}, feature_weight={feature_weight}, discriminator=None"
            )
        if not needs_discriminator and discriminator is not None:
            raise ValueError("A discriminator is only trained when adversarial_weight or feature_weight > 0.")
        if teacher is not None and teacher.input_shape[-1] != student.input_shape[-1]:
            raise ValueError(
                f"Teacher and student must take the same z: teacher z_dim={teacher.input_shape[-1]}, "
                f"student z_dim={student.input_shape[-1]}."
            )
        if not 0.0 <= posterior_fraction <= 1.0:
            raise ValueError(f"posterior_fraction must be in [0, 1]. Received: {posterior_fraction}")
        self.teacher = teacher
        if teacher is not None:
            teacher.trainable = False
        self.teacher_encoder = teacher_encoder
        if teacher_encoder is not None:
            teacher_encoder.trainable = False
        self.pixel_loss_fn = distill_losses.pixel_loss(pixel_loss)
        self.pixel_weight = pixel_weight
        self.adversarial_weight = adversarial_weight
        self.feature_weight = feature_weight
        self.posterior_fraction = posterior_fraction
        if discriminator is not None:
            # One pass gives the features (for mimicry) and the logits (for L_GAN).
            self.critic = keras.Model(
                discriminator.inputs, [discriminator.get_layer("features").output, discriminator.outputs[0]]
            )
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.pixel_tracker = keras.metrics.Mean(name="pixel")
        self.psnr_tracker = keras.metrics.Mean(name="psnr")
        self.adversarial_tracker = keras.metrics.Mean(name="adversarial")
        self.feature_tracker = keras.metrics.Mean(name="feature")

    def compile(self, g_optimizer, d_optimizer=None, **kwargs):
        super().compile(g_optimizer=g_optimizer, d_optimizer=d_optimizer, **kwargs)

    @property
    def metrics(self):
        metrics = [self.loss_tracker, self.pixel_tracker, self.psnr_tracker]
        if self.discriminator is not None:
            metrics += [self.adversarial_tracker, self.feature_tracker] + super().metrics
        return metrics

    @property
    def uses_real_images(self):
        """Whether online batches need real images: for the discriminator, or for posterior latents."""
        return self.discriminator is not None or (self.teacher_encoder is not None and self.posterior_fraction > 0)

    def _targets(self, data):
        """(z, teacher images) of a batch: read from it offline, computed online."""
        if "z" in data:
            return data["z"], data["teacher"]
        if self.teacher is None:
            raise ValueError("Without a teacher, every batch must bring its targets: {'real', 'z', 'teacher'}.")
        if "real" not in data and self.uses_real_images:
            raise ValueError(f"Batches must bring real images, {{'real': images}}. Received keys: {sorted(data)}.")
        batch_size = tf.shape(data["real"] if "real" in data else data["batch"])[0]
        z = self.sample_z(batch_size)
        if self.teacher_encoder is not None and self.posterior_fraction > 0:
            n = tf.cast(tf.round(self.posterior_fraction * tf.cast(batch_size, tf.float32)), tf.int32)
            mean, log_var = self.teacher_encoder(data["real"][:n], training=False)
            posterior = mean + tf.exp(0.5 * log_var) * self.sample_z(n)
            z = tf.concat([tf.cast(posterior, z.dtype), z[n:]], 0)
        return z, tf.stop_gradient(self.teacher(z, training=False))

    def train_step(self, data):
        z, target = self._targets(data)
        with tf.GradientTape() as s_tape:
            fake = self.generator(z, training=True)
            pixel = self.pixel_loss_fn(fake, target)
            loss = self.pixel_weight * pixel
        if self.discriminator is not None:
            with tf.GradientTape() as d_tape:
                d_loss, real_logits, fake_logits = self._discriminator_loss(data["real"], tf.stop_gradient(fake))
            distribute.minimize(self.d_optimizer, d_tape, d_loss, self.discriminator.trainable_weights)
            with s_tape:
                features, logits = self.critic(tf.concat([fake, tf.cast(target, fake.dtype)], 0), training=True)
                fake_features, target_features = tf.split(features, 2)
                adversarial = self.g_loss_fn(tf.split(logits, 2)[0])
                feature = distill_losses.feature_loss(fake_features, target_features)
                loss += self.adversarial_weight * adversarial + self.feature_weight * feature
            self.adversarial_tracker.update_state(adversarial)
            self.feature_tracker.update_state(feature)
            self.d_loss_tracker.update_state(d_loss)
            self.g_loss_tracker.update_state(adversarial)
            self.d_real_tracker.update_state(tf.sigmoid(tf.cast(real_logits, tf.float32)))
            self.d_fake_tracker.update_state(tf.sigmoid(tf.cast(fake_logits, tf.float32)))
        distribute.minimize(self.g_optimizer, s_tape, loss, self.generator.trainable_weights)
        gan_lib.update_ema(self.ema_generator, self.generator, self.ema_decay, self.g_optimizer.iterations)
        self.loss_tracker.update_state(loss)
        self.pixel_tracker.update_state(pixel)
        self.psnr_tracker.update_state(tf.reduce_mean(distill_losses.psnr(fake, target)))
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        z, target = self._targets(data)
        fake = self.ema_generator(z, training=False)
        self.pixel_tracker.update_state(self.pixel_loss_fn(fake, target))
        self.psnr_tracker.update_state(tf.reduce_mean(distill_losses.psnr(fake, target)))
        return {m.name: m.result() for m in (self.pixel_tracker, self.psnr_tracker)}

    def checkpoint_items(self):
        items = super().checkpoint_items()
        if self.discriminator is None:
            del items["discriminator"], items["d_optimizer"]
        return items

    def build_optimizers(self):
        self.g_optimizer.build(self.generator.trainable_weights)
        if self.discriminator is not None:
            self.d_optimizer.build(self.discriminator.trainable_weights)

