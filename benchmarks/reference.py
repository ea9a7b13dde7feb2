"""The plain keras-io recipe that tf_gkd's teacher is measured against.

keras-io's "DCGAN to generate face images" (`dcgan_overriding_train_step.py`)
`GAN` model, applied to whatever generator and discriminator it is given:
binary cross-entropy with noisy labels, a discriminator pass on the
concatenated fake and real batch, a second generator pass for the generator
step, no weight averaging. Used by benchmarks/train_step.py and
benchmarks/teacher_quality.py.
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


def dataset(images_uint8, batch_size):
    """keras-io's input pipeline: normalise in NumPy, shuffle(1024), batch."""
    x = (images_uint8.astype("float32") - 127.5) / 127.5
    return tf.data.Dataset.from_tensor_slices(x).shuffle(1024).batch(batch_size, drop_remainder=True).repeat()
