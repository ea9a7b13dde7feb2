"""Scoring generators against a real split with the domain classifier.

FID and KID compare the classifier's `features` activations of generated
images with those of real images, and so, optionally, do precision and recall
(the k-NN manifold estimate); the classifier score looks at its class
probabilities of the generated images alone. An `Evaluator` computes the real
activations (and their manifold) once, so scoring several generators (a teacher and its students)
costs one sampling and one classifier pass per generator. Latents are drawn
from a NumPy generator seeded with `seed`: every generator evaluated with the
same seed and z_dim sees exactly the same z.

A class-conditional generator is asked for a class-balanced sample
(`contract.class_labels`): its FID is over all classes, and the result adds
its label accuracy (how often the domain classifier, trained on the data's
labels, sees the class that was asked for) and its FID class by class,
against the real images of that class (mean and worst class).
"""

import numpy as np
import tqdm

from tf_gkd import contract, errors
from tf_gkd.data import datasets
from tf_gkd.evaluation import classifier as classifier_lib
from tf_gkd.evaluation import metrics
from tf_gkd.networks import io as model_io

# Fewer batches than this take seconds: no progress bar.
_PROGRESS_MIN_BATCHES = 5


class ImageShapeError(errors.Error, ValueError):
    """Generated images, real images and the domain classifier disagree on the image shape."""


class NonFiniteSamplesError(errors.Error, ValueError):
    """A generator produced NaN or Inf, which no metric can score."""


class ClassLabelError(errors.Error, ValueError):
    """A class-conditional generator cannot be scored class by class against this data and classifier."""


def sample_labels(generator, num_samples):
    """The labels `sample` asks a class-conditional generator for (None for an unconditional one)."""
    k = contract.num_classes(generator)
    return contract.class_labels(num_samples, k) if k else None


def sample(generator, num_samples, seed=0, batch_size=500, progress=True):
    """Float32 images [num_samples, H, W, C] of `generator` for z ~ N(0, I) drawn with `seed`.

    A class-conditional generator makes them of the classes `sample_labels`.

    Shows a progress bar (on stderr) when `progress` is set and there are
    enough batches for it to matter.

    Raises:
      NonFiniteSamplesError: the generator produced NaN or Inf.
    """
    if num_samples < 1 or batch_size < 1:
        raise ValueError(
            f"num_samples and batch_size must be >= 1. Received: num_samples={num_samples}, batch_size={batch_size}"
        )
    z = contract.latents(num_samples, contract.z_dim(generator), seed)
    labels = sample_labels(generator, num_samples)
    starts = range(0, num_samples, batch_size)
    disable = not progress or len(starts) < _PROGRESS_MIN_BATCHES
    batches = []
    for start in tqdm.tqdm(starts, desc="generating", unit="batch", disable=disable, leave=False):
        end = start + batch_size
        inputs = contract.generator_inputs(generator, z[start:end], None if labels is None else labels[start:end])
        batches.append(np.asarray(generator(inputs, training=False), np.float32))
    images = np.concatenate(batches)
    if not np.all(np.isfinite(images)):
        raise NonFiniteSamplesError(f"Generator {generator.name!r} produced NaN or Inf images: it cannot be scored.")
    return images


