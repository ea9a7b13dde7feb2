"""Custom Keras layers of tf_gkd, registered so that saved models load in safe mode."""

import keras

from tf_gkd import distribute


@keras.saving.register_keras_serializable(package="tf_gkd")
class Sampling(keras.layers.Layer):
    """Draws z = mean + exp(log_var / 2) · ε, ε ~ N(0, I): the reparameterisation trick.

    Writing the sample as a deterministic function of (mean, log_var) and
    independent noise lets gradients of a loss on z reach the encoder. Under
    tf.distribute each replica draws its slice of the global batch's noise
    (`tf_gkd.distribute.normal`).

    Args:
      seed: seed of the layer's `keras.random.SeedGenerator`. Its state is a
        variable (`seed_generator.state`), so a checkpoint that saves it
        resumes the same noise sequence.
    """

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.built = True  # No weights to create.

    def call(self, inputs):
        mean, log_var = inputs
        epsilon = distribute.normal(keras.ops.shape(mean), self.seed_generator, dtype=mean.dtype)
        return mean + keras.ops.exp(0.5 * log_var) * epsilon

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}
