"""The domain classifier whose features FID, KID and classifier score are computed on.

Inception-v3 features (the usual FID extractor) need a network download and
know nothing of 28×28 grey clothes; a small CNN trained on the dataset itself
is the standard stand-in (TF-GAN's `mnist_score` does the same for MNIST).
One is trained per dataset (and image size and channels), once, and cached as
`<classifier_dir>/<DataSpec.key()>/classifier.keras` with an `info.json`
beside it, so that every later evaluation measures with the very same
network: scores from different classifiers are not comparable.

It learns the dataset's labels. A dataset without labels (a folder without
class subfolders, celeb_a) trains it on a task without labels instead:
rotation prediction (which of 0°, 90°, 180°, 270° an image was turned by,
Gidaris et al. 2018), whose features also have to describe the images'
content; `info.json` says which (`task`), and so do the reports.
"""

import datetime
import json
import os
import time

import keras
import numpy as np
from absl import logging

from tf_gkd import contract, errors, files
from tf_gkd.data import datasets
from tf_gkd.models import classifier as classifier_models
from tf_gkd.networks import factory
from tf_gkd.networks import io as model_io

FEATURES_LAYER = factory.FEATURES_LAYER
CLASSIFIER_FILE = "classifier.keras"
INFO_FILE = "info.json"
# Training is once per dataset (its time and accuracy: docs/results.md); then the cache is used.
DEFAULT_EPOCHS = classifier_models.DEFAULT_EPOCHS
DEFAULT_BATCH_SIZE = classifier_models.DEFAULT_BATCH_SIZE


class ClassifierError(errors.Error, RuntimeError):
    """The cached classifier cannot be used; the message says which files to delete."""


def train_classifier(
    train_images,
    train_labels,
    test_images,
    test_labels,
    epochs=DEFAULT_EPOCHS,
    batch_size=DEFAULT_BATCH_SIZE,
    seed=0,
    width=1.0,
):
    """Trains `factory.make_classifier(width)` on float images [N, H, W, C] in [-1, 1], labels in [0, K).

    The recipe is `tf_gkd.models.classifier.fit_classifier`. Seeds Keras's
    global random state with `seed` (weights, shuffling, dropout).

    Returns:
      (model, test accuracy as a float in [0, 1]).
    """
    keras.utils.set_random_seed(seed)
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    model = factory.make_classifier(width, num_classes, image_shape=train_images.shape[1:])
    log_epoch = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: logging.info(
            "Classifier epoch %d/%d: loss %.4f, train accuracy %.4f.", epoch + 1, epochs, logs["loss"], logs["accuracy"]
        )
    )
    classifier_models.fit_classifier(
        model, train_images, train_labels, epochs, batch_size, seed=None, callbacks=[log_epoch]
    )
    _, accuracy = model.evaluate(test_images, test_labels, batch_size=1000, verbose=0)
    return model, float(accuracy)


class DomainClassifier:
    """A trained classifier, giving the features and class probabilities of images.

    Attributes:
      model: the Keras classifier, images → logits.
      info: what `info.json` says about it (dataset, test accuracy, ...).
    """

    def __init__(self, model, info=None):
        self.model = model
        self.info = dict(info or {})
        self.image_shape = tuple(model.inputs[0].shape[1:])
        # One forward pass for both outputs: features for FID/KID, logits for the score.
        self._features_and_logits = keras.Model(
            model.inputs[0],
            [model.get_layer(FEATURES_LAYER).output, model.outputs[0]],
            name="features_and_logits",
        )

    def describe(self):
        """What FID is computed on, for results: 'tf_gkd domain classifier of cifar10 (labels), `features` layer'."""
        task = self.info.get("task", "labels")
        return f"tf_gkd domain classifier of {self.info.get('dataset')} (trained on {task}), its `features` layer"

    def features_and_probs(self, images, batch_size=500):
        """Float images [N, H, W, C] in [-1, 1] → (features [N, F], probabilities [N, K]), float64.

        The softmax is taken in float64 NumPy, so that probabilities of
        confident predictions are not rounded to exactly 0 or 1 in float32.
        """
        images = np.asarray(images, np.float32)
        features, logits = self._features_and_logits.predict(images, batch_size=batch_size, verbose=0)
        logits = np.asarray(logits, np.float64)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        return np.asarray(features, np.float64), probs / probs.sum(axis=1, keepdims=True)


