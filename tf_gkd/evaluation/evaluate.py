"""Scoring generators against a dataset's test split with the domain classifier."""

import numpy as np
import tqdm

from tf_gkd.evaluation import metrics
from tf_gkd.networks import io as model_io


def sample(generator, num_samples, seed=0, batch_size=500, progress=False):
    """Images [num_samples, 28, 28, 1] of `generator` for z ~ N(0, I) drawn with `seed`.

    Two generators with the same z_dim and seed see exactly the same latents.
    """
    z = np.random.default_rng(seed).standard_normal((num_samples, model_io.z_dim(generator))).astype(np.float32)
    batches = range(0, num_samples, batch_size)
    images = [
        np.asarray(generator(z[i : i + batch_size], training=False), np.float32)
        for i in tqdm.tqdm(batches, desc="sampling", unit="batch", disable=not progress, leave=False)
    ]
    return np.concatenate(images)


class Evaluator:
    """Holds the classifier and the real split's statistics, computed once for every generator.

    Args:
      classifier: a `DomainClassifier`.
      real_images: float images [N, 28, 28, 1] in [-1, 1] of the reference split.
      description: how the real set was chosen (written into every result).
    """

    def __init__(self, classifier, real_images, description="test split"):
        self.classifier = classifier
        self.real_description = description
        self.num_real = len(real_images)
        self.real_features, self.real_probs = classifier.features_and_probs(real_images)

    def score_images(self, images):
        """FID, KID and classifier score of float images [N, 28, 28, 1] in [-1, 1]."""
        features, probs = self.classifier.features_and_probs(images)
        kid_mean, kid_std = metrics.kernel_distance(features, self.real_features)
        return {
            "fid": metrics.frechet_distance(features, self.real_features),
            "kid": kid_mean,
            "kid_std": kid_std,
            "classifier_score": metrics.classifier_score(probs),
            "num_samples": len(images),
            "num_real": self.num_real,
            "real_set": self.real_description,
        }

    def evaluate(self, generator, num_samples=10_000, seed=0, progress=True):
        """Scores `generator` on `num_samples` samples (latents drawn with `seed`)."""
        result = self.score_images(sample(generator, num_samples, seed, progress=progress))
        result.update(params=int(generator.count_params()), seed=seed)
        return result
