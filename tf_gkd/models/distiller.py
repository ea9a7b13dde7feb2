"""Generator distillation: a small student generator learns to reproduce a frozen teacher.

For each batch the student and the teacher see the same latents z; the
student's loss is

    L = w_pixel(t) · |S(z) - T(z)|
        + a(t) · (λ · L_GAN(D(S(z))) + w_feature · ‖f(S(z)) - f(T(z))‖² + w_distribution · ED(f(S(z)), f(X)))

where D is the discriminator of an adversary trained against real images (as
in a GAN) and f its `features` layer; ED is the energy distance between the
student's batch and a target batch X (the teacher's images or real ones) in
those features: a distribution-level term, where the pixel and feature terms
compare paired samples. The pixel weight and the discriminator's terms may
follow schedules over the run (`tf_gkd.losses.schedules`; a(t) is the
adversarial schedule's factor): e.g. mimicry first, then the discriminator's
terms ramping up while the pixel weight decays. With λ, w_feature and
w_distribution all 0 it is pure mimicry, with no adversary at all. When the
adversarial schedule ramps up from 0, the adversary is idle until the ramp
starts: those steps are pure mimicry, at its speed, and the discriminator
starts training with the ramp (`adversary_start`; `StartAdversary` switches
the train step over). Targets come from the teacher on the fly
(online) or from a file of (z, T(z)) pairs written beforehand (offline: the
teacher is not needed while the student trains; see `tf_gkd.data.pairs`).

A VAE teacher's decoder is distilled like a GAN generator; given the teacher's
encoder, part of every batch takes z from the posterior q(z|x) of real images
instead of the prior, so that the student also learns the region of latent
space the decoder was trained on.

A class-conditional teacher has a conditional student (and discriminator):
both generators see the same (z, label) pairs. The labels are those of the
batch's real images when it has some (so that the discriminator judges the
student's images as of the classes of the real ones beside them), of the
stored pairs offline, and drawn uniformly otherwise.
"""

import math

import keras
import tensorflow as tf
from absl import logging

from tf_gkd import contract, distribute
from tf_gkd.contract import conditioned
from tf_gkd.losses import distill as distill_losses
from tf_gkd.losses import schedules
from tf_gkd.models import ema
from tf_gkd.models.adversary import Adversary
from tf_gkd.models.base import TrainStepModel


