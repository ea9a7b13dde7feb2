"""Sample-quality metrics from classifier activations, in float64 NumPy.

The formulas are TF-GAN's (`frechet_classifier_distance_from_activations`,
`kernel_classifier_distance_from_activations`, `classifier_score_from_logits`);
TF-GAN itself no longer imports on current TensorFlow. They take activations
or probabilities, not models, so they are tested on synthetic arrays.

FID and KID values depend on the feature extractor: tf_gkd's are computed on
its own domain classifier's `features` layer and are not comparable with
Inception-based numbers.
"""

import numpy as np


def _as_2d(acts, name):
    acts = np.asarray(acts, dtype=np.float64)
    if acts.ndim != 2 or len(acts) < 2:
        raise ValueError(f"{name} must have shape [N >= 2, D]. Received shape {acts.shape}.")
    return acts


def _sqrtm_psd(matrix):
    """Square root of a symmetric positive semi-definite matrix (negative round-off clipped)."""
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(acts1, acts2):
    """Fréchet distance between Gaussians fitted to two activation sets [N, D].

    ‖μ₁ - μ₂‖² + Tr(C₁ + C₂ - 2 (C₁^½ C₂ C₁^½)^½). The cross term is computed
    from the symmetric matrix C₁^½ C₂ C₁^½, whose eigenvalues are real and
    non-negative, so no complex parts appear (as they can with scipy's sqrtm).
    """
    acts1, acts2 = _as_2d(acts1, "acts1"), _as_2d(acts2, "acts2")
    mu1, mu2 = acts1.mean(0), acts2.mean(0)
    cov1, cov2 = np.cov(acts1, rowvar=False), np.cov(acts2, rowvar=False)
    root1 = _sqrtm_psd(cov1)
    cross = np.linalg.eigvalsh(root1 @ cov2 @ root1)
    trace_cross = np.sum(np.sqrt(np.clip(cross, 0.0, None)))
    fid = np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_cross
    return float(max(fid, 0.0))


def kernel_distance(acts1, acts2, num_subsets=10, max_subset_size=1000, seed=0):
    """Kernel (Inception-style) distance: unbiased MMD² with kernel k(x, y) = (x·y/D + 1)³.

    Averaged over `num_subsets` random subsets of at most `max_subset_size`
    samples of each set (drawn with a fixed `seed`). Returns (mean, std).
    """
    acts1, acts2 = _as_2d(acts1, "acts1"), _as_2d(acts2, "acts2")
    dim = acts1.shape[1]
    m = min(len(acts1), len(acts2), max_subset_size)
    rng = np.random.default_rng(seed)
    estimates = []
    for _ in range(num_subsets):
        x = acts1[rng.choice(len(acts1), m, replace=False)]
        y = acts2[rng.choice(len(acts2), m, replace=False)]
        kxx = (x @ x.T / dim + 1.0) ** 3
        kyy = (y @ y.T / dim + 1.0) ** 3
        kxy = (x @ y.T / dim + 1.0) ** 3
        off_diagonal = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        estimates.append(off_diagonal - 2.0 * kxy.mean())
    return float(np.mean(estimates)), float(np.std(estimates))


def classifier_score(probs, eps=1e-12):
    """exp(E_x KL(p(y|x) ‖ p(y))) for class probabilities [N, K] (rows sum to 1).

    Between 1 (every sample gets the same prediction) and K (confident
    predictions spread evenly over the K classes).
    """
    probs = np.asarray(probs, dtype=np.float64)
    marginal = probs.mean(0, keepdims=True)
    kl = np.sum(probs * (np.log(probs + eps) - np.log(marginal + eps)), axis=1)
    return float(np.exp(kl.mean()))


def psnr(images1, images2, data_range=2.0):
    """Mean peak signal-to-noise ratio (dB) over pairs of images [N, H, W, C].

    `data_range` is max - min of the pixel range: 2 for tf_gkd's [-1, 1] images.
    A pair of identical images would be infinite; its MSE is floored at 1e-10.
    """
    a, b = np.asarray(images1, np.float64), np.asarray(images2, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"Image sets differ in shape: {a.shape} vs {b.shape}.")
    mse = np.mean((a - b) ** 2, axis=tuple(range(1, a.ndim)))
    return float(np.mean(10.0 * np.log10(data_range**2 / np.maximum(mse, 1e-10))))
