"""What tf_gkd's Keras models share: their own `train_step`, over networks built before `fit`."""

import keras
import tensorflow as tf

from tf_gkd import distribute


class TrainStepModel(keras.Model):
    """Base of the GAN, the VAE and the generator distiller: Keras models with their own `train_step`.

    Their networks and optimizers are all built before `fit` (`build_optimizers`,
    which the checkpoint needs), so Keras's symbolic build of a model from its
    first batch has nothing to do. It is skipped: under
    MultiWorkerMirroredStrategy it fails (Keras 3.15 reduces the distributed
    batch across workers, which that strategy does not support).
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        del iterator, data_batch  # Everything is built already.

    def one_hot(self, labels):
        """One-hot float32 [N, num_classes] of int `labels` [N], in the graph (conditional models)."""
        return tf.one_hot(tf.cast(labels, tf.int32), self.num_classes)

    def logs(self, metrics=None):
        """{name: result} of `metrics` (default: all of them), as a step returns its logs.

        With several workers (MultiWorkerMirroredStrategy), Keras 3.15 reduces
        every logged value across them over its axis 0, so scalars are logged as [1].
        """
        metrics = self.metrics if metrics is None else metrics
        several = distribute.num_workers(self.distribute_strategy) > 1
        return {m.name: tf.reshape(m.result(), [1]) if several else m.result() for m in metrics}
