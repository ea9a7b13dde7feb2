"""The domain classifier whose features FID, KID and classifier score are computed on.

Inception-v3 features (the usual FID extractor) need a network download and
know nothing of 28×28 grey clothes; a small CNN trained on the dataset itself
is the standard stand-in (TF-GAN's `mnist_score` does the same for MNIST).
One is trained per dataset, once, and cached as
`<classifier_dir>/<dataset>/classifier.keras` with an `info.json` beside it.
"""

import datetime
import json
import os
import time

import keras
import numpy as np
from absl import logging
from keras import layers

from tf_gkd.data import datasets
from tf_gkd.networks import io as model_io

FEATURES_LAYER = "features"
DEFAULT_EPOCHS = 3


class ClassifierError(RuntimeError):
    """The cached classifier cannot be used."""


def make_classifier(width=1.0, num_classes=datasets.NUM_CLASSES):
    """A small CNN: images [N, 28, 28, 1] in [-1, 1] → logits [N, num_classes].

    Its 128-unit layer named `features` gives the activations of the metrics.
    """
    c = max(1, int(round(32 * width)))
    images = keras.Input(datasets.IMAGE_SHAPE, name="images")
    x = layers.Conv2D(c, 3, padding="same", activation="relu")(images)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(2 * c, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(max(1, int(round(128 * width))), activation="relu", name=FEATURES_LAYER)(x)
    x = layers.Dropout(0.3)(x)
    logits = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(images, logits, name="classifier")


def train_classifier(train_images, train_labels, test_images, test_labels, epochs=DEFAULT_EPOCHS,
                     batch_size=128, seed=0, width=1.0):
    """Trains `make_classifier(width)` on float images in [-1, 1]; returns (model, test accuracy)."""
    keras.utils.set_random_seed(seed)
    model = make_classifier(width)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(train_images, train_labels, batch_size=batch_size, epochs=epochs, verbose=2, shuffle=True)
    _, accuracy = model.evaluate(test_images, test_labels, batch_size=1000, verbose=0)
    return model, float(accuracy)


class DomainClassifier:
    """A trained classifier, giving features and class probabilities of images."""

    def __init__(self, model, info=None):
        self.model = model
        self.info = info or {}
        self._both = keras.Model(
            model.inputs[0], [model.get_layer(FEATURES_LAYER).output, model.outputs[0]], name="features_and_logits"
        )

    def features_and_probs(self, images, batch_size=500):
        """Float images [N, 28, 28, 1] in [-1, 1] → (features [N, F], probabilities [N, K]), float64."""
        features, logits = [], []
        for start in range(0, len(images), batch_size):
            f, lg = self._both(images[start : start + batch_size], training=False)
            features.append(np.asarray(f, np.float64))
            logits.append(np.asarray(lg, np.float64))
        logits = np.concatenate(logits)
        probs = np.exp(logits - logits.max(1, keepdims=True))
        return np.concatenate(features), probs / probs.sum(1, keepdims=True)


def load_or_train(dataset, classifier_dir="saved_models/classifiers", data_dir=None, raw_dir=None,
                  download=False, epochs=DEFAULT_EPOCHS, seed=0):
    """The cached classifier of `dataset`, trained (≈1 min on 2 CPU cores) and cached if missing."""
    directory = os.path.join(classifier_dir, dataset)
    path = os.path.join(directory, "classifier.keras")
    info_path = os.path.join(directory, "info.json")
    if os.path.exists(path):
        try:
            model = keras.saving.load_model(path, safe_mode=True, compile=False)
            model.get_layer(FEATURES_LAYER)
            with open(info_path) as f:
                info = json.load(f)
        except Exception as e:  # Any failure means the same: the cache is unusable.
            raise ClassifierError(
                f"The cached classifier in {directory} cannot be loaded ({type(e).__name__}: {e}). "
                f"Delete {directory} and it will be retrained."
            ) from None
        return DomainClassifier(model, info)

    raw_dir = datasets.resolve_raw_dir(dataset, raw_dir)
    train_images, train_labels = datasets.load_numpy(dataset, "train", data_dir, raw_dir, download)
    test_images, test_labels = datasets.load_numpy(dataset, "test", data_dir, raw_dir, download)
    logging.info("Training the %s domain classifier (%d epochs); cached in %s.", dataset, epochs, directory)
    start = time.perf_counter()
    model, accuracy = train_classifier(
        np.asarray(datasets.to_float(train_images)), train_labels,
        np.asarray(datasets.to_float(test_images)), test_labels, epochs=epochs, seed=seed,
    )
    info = {
        "dataset": dataset,
        "test_accuracy": accuracy,
        "epochs": epochs,
        "seed": seed,
        "train_seconds": round(time.perf_counter() - start, 1),
        "trained_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    logging.info("Classifier test accuracy: %.4f.", accuracy)
    os.makedirs(directory, exist_ok=True)
    tmp = info_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(info, f, indent=2)
    os.replace(tmp, info_path)
    model_io.save_model_atomic(model, path)  # Last: its presence marks a complete cache.
    return DomainClassifier(model, info)
