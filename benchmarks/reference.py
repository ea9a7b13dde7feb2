"""The plain keras-io recipes that tf_gkd's models are measured against.

- `KerasIoGAN`: keras-io's "DCGAN to generate face images"
  (`dcgan_overriding_train_step.py`) `GAN` model, applied to whatever generator
  and discriminator it is given: binary cross-entropy with noisy labels, a
  discriminator pass on the concatenated fake and real batch, a second
  generator pass for the generator step, no weight averaging.
- `KerasIoVAE`: keras-io's "Variational AutoEncoder" `VAE` model: encoder →
  sampling → decoder, binary cross-entropy summed over pixels plus the KL term,
  one Adam over both networks.
- `KerasIoGeneratorDistiller`: the plain `train_step` of pixel mimicry: sample
  z, run the frozen teacher, fit the student to it with L1, one Adam, no
  weight averaging.

Used by benchmarks/train_step.py and benchmarks/teacher_quality.py.
"""

import keras
import tensorflow as tf


class KerasIoGAN(keras.Model):
    """keras-io's `GAN` from "DCGAN to generate face images", verbatim in spirit."""

    def __init__(self, discriminator, generator, latent_dim):
        super().__init__()
        self.discriminator = discriminator
        self.generator = generator
        self.latent_dim = latent_dim
        self.seed_generator = keras.random.SeedGenerator(1337)

    def compile(self, d_optimizer, g_optimizer, loss_fn):
        super().compile()
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer
        self.loss_fn = loss_fn
        self.d_loss_metric = keras.metrics.Mean(name="d_loss")
        self.g_loss_metric = keras.metrics.Mean(name="g_loss")

    @property
    def metrics(self):
        return [self.d_loss_metric, self.g_loss_metric]

    def train_step(self, real_images):
        batch_size = tf.shape(real_images)[0]
        z = keras.random.normal((batch_size, self.latent_dim), seed=self.seed_generator)
        generated_images = self.generator(z)
        combined_images = tf.concat([generated_images, real_images], axis=0)
        labels = tf.concat([tf.ones((batch_size, 1)), tf.zeros((batch_size, 1))], axis=0)
        labels += 0.05 * keras.random.uniform(tf.shape(labels), seed=self.seed_generator)
        with tf.GradientTape() as tape:
            d_loss = self.loss_fn(labels, self.discriminator(combined_images))
        grads = tape.gradient(d_loss, self.discriminator.trainable_weights)
        self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_weights))

        z = keras.random.normal((batch_size, self.latent_dim), seed=self.seed_generator)
        misleading_labels = tf.zeros((batch_size, 1))
        with tf.GradientTape() as tape:
            g_loss = self.loss_fn(misleading_labels, self.discriminator(self.generator(z)))
        grads = tape.gradient(g_loss, self.generator.trainable_weights)
        self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_weights))
        self.d_loss_metric.update_state(d_loss)
        self.g_loss_metric.update_state(g_loss)
        return {"d_loss": self.d_loss_metric.result(), "g_loss": self.g_loss_metric.result()}


def build(generator, discriminator, latent_dim=100, learning_rate=1e-4):
    """keras-io's compile settings: Adam(1e-4) for both networks, BCE on logits."""
    model = KerasIoGAN(discriminator, generator, latent_dim)
    model.compile(
        d_optimizer=keras.optimizers.Adam(learning_rate),
        g_optimizer=keras.optimizers.Adam(learning_rate),
        loss_fn=keras.losses.BinaryCrossentropy(from_logits=True),
    )
    return model


class Sampling(keras.layers.Layer):
    """keras-io's `Sampling` layer: z = z_mean + exp(z_log_var / 2) · ε."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(1337)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        epsilon = keras.random.normal(tf.shape(z_mean), seed=self.seed_generator)
        return z_mean + tf.exp(0.5 * z_log_var) * epsilon


class KerasIoVAE(keras.Model):
    """keras-io's `VAE` from "Variational AutoEncoder", for an encoder giving [z_mean, z_log_var].

    keras-io's decoder ends in a sigmoid over [0, 1] images; tf_gkd's ends in a
    tanh over [-1, 1] ones, so both sides of the cross-entropy are mapped to
    [0, 1]. The networks are called in training mode (tf_gkd's have batch
    normalization, which keras-io's do not).
    """

    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.sampling = Sampling()
        self.total_loss_tracker = keras.metrics.Mean(name="total_loss")
        self.reconstruction_loss_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")

    @property
    def metrics(self):
        return [self.total_loss_tracker, self.reconstruction_loss_tracker, self.kl_loss_tracker]

    def train_step(self, data):
        with tf.GradientTape() as tape:
            z_mean, z_log_var = self.encoder(data, training=True)
            reconstruction = self.decoder(self.sampling([z_mean, z_log_var]), training=True)
            reconstruction_loss = tf.reduce_mean(
                tf.reduce_sum(keras.losses.binary_crossentropy((data + 1) / 2, (reconstruction + 1) / 2), axis=(1, 2))
            )
            kl_loss = -0.5 * (1 + z_log_var - tf.square(z_mean) - tf.exp(z_log_var))
            kl_loss = tf.reduce_mean(tf.reduce_sum(kl_loss, axis=1))
            total_loss = reconstruction_loss + kl_loss
        grads = tape.gradient(total_loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        self.total_loss_tracker.update_state(total_loss)
        self.reconstruction_loss_tracker.update_state(reconstruction_loss)
        self.kl_loss_tracker.update_state(kl_loss)
        return {m.name: m.result() for m in self.metrics}


def build_vae(encoder, decoder):
    """keras-io's compile settings: `Adam()` (learning rate 1e-3)."""
    model = KerasIoVAE(encoder, decoder)
    model.compile(optimizer=keras.optimizers.Adam())
    return model


class KerasIoGeneratorDistiller(keras.Model):
    """A plain distillation `train_step` for generators: the student fits the frozen teacher's image of each z with L1.

    The teacher runs in inference mode and the student in training mode, as in
    keras-io's "Knowledge Distillation" example.
    """

    def __init__(self, teacher, student, latent_dim):
        super().__init__()
        self.teacher = teacher
        self.student = student
        self.latent_dim = latent_dim
        self.seed_generator = keras.random.SeedGenerator(1337)
        self.loss_tracker = keras.metrics.Mean(name="loss")

    def compile(self, optimizer, loss_fn):
        super().compile(optimizer=optimizer)
        self.loss_fn = loss_fn

    @property
    def metrics(self):
        return [self.loss_tracker]

    def train_step(self, data):
        z = keras.random.normal((tf.shape(data)[0], self.latent_dim), seed=self.seed_generator)
        teacher_images = self.teacher(z, training=False)
        with tf.GradientTape() as tape:
            loss = self.loss_fn(teacher_images, self.student(z, training=True))
        grads = tape.gradient(loss, self.student.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.student.trainable_weights))
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}


def build_distiller(teacher, student):
    """`Adam()` and the mean absolute error; the teacher is frozen."""
    teacher.trainable = False
    model = KerasIoGeneratorDistiller(teacher, student, teacher.input_shape[-1])
    model.compile(optimizer=keras.optimizers.Adam(), loss_fn=keras.losses.MeanAbsoluteError())
    return model


def dataset(images_uint8, batch_size):
    """keras-io's input pipeline: normalise in NumPy, shuffle(1024), batch."""
    x = (images_uint8.astype("float32") - 127.5) / 127.5
    return tf.data.Dataset.from_tensor_slices(x).shuffle(1024).batch(batch_size, drop_remainder=True).repeat()
