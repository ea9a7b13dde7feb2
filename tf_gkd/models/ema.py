"""An exponential moving average of a generator's weights: what GANs and distillers sample and save."""

import keras
import tensorflow as tf


def averaged_copy(model):
    """A clone of `model` holding its current weights: the start of the average."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


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