class GeneratorDistiller(TrainStepModel):
    """Trains `student` to mimic the frozen `teacher` (plus optional adversarial and feature terms).

    Args:
      teacher: generator z [N, z_dim] → images [N, 28, 28, 1]; frozen here.
        None for offline training, where every batch brings its targets.
      student: generator with the same z_dim, trained.
      discriminator: images → logits with a `features` layer, trained against
        real images; required when `adversarial_weight`, `feature_weight` or
        `distribution_weight` > 0, otherwise None.
      teacher_encoder: optional VAE encoder images → [mean, log_var] (frozen);
        with it, a `posterior_fraction` of each batch takes z from q(z|x) of the
        batch's real images.
      pixel_loss: one of `tf_gkd.losses.distill.PIXEL_LOSSES`.
      pixel_weight, adversarial_weight, feature_weight, distribution_weight:
        the loss weights (λ is `adversarial_weight`).
      distribution_target: what the distribution term pulls the student's
        batch towards: "teacher" (the teacher's images of the batch) or "real".
      pixel_weight_schedule, adversarial_weight_schedule: schedules (spec
        strings of `tf_gkd.losses.schedules`) over `total_steps` student
        updates: the first of the pixel weight, the second of every term that
        reads the discriminator (λ, the feature and the distribution weights).
      total_steps: the run's length in steps, which the schedules' progress is
        a share of (needed by any schedule other than `constant`).
      posterior_fraction: share of each batch with posterior latents (VAE teachers).
      loss, gp_weight, real_label, r1_weight, r1_interval: the adversary's GAN
        loss, its gradient-penalty weight (wasserstein), real-image target, R1
        penalty weight and the updates between R1 penalties (`Adversary`).
      ema_decay: decay of the weight average `ema_student`, the student that
        is sampled and saved (as for `tf_gkd.models.gan.GAN`).
      seed: seed of the model's `SeedGenerator` (z and the adversary's noise).

    Batches are dicts: {"real": images} online, {"real", "z", "teacher"}
    offline (the teacher's images for those z, precomputed); conditional, with
    "real_labels" (int) beside "real" and "label" beside "z". Online training
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
        distribution_weight=0.0,
        distribution_target="teacher",
        posterior_fraction=0.5,
        pixel_weight_schedule="constant",
        adversarial_weight_schedule="constant",
        total_steps=None,
        loss="non_saturating",
        gp_weight=10.0,
        ema_decay=0.999,
        real_label=1.0,
        r1_weight=0.0,
        r1_interval=1,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        needs_discriminator = adversarial_weight > 0 or feature_weight > 0 or distribution_weight > 0
        if needs_discriminator and discriminator is None:
            raise ValueError(
                "adversarial_weight, feature_weight and distribution_weight need a discriminator (its features "
                f"and logits). Received: adversarial_weight={adversarial_weight}, feature_weight={feature_weight}, "
                f"distribution_weight={distribution_weight}, discriminator=None"
            )
        if not needs_discriminator and discriminator is not None:
            raise ValueError(
                "A discriminator is only trained when adversarial_weight, feature_weight or distribution_weight > 0."
            )
        if distribution_target not in distill_losses.DISTRIBUTION_TARGETS:
            raise ValueError(
                f"distribution_target must be one of {distill_losses.DISTRIBUTION_TARGETS}. "
                f"Received: distribution_target={distribution_target!r}"
            )
        if teacher is not None and contract.z_dim(teacher) != contract.z_dim(student):
            raise ValueError(
                f"Teacher and student must take the same z: teacher z_dim={contract.z_dim(teacher)}, "
                f"student z_dim={contract.z_dim(student)}."
            )
        self.num_classes = contract.num_classes(student)
        networks = {"student": student, "teacher": teacher, "discriminator": discriminator}
        contract.check_conditioned_alike({name: net for name, net in networks.items() if net is not None})
        if not 0.0 <= posterior_fraction <= 1.0:
            raise ValueError(f"posterior_fraction must be in [0, 1]. Received: {posterior_fraction}")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1). Received: ema_decay={ema_decay}")
        self.pixel_schedule = schedules.parse(pixel_weight_schedule)
        self.adversarial_schedule = schedules.parse(adversarial_weight_schedule)
        scheduled = self.pixel_schedule.kind != "constant" or self.adversarial_schedule.kind != "constant"
        if scheduled and not (total_steps and total_steps > 0):
            raise ValueError(f"Loss-weight schedules need the run's total_steps. Received: total_steps={total_steps}")
        self.total_steps = total_steps
        self.teacher = teacher
        if teacher is not None:
            teacher.trainable = False
        self.teacher_encoder = teacher_encoder
        if teacher_encoder is not None:
            teacher_encoder.trainable = False
        self.student = student
        self.z_dim = contract.z_dim(student)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.adversary = None
        # The first step whose loss needs the adversary (0: every step; see `StartAdversary`).
        self.adversary_start = 0
        if self.adversarial_schedule.kind == "ramp_up":
            self.adversary_start = math.ceil(self.adversarial_schedule.start * total_steps)
        self.adversary_active = discriminator is not None
        if discriminator is not None:
            self.adversary = Adversary(
                discriminator,
                self.seed_generator,
                loss=loss,
                gp_weight=gp_weight,
                real_label=real_label,
                r1_weight=r1_weight,
                r1_interval=r1_interval,
            )
        self.ema_decay = ema_decay
        self.ema_student = ema.averaged_copy(student)
        self.pixel_loss_fn = distill_losses.pixel_loss(pixel_loss)
        self.pixel_weight = pixel_weight
        self.adversarial_weight = adversarial_weight
        self.feature_weight = feature_weight
        self.distribution_weight = distribution_weight
        self.distribution_target = distribution_target
        self.posterior_fraction = posterior_fraction
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.pixel_tracker = keras.metrics.Mean(name="pixel")
        self.psnr_tracker = keras.metrics.Mean(name="psnr")
        self.adversarial_tracker = keras.metrics.Mean(name="adversarial")
        self.feature_tracker = keras.metrics.Mean(name="feature")
        self.distribution_tracker = keras.metrics.Mean(name="distribution")
        # The scheduled weights, logged when they change over the run.
        self.weight_trackers = []
        if scheduled:
            self.weight_trackers = [
                keras.metrics.Mean(name="pixel_weight"),
                keras.metrics.Mean(name="adversarial_weight"),
            ]
        # Its networks are built; under a tf.distribute strategy Keras would otherwise
        # try to build this wrapper by calling it, and it has no `call`.
        self.built = True

    def compile(self, optimizer, d_optimizer=None, **kwargs):
        """`optimizer` trains the student, `d_optimizer` the adversary's discriminator (when there is one)."""
        super().compile(optimizer=optimizer, **kwargs)
        if self.adversary is not None:
            self.adversary.compile(d_optimizer)

    @property
    def metrics(self):
        metrics = [self.loss_tracker, self.pixel_tracker, self.psnr_tracker]
        if self.adversary is not None:
            metrics += [self.adversarial_tracker, self.feature_tracker, self.distribution_tracker]
            metrics += self.adversary.metrics
        return metrics + self.weight_trackers

    def adversary_due(self):
        """Whether the run has reached the steps whose loss needs the adversary (if it has one)."""
        return self.adversary is not None and int(self.step.numpy()) >= self.adversary_start

    def make_train_function(self, force=False):
        # The train step is traced with or without the adversary, as the run's step requires.
        self.adversary_active = self.adversary_due()
        return super().make_train_function(force)

    @property
    def fit_callbacks(self):
        """Keras callbacks that a `fit` of this model needs."""
        return [StartAdversary()] if self.adversary is not None and self.adversary_start > 0 else []

    @property
    def uses_real_images(self):
        """Whether online batches need real images: for the adversary, or for posterior latents."""
        return self.adversary is not None or (self.teacher_encoder is not None and self.posterior_fraction > 0)

    def sample_z(self, batch_size):
        return distribute.normal((batch_size, self.z_dim), self.seed_generator)

    def _labels(self, data, batch_size):
        """One-hot labels of the student's batch (None: unconditional): the pairs', the real images', or uniform."""
        if not self.num_classes:
            return None
        if "label" in data:
            return self.one_hot(data["label"])
        if "real_labels" in data:
            return self.one_hot(data["real_labels"])
        u = distribute.uniform((batch_size,), self.seed_generator)
        return self.one_hot(tf.minimum(tf.cast(u * self.num_classes, tf.int32), self.num_classes - 1))

    def _real_labels(self, data):
        """One-hot labels of the batch's real images (None: unconditional)."""
        if not self.num_classes:
            return None
        if "real_labels" not in data:
            raise ValueError("A class-conditional distiller's batches bring the real images' labels: 'real_labels'.")
        return self.one_hot(data["real_labels"])

    def _targets(self, data):
        """(z, one-hot labels or None, teacher images) of a batch: read from it offline, computed online."""
        if "z" in data:
            return data["z"], self._labels(data, tf.shape(data["z"])[0]), data["teacher"]
        if self.teacher is None:
            raise ValueError("Without a teacher, every batch must bring its targets: {'real', 'z', 'teacher'}.")
        if "real" not in data and self.uses_real_images:
            raise ValueError(f"Batches must bring real images, {{'real': images}}. Received keys: {sorted(data)}.")
        batch_size = tf.shape(data["real"] if "real" in data else data["batch"])[0]
        z = self.sample_z(batch_size)
        labels = self._labels(data, batch_size)
        if self.teacher_encoder is not None and self.posterior_fraction > 0:
            # Online, a conditional batch with real images has their labels: q(z|x, y) is of the same y.
            n = tf.cast(tf.round(self.posterior_fraction * tf.cast(batch_size, tf.float32)), tf.int32)
            real_labels = None if labels is None else labels[:n]
            mean, log_var = self.teacher_encoder(conditioned(data["real"][:n], real_labels), training=False)
            posterior = mean + tf.exp(0.5 * log_var) * self.sample_z(n)
            z = tf.concat([tf.cast(posterior, z.dtype), z[n:]], 0)
        return z, labels, tf.stop_gradient(self.teacher(conditioned(z, labels), training=False))

    def _reference_features(self, target, labels, real, real_labels):
        """The discriminator's features of the batches the student's are compared with: [teacher's] [real].

        Constants for the student's gradient, so computed outside its tape: the
        discriminator's backward pass then covers the student's batch alone.
        """
        batches = []
        if self.feature_weight > 0 or (self.distribution_weight > 0 and self.distribution_target == "teacher"):
            batches.append((target, labels))
        if self.distribution_weight > 0 and self.distribution_target == "real":
            batches.append((real, real_labels))
        if not batches:
            return []
        # One pass of the discriminator over every batch (it has no batch-dependent layers).
        images = tf.concat([tf.cast(b, tf.float32) for b, _ in batches], 0)
        batch_labels = None if labels is None else tf.concat([y for _, y in batches], 0)
        features, _ = self.adversary.features_and_logits(images, batch_labels)
        return tf.split(tf.stop_gradient(features), len(batches))

    def _adversary_terms(self, fake, labels, references):
        """(L_GAN of the student's images, feature distance to the teacher's, energy distance to the target batch)."""
        features, logits = self.adversary.features_and_logits(fake, labels)
        adversarial = self.adversary.generator_loss(logits)
        feature = tf.constant(0.0)
        if self.feature_weight > 0:
            feature = distill_losses.feature_loss(features, references[0])
        distribution = tf.constant(0.0)
        if self.distribution_weight > 0:
            distribution = distill_losses.energy_distance(features, references[-1])
        return adversarial, feature, distribution

    def _factors(self):
        """The schedules' factors at this step: (of the pixel weight, of the discriminator's terms)."""
        if self.total_steps is None:
            return 1.0, 1.0
        progress = tf.cast(self.optimizer.iterations, tf.float32) / float(self.total_steps)
        return self.pixel_schedule(progress), self.adversarial_schedule(progress)

    def train_step(self, data):
        z, labels, target = self._targets(data)
        with tf.GradientTape() as tape:
            fake = self.student(conditioned(z, labels), training=True)
        if self.adversary_active:
            real_labels = self._real_labels(data)
            d_terms = self.adversary.train_step(data["real"], fake, real_labels, labels)
            references = self._reference_features(target, labels, data.get("real"), real_labels)
        pixel_factor, adversary_factor = self._factors()
        pixel_weight, adversarial_weight = self.pixel_weight * pixel_factor, self.adversarial_weight * adversary_factor
        with tape:
            pixel = self.pixel_loss_fn(fake, target)
            adversarial, feature, distribution = tf.constant(0.0), tf.constant(0.0), tf.constant(0.0)
            if self.adversary_active:
                adversarial, feature, distribution = self._adversary_terms(fake, labels, references)
            loss = (
                pixel_weight * pixel
                + adversarial_weight * adversarial
                + adversary_factor * (self.feature_weight * feature + self.distribution_weight * distribution)
            )
        distribute.minimize(self.optimizer, tape, loss, self.student.trainable_weights)
        ema.update_ema(self.ema_student, self.student, self.ema_decay, self.optimizer.iterations)

        self.loss_tracker.update_state(loss)
        self.pixel_tracker.update_state(pixel)
        self.psnr_tracker.update_state(tf.reduce_mean(distill_losses.psnr(fake, target)))
        if self.adversary_active:
            self.adversarial_tracker.update_state(adversarial)
            self.feature_tracker.update_state(feature)
            self.distribution_tracker.update_state(distribution)
            self.adversary.update_metrics(*d_terms)
        for tracker, weight in zip(self.weight_trackers, (pixel_weight, adversarial_weight)):
            tracker.update_state(weight)
        return self.logs()

    def test_step(self, data):
        z, labels, target = self._targets(data)
        fake = self.ema_student(conditioned(z, labels), training=False)
        self.pixel_tracker.update_state(self.pixel_loss_fn(fake, target))
        self.psnr_tracker.update_state(tf.reduce_mean(distill_losses.psnr(fake, target)))
        return self.logs([self.pixel_tracker, self.psnr_tracker])

    def checkpoint_items(self):
        """Everything a resumed run needs, for `tf.train.Checkpoint(**items)`.

        The keys are a GAN's (the student under `generator`), as in earlier
        runs, whose checkpoints still load.
        """
        items = dict(
            generator=self.student,
            ema_generator=self.ema_student,
            g_optimizer=self.optimizer,
            seed=self.seed_generator.state,
        )
        if self.adversary is not None:
            items.update(self.adversary.checkpoint_items())
        return items

    def build_optimizers(self):
        """Creates optimizer slots now so that a checkpoint can restore into them."""
        self.optimizer.build(self.student.trainable_weights)
        if self.adversary is not None:
            self.adversary.build_optimizer()

    @property
    def step(self):
        """Number of student updates so far (restored with the checkpoint)."""
        return self.optimizer.iterations

    def generate(self, z, labels=None):
        """Images of the averaged student for latents `z` (and int `labels`, conditional)."""
        return self.ema_student(contract.generator_inputs(self.ema_student, z, labels), training=False)


class StartAdversary(keras.callbacks.Callback):
    """Switches a `GeneratorDistiller`'s train step to one with the adversary at its `adversary_start`.

    Keras calls it after every execution of `steps_per_execution` steps, so the
    switch happens at the first execution boundary at or after that step.
    """

    def on_train_batch_end(self, batch, logs=None):
        model = self.model
        if not model.adversary_active and model.adversary_due():
            logging.info("Step %d: the discriminator joins the train step.", int(model.step.numpy()))
            model.make_train_function(force=True)
