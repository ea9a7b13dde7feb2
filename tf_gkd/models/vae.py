"""The VAE teacher as a Keras model with its own `train_step` and `test_step`."""

import keras
import numpy as np
import tensorflow as tf

from tf_gkd import contract, distribute
from tf_gkd.contract import conditioned
from tf_gkd.losses import vae as vae_losses
from tf_gkd.models.base import TrainStepModel
from tf_gkd.networks import factory
from tf_gkd.networks import layers as gkd_layers


class VAE(TrainStepModel):
    """Encoder q(z|x) and decoder p(x|z) trained on the β-weighted negative ELBO.

    loss = reconstruction + β·KL, both in nats per image (summed over pixels
    and latent dimensions, averaged over the batch; see `tf_gkd.losses.vae`).
    With β = 1, `loss` is the negative ELBO, an upper bound on −log p(x).
    With class-conditional networks (`factory`'s `num_classes`) it is a
    conditional VAE: q(z|x, y) and p(x|z, y), batches are (images, int
    labels), and every method that takes images takes their labels too.

    Args:
      encoder: Keras model images [N, H, W, C] in [-1, 1] (, one-hot label) → [mean, log_var],
        each [N, z_dim] (`factory.make_encoder`).
      decoder: a generator z [N, z_dim] → images in [-1, 1] ending in the tanh
        layer of `factory.make_generator`, whose input gives the Bernoulli
        logits. It is what `generate` samples and what is saved.
      beta: weight of the KL term (β-VAE; > 1 favours disentangled latents,
        < 1 sharper reconstructions).
      likelihood: one of `tf_gkd.losses.vae.LIKELIHOODS`.
      gaussian_sigma: the fixed σ of the `gaussian` likelihood, on [0, 1] pixels.
      seed: seed of the reparameterisation noise.
    """

    def __init__(self, encoder, decoder, beta=1.0, likelihood="bernoulli", gaussian_sigma=0.1, seed=None, **kwargs):
        super().__init__(**kwargs)
        if likelihood not in vae_losses.LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {vae_losses.LIKELIHOODS}. Received: likelihood={likelihood!r}")
        if beta < 0:
            raise ValueError(f"beta must be >= 0. Received: beta={beta}")
        if not gaussian_sigma > 0:
            raise ValueError(f"gaussian_sigma must be positive. Received: gaussian_sigma={gaussian_sigma}")
        self.z_dim = contract.z_dim(decoder)
        contract.check_conditioned_alike({"decoder": decoder, "encoder": encoder})
        self.num_classes = contract.num_classes(decoder)
        encoded = [tuple(t.shape) for t in encoder.outputs]
        if encoded != [(None, self.z_dim)] * 2:
            raise ValueError(
                f"The encoder must return [mean, log_var] of shape [N, z_dim={self.z_dim}] (the decoder's input). "
                f"Received: encoder outputs {encoded}."
            )
        self.encoder = encoder
        self.decoder = decoder
        self.decoder_with_logits = factory.with_pre_activation(decoder)
        self.beta = beta
        self.likelihood = likelihood
        self.gaussian_sigma = gaussian_sigma
        self.sampling = gkd_layers.Sampling(seed=seed, name="sampling")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self.kl_tracker = keras.metrics.Mean(name="kl")
        # Its networks are built; under a tf.distribute strategy Keras would otherwise
        # try to build this wrapper by calling it, and it has no `call`.
        self.built = True

    def compile(self, optimizer, **kwargs):
        # Passing the optimizer explicitly stops Keras from creating an unused default one.
        super().compile(optimizer=optimizer, **kwargs)

    @property
    def metrics(self):
        return [self.loss_tracker, self.reconstruction_tracker, self.kl_tracker]

    @property
    def network_weights(self):
        """Trainable weights of encoder and decoder (the logits view shares the decoder's)."""
        return self.encoder.trainable_weights + self.decoder.trainable_weights

    def _one_hot(self, labels):
        """One-hot labels of int `labels` for a conditional VAE, None for an unconditional one."""
        if not self.num_classes:
            return None
        if labels is None:
            raise ValueError(f"This VAE is class-conditional ({self.num_classes} classes): give the images' labels.")
        return self.one_hot(labels)

    def _batch(self, data):
        """(images, their labels or None) of a batch."""
        if isinstance(data, (tuple, list)):
            return data[0], data[1] if self.num_classes else None
        return data, None

    def losses_per_image(self, images, labels=None, training=False):
        """(reconstruction [N], KL [N]) in nats for images [N, H, W, C] in [-1, 1], one z ~ q(z|x) each."""
        y = self._one_hot(labels)
        mean, log_var = self.encoder(conditioned(images, y), training=training)
        pre_activation, decoded = self.decoder_with_logits(
            conditioned(self.sampling([mean, log_var]), y), training=training
        )
        if self.likelihood == "bernoulli":
            # tanh(a) = 2·sigmoid(2a) − 1: the logits of (images + 1) / 2 are 2a.
            reconstruction = vae_losses.bernoulli_reconstruction_loss(images, 2.0 * tf.cast(pre_activation, tf.float32))
        else:
            reconstruction = vae_losses.gaussian_reconstruction_loss(images, decoded, self.gaussian_sigma)
        return reconstruction, vae_losses.kl_divergence(mean, log_var)

    def _update_trackers(self, reconstruction, kl):
        # Per-image values, so that the means are over images even when the
        # last evaluation batch is smaller than the others.
        self.loss_tracker.update_state(reconstruction + self.beta * kl)
        self.reconstruction_tracker.update_state(reconstruction)
        self.kl_tracker.update_state(kl)
        return self.logs()

    def train_step(self, data):
        images, labels = self._batch(data)
        with tf.GradientTape() as tape:
            reconstruction, kl = self.losses_per_image(images, labels, training=True)
            loss = tf.reduce_mean(reconstruction + self.beta * kl)
        distribute.minimize(self.optimizer, tape, loss, self.network_weights)
        return self._update_trackers(reconstruction, kl)

    def test_step(self, data):
        # `evaluate` would otherwise call `self(x)`, which this wrapper does not have.
        images, labels = self._batch(data)
        return self._update_trackers(*self.losses_per_image(images, labels, training=False))

    def evaluate_elbo(self, images, labels=None, batch_size=500):
        """Held-out ELBO terms of float images [N, H, W, C] in [-1, 1] (and their labels), in nats per image.

        One z ~ q(z|x) per image (an unbiased estimate of the ELBO). Returns a
        dict with `negative_elbo` (reconstruction + KL, whatever β is),
        `reconstruction`, `kl`, `loss` (the training objective, with β) and
        `num_images`.
        """
        images = np.asarray(images, np.float32)
        data = images if labels is None else (images, np.asarray(labels, np.int64))
        dataset = tf.data.Dataset.from_tensor_slices(data).batch(batch_size)
        result = {k: float(v) for k, v in self.evaluate(dataset, verbose=0, return_dict=True).items()}
        result["negative_elbo"] = result["reconstruction"] + result["kl"]
        result["num_images"] = len(images)
        return result

    def encode(self, images, labels=None, batch_size=500):
        """Posterior means [N, z_dim] of float images in [-1, 1] (and their labels), as numpy."""
        means = []
        for i in range(0, len(images), batch_size):
            y = None if labels is None else labels[i : i + batch_size]
            batch = tf.convert_to_tensor(images[i : i + batch_size], tf.float32)
            means.append(np.asarray(self.encoder(conditioned(batch, self._one_hot(y)), training=False)[0]))
        return np.concatenate(means)

    def reconstruct(self, images, labels=None):
        """Decoded posterior means of float images in [-1, 1] (and their labels): deterministic reconstructions."""
        y = self._one_hot(labels)
        mean, _ = self.encoder(conditioned(tf.convert_to_tensor(images, tf.float32), y), training=False)
        return self.decoder(conditioned(mean, y), training=False)

    def checkpoint_items(self):
        """Everything a resumed run needs, for `tf.train.Checkpoint(**items)`."""
        return dict(
            encoder=self.encoder,
            decoder=self.decoder,
            optimizer=self.optimizer,
            seed=self.sampling.seed_generator.state,
        )

    def build_optimizers(self):
        """Creates optimizer slots now so that a checkpoint can restore into them."""
        self.optimizer.build(self.network_weights)

    @property
    def step(self):
        """Number of updates so far (restored with the checkpoint)."""
        return self.optimizer.iterations

    def generate(self, z, labels=None):
        """Decoded images for latents `z` (and int `labels`, conditional); with z ~ N(0, I), samples of the prior."""
        return self.decoder(contract.generator_inputs(self.decoder, z, labels), training=False)