class Evaluator:
    """Holds the classifier and the real images' activations, computed once for every generator.

    Args:
      classifier: a `DomainClassifier` (see `classifier.load_or_train`).
      real_images: float images [N >= 2, H, W, C] in [-1, 1] of the reference split.
      real_split: which split `real_images` are (written into every result).
      batch_size: images per forward pass of the generator and the classifier.
      precision_recall_k: k of the k-NN manifolds of precision and recall
        (Kynkäänniemi et al. use 3); None leaves them out, saving their k-NN
        distances (seconds per 10,000 samples on 2 CPU cores).
      real_labels: int labels [N] of `real_images`, which class-conditional
        generators are scored class by class against (None: the data has none).
    """

    def __init__(
        self, classifier, real_images, real_split="test", batch_size=500, precision_recall_k=None, real_labels=None
    ):
        if len(real_images) < 2:
            raise ValueError(f"FID and KID need at least 2 real images. Received: {len(real_images)}.")
        self.image_shape = tuple(real_images.shape[1:])
        if classifier.image_shape != self.image_shape:
            raise ImageShapeError(
                f"The domain classifier takes {contract.describe(classifier.image_shape)} images, the real ones are "
                f"{contract.describe(self.image_shape)}: delete its cache to train one for this data."
            )
        self.classifier = classifier
        self.real_split = real_split
        self.batch_size = batch_size
        self.num_real = len(real_images)
        self.real_features, _ = classifier.features_and_probs(real_images, batch_size)
        self.real_labels = None if real_labels is None else np.asarray(real_labels)
        self.precision_recall_k = precision_recall_k
        self.real_manifold = None
        if precision_recall_k is not None:
            self.real_manifold = metrics.Manifold(self.real_features, precision_recall_k)

    def check_classes(self, num_classes):
        """Raises ClassLabelError unless images of `num_classes` classes can be scored class by class here."""
        classes = int(self.classifier.model.outputs[0].shape[-1])
        task = self.classifier.info.get("task", "labels")
        if self.real_labels is None or task != "labels" or classes != num_classes:
            raise ClassLabelError(
                f"A class-conditional generator of {num_classes} classes is scored against the data's labels, and "
                f"here the domain classifier ({self.classifier.describe()}) has {classes} outputs"
                + ("" if self.real_labels is not None else " and the real images have no labels")
                + ": score it against the labelled data it was trained on."
            )

    def score_images(self, images, labels=None):
        """Scores float images [N >= 2, H, W, C] in [-1, 1] (of classes `labels`, if given) against the real split.

        Returns:
          A dict: `fid`, `kid` (mean over subsets), `kid_std`,
          `classifier_score`, `num_samples` (N), `num_real`, `real_split`;
          with `precision_recall_k`, also `precision`, `recall` and
          `precision_recall_k`; with `labels`, also `label_accuracy` (the
          classifier's agreement with them), `fid_per_class` (each class's
          samples against the real images of that class), `fid_class_mean`
          and `fid_class_worst`.
        """
        if len(images) < 2:
            raise ValueError(f"FID and KID need at least 2 samples. Received: {len(images)}.")
        if tuple(images.shape[1:]) != self.image_shape:
            raise ImageShapeError(
                f"The images to score are {contract.describe(images.shape[1:])}, the dataset's are "
                f"{contract.describe(self.image_shape)}: score a generator against the data it was trained on "
                "(its --dataset, --image_size and --grayscale)."
            )
        features, probs = self.classifier.features_and_probs(images, self.batch_size)
        kid, kid_std = metrics.kernel_distance(features, self.real_features)
        result = {
            "fid": metrics.frechet_distance(features, self.real_features),
            "kid": kid,
            "kid_std": kid_std,
            "classifier_score": metrics.classifier_score(probs),
            "num_samples": len(images),
            "num_real": self.num_real,
            "real_split": self.real_split,
        }
        if self.real_manifold is not None:
            precision, recall = metrics.precision_recall(self.real_manifold, features)
            result.update(precision=precision, recall=recall, precision_recall_k=self.precision_recall_k)
        if labels is not None:
            labels = np.asarray(labels)
            num_classes = probs.shape[1]
            self.check_classes(num_classes)
            for c in range(num_classes):
                if min(np.sum(labels == c), np.sum(self.real_labels == c)) < 2:
                    raise ClassLabelError(
                        f"Class {c} has {np.sum(labels == c)} samples and {np.sum(self.real_labels == c)} real "
                        f"images: its FID needs at least 2 of each (more samples: --num_samples >= {2 * num_classes})."
                    )
            per_class = [
                metrics.frechet_distance(features[labels == c], self.real_features[self.real_labels == c])
                for c in range(num_classes)
            ]
            result.update(
                label_accuracy=float(np.mean(np.argmax(probs, axis=1) == labels)),
                fid_per_class=per_class,
                fid_class_mean=float(np.mean(per_class)),
                fid_class_worst=float(np.max(per_class)),
            )
        return result

    def evaluate(self, generator, num_samples=10_000, seed=0, progress=True):
        """`score_images` of `num_samples` samples of `generator`, plus its `params` and the `seed`."""
        shape = model_io.image_shape(generator)
        if shape != self.image_shape:
            raise ImageShapeError(
                f"Generator {generator.name!r} makes {contract.describe(shape)} images, the dataset's are "
                f"{contract.describe(self.image_shape)}: score it against the data it was trained on (its "
                "--dataset, --image_size and --grayscale)."
            )
        labels = sample_labels(generator, num_samples)
        if labels is not None:
            self.check_classes(contract.num_classes(generator))
        images = sample(generator, num_samples, seed, self.batch_size, progress)
        result = self.score_images(images, labels)
        result.update(params=model_io.count_params(generator), seed=seed)
        return result


def load_evaluator(spec, classifier_dir, batch_size=500, precision_recall_k=None):
    """The `Evaluator` of `dataset`'s test split with its cached domain classifier (trained once if missing).

    Raises:
      datasets.DataError: the data cannot be loaded.
      classifier_lib.ClassifierError: the cached classifier cannot be used.
    """
    test_images, test_labels = spec.load("test")
    classifier = classifier_lib.load_or_train(spec, classifier_dir)
    real_labels = test_labels if spec.label_names() is not None else None
    return Evaluator(
        classifier, datasets.to_float(test_images).numpy(), "test", batch_size, precision_recall_k, real_labels
    )


def evaluate_generator(generator, classifier, real_images_float, num_samples=10_000, batch_size=500, seed=0):
    """Scores one generator; to score several against one split, build one `Evaluator` instead."""
    return Evaluator(classifier, real_images_float, batch_size=batch_size).evaluate(generator, num_samples, seed)
