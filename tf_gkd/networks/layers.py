"""Custom Keras layers of tf_gkd, registered so that saved models load in safe mode."""

import keras
import tensorflow as tf

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


@keras.saving.register_keras_serializable(package="tf_gkd")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` computed by TensorFlow's fused kernel (`FusedBatchNormV3`).

    Same weights, configuration and results as the Keras layer (up to float
    rounding): normalisation by the biased batch variance in training, moving
    averages of the batch mean and biased variance, the moving statistics in
    inference. Keras 3 builds batch normalisation from a dozen element-wise
    ops, and under mixed precision casts the activations to float32 and back
    around them; the fused kernel does the statistics and the normalisation in
    one op forward and one backward, reading bfloat16/float16 activations
    directly (statistics in float32). It is what `tf.keras` 2 used by default,
    and cuDNN's batch normalisation on GPUs (speed: benchmarks/train_step.py).

    Inputs of any rank ≥ 2 normalised over the last axis take the fused path
    (other ranks are reshaped to [M, 1, 1, C]); masks, renormalisation,
    synchronized statistics, other axes or float64 fall back to the Keras
    computation. Saved generators use Keras's own layer
    (`with_batch_norm(model, fused=False)`), so that they load without tf_gkd.
    """

    def _fused(self, inputs, mask):
        return (
            mask is None
            and not self.renorm
            and not self.synchronized
            and self.axis in (-1, len(inputs.shape) - 1)
            and inputs.dtype in (tf.float16, tf.bfloat16, tf.float32)
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fused(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        channels = inputs.shape[-1]
        x = inputs if len(inputs.shape) == 4 else tf.reshape(inputs, [-1, 1, 1, channels])
        gamma = tf.cast(self.gamma, tf.float32) if self.scale else tf.ones([channels])
        beta = tf.cast(self.beta, tf.float32) if self.center else tf.zeros([channels])
        if training and self.trainable:
            y, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
                x=x, scale=gamma, offset=beta, mean=tf.zeros([0]), variance=tf.zeros([0]),
                epsilon=self.epsilon, is_training=True, data_format="NHWC",
            )
            # The kernel returns the unbiased (n − 1) variance; Keras averages the biased one.
            n = tf.cast(tf.size(x) // channels, tf.float32)
            variance = variance * (n - 1.0) / n
            momentum = self.momentum
            self.moving_mean.assign_sub((1.0 - momentum) * (self.moving_mean - mean))
            self.moving_variance.assign_sub((1.0 - momentum) * (self.moving_variance - variance))
        else:
            y, _, _, _, _, _ = tf.raw_ops.FusedBatchNormV3(
                x=x, scale=gamma, offset=beta,
                mean=tf.cast(self.moving_mean, tf.float32), variance=tf.cast(self.moving_variance, tf.float32),
                epsilon=self.epsilon, is_training=False, data_format="NHWC",
            )
        if x is not inputs:
            y = tf.reshape(y, tf.shape(inputs))
        return tf.cast(y, self.compute_dtype)


def with_batch_norm(model, fused):
    """A copy of `model` (same weights) whose batch normalisation layers are fused (`fused=True`) or Keras's own.

    Models without batch normalisation, and models Keras cannot clone layer by
    layer (subclassed ones), are returned as they are.
    """
    target = FusedBatchNormalization if fused else keras.layers.BatchNormalization
    if not any(isinstance(layer, keras.layers.BatchNormalization) and type(layer) is not target for layer in model.layers):
        return model

    def clone(layer):
        cls = target if isinstance(layer, keras.layers.BatchNormalization) else type(layer)
        return cls.from_config(layer.get_config())

    try:
        copy = keras.models.clone_model(model, clone_function=clone)
    except ValueError:  # A subclassed model: only its own code can rebuild it.
        return model
    copy.set_weights(model.get_weights())
    copy.trainable = model.trainable
    return copy