def _load_cached(dataset, path, info_path):
    """The cached classifier of `dataset`; any problem → ClassifierError naming the files."""
    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
        model.get_layer(FEATURES_LAYER)  # Raises ValueError if absent.
        contract.check_image_shape(model.inputs[0].shape[1:])
        with open(info_path) as f:
            info = json.load(f)
        if info.get("dataset") != dataset:
            raise ValueError(f"{info_path} says it was trained on {info.get('dataset')!r}, not {dataset!r}")
        float(info["test_accuracy"])  # Every cache records it; results quote it.
    except Exception as e:  # A missing, truncated or foreign file all mean the same: the cache is unusable.
        raise ClassifierError(
            f"The cached {dataset} classifier {path} cannot be used ({type(e).__name__}: {e}). "
            f"Delete {path} and {info_path}: the next evaluation retrains it."
        ) from None
    return DomainClassifier(model, info)


def rotated(images):
    """(images, labels): image i turned by (i mod 4)·90° counter-clockwise, labelled i mod 4."""
    labels = np.arange(len(images), dtype=np.int64) % 4
    turned = np.empty_like(images)
    for k in range(4):
        turned[labels == k] = np.rot90(images[labels == k], k, axes=(1, 2))
    return turned, labels


def load_or_train(
    spec, classifier_dir="saved_models/classifiers", epochs=DEFAULT_EPOCHS, batch_size=DEFAULT_BATCH_SIZE, seed=0
):
    """The cached domain classifier of the data of `spec` (a `DataSpec`), trained on its train split if missing.

    A cached classifier is always used as is (the training arguments only apply
    when there is none), so every evaluation in `classifier_dir` measures with
    the same network.

    Returns:
      A `DomainClassifier`.

    Raises:
      ClassifierError: the cache exists but cannot be loaded.
      datasets.DataError: there is no cache and the data cannot be loaded.
    """
    dataset = spec.key()
    directory = os.path.join(classifier_dir, dataset)
    path = os.path.join(directory, CLASSIFIER_FILE)
    info_path = os.path.join(directory, INFO_FILE)
    if os.path.exists(path):
        classifier = _load_cached(dataset, path, info_path)
        logging.info(
            "Loaded the %s classifier %s (test accuracy %.4f).", dataset, path, classifier.info["test_accuracy"]
        )
        return classifier

    train_images, train_labels = spec.load("train")
    test_images, test_labels = spec.load("test")
    task = "labels" if spec.label_names() else "rotation"
    if task == "rotation":
        (train_images, train_labels), (test_images, test_labels) = rotated(train_images), rotated(test_images)
    logging.info(
        "Training the %s domain classifier on %s (%d epochs); it will be cached in %s.",
        dataset,
        task,
        epochs,
        directory,
    )
    start = time.perf_counter()
    model, accuracy = train_classifier(
        np.asarray(datasets.to_float(train_images)),
        train_labels,
        np.asarray(datasets.to_float(test_images)),
        test_labels,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
    )
    info = {
        "dataset": dataset,
        "task": task,
        "test_accuracy": accuracy,
        "epochs": epochs,
        "batch_size": batch_size,
        "seed": seed,
        "num_train": len(train_images),
        "num_test": len(test_images),
        "train_seconds": round(time.perf_counter() - start, 1),
        "trained_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    logging.info("The %s classifier reaches %.4f test accuracy (%.0f s).", dataset, accuracy, info["train_seconds"])
    files.write_json(info, info_path)
    model_io.save_model_atomic(model, path)  # Last: its presence marks a complete cache.
    return DomainClassifier(model, info)
