"""The evaluator's flags and loading, shared by gkd-evaluate, gkd-export and gkd-pipeline.

Apart from `tf_gkd.bin.common` so that the training binaries never import the
evaluation: the domain classifier that scores FID is never a training signal
(tests/evaluator_separation_test.py).
"""

from absl import flags

from tf_gkd.data import datasets
from tf_gkd.evaluation import evaluate


def define_classifier_dir_flag(flag_values=flags.FLAGS):
    """--classifier_dir."""
    flags.DEFINE_string(
        "classifier_dir", "saved_models/classifiers", "Cache of the domain classifiers.", flag_values=flag_values
    )


def load_evaluator(precision_recall_k=None, batch_size=500):
    """The evaluator of the data flags' test split, with --classifier_dir's classifier (DataError, ClassifierError)."""
    return evaluate.load_evaluator(
        datasets.DataSpec.of(flags.FLAGS),
        flags.FLAGS.classifier_dir,
        batch_size=batch_size,
        precision_recall_k=precision_recall_k,
    )
