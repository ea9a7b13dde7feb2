"""Sample-quality metrics from classifier activations, in float64 NumPy.

The formulas are TF-GAN's (`frechet_classifier_distance_from_activations`,
`kernel_classifier_distance_and_std_from_activations`,
`classifier_score_from_logits`); TF-GAN itself no longer imports on current
TensorFlow. They take activations or probabilities, not models, so they are
tested on synthetic arrays with known answers.

FID and KID values depend on the feature extractor: tf_gkd's are computed on
its own domain classifier's `features` layer and are not comparable with
Inception-based numbers. Always report them with the extractor, the sample
count and the real split used.
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


def _polynomial_kernel(x, y):
    """(x·y/D + 1)³ for every pair of rows; in place, since these [m, m] matrices dominate KID's cost."""
    k = x @ y.T
    k /= x.shape[1]
    k += 1.0
    return k * k * k  # Several times faster than k ** 3.


def frechet_distance(acts1, acts2):
    """Fréchet distance (FID) between Gaussians fitted to activations [N1, D] and [N2, D].

    ‖μ₁ - μ₂‖² + Tr(C₁ + C₂ - 2 (C₁^½ C₂ C₁^½)^½), with unbiased covariances.
    The cross term is computed from the symmetric matrix C₁^½ C₂ C₁^½, whose
    eigenvalues are real and non-negative (up to round-off, clipped), so no
    complex parts appear as they can with `scipy.linalg.sqrtm(C₁ C₂)`.
    Activations are any real values; the result is ≥ 0 and symmetric.
    """
    acts1, acts2 = _as_2d(acts1, "acts1"), _as_2d(acts2, "acts2")
    if acts1.shape[1] != acts2.shape[1]:
        raise ValueError(f"Activation sizes differ: {acts1.shape[1]} vs {acts2.shape[1]}.")
    mu1, mu2 = acts1.mean(0), acts2.mean(0)
    cov1, cov2 = np.cov(acts1, rowvar=False), np.cov(acts2, rowvar=False)
    root1 = _sqrtm_psd(cov1)
    cross = np.linalg.eigvalsh(root1 @ cov2 @ root1)
    trace_cross = np.sum(np.sqrt(np.clip(cross, 0.0, None)))
    fid = np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_cross
    return float(max(fid, 0.0))  # Round-off can take a distance of 0 slightly below.


def kernel_distance(acts1, acts2, num_subsets=10, max_subset_size=1000, seed=0):
    """Kernel distance (KID): unbiased MMD² with the kernel k(x, y) = (x·y/D + 1)³.

    Activations are [N1, D] and [N2, D], any real values. The estimate is
    averaged over `num_subsets` random subsets of m = min(N1, N2,
    `max_subset_size`) rows of each set, drawn without replacement by a
    generator seeded with `seed`, so the same inputs always give the same value
    (Bińkowski et al., 2018). The defaults cover 10,000 samples about once, as
    TF-GAN's disjoint blocks of 1,000 do, at ~0.1 s per subset. Unbiased: it is
    ≈ 0, possibly slightly negative, for two samples of one distribution.

    Returns:
      (mean, std) of the per-subset estimates.
    """
    acts1, acts2 = _as_2d(acts1, "acts1"), _as_2d(acts2, "acts2")
    if acts1.shape[1] != acts2.shape[1]:
        raise ValueError(f"Activation sizes differ: {acts1.shape[1]} vs {acts2.shape[1]}.")
    if num_subsets < 1 or max_subset_size < 2:
        raise ValueError(
            "KID needs num_subsets >= 1 and max_subset_size >= 2. "
            f"Received: num_subsets={num_subsets}, max_subset_size={max_subset_size}"
        )
    m = min(len(acts1), len(acts2), max_subset_size)
    rng = np.random.default_rng(seed)
    estimates = []
    for _ in range(num_subsets):
        x = acts1[rng.choice(len(acts1), m, replace=False)]
        y = acts2[rng.choice(len(acts2), m, replace=False)]
        kxx, kyy, kxy = _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)
        # Unbiased: the within-set means leave out the diagonal k(x_i, x_i).
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        estimates.append(within - 2.0 * kxy.mean())
    return float(np.mean(estimates)), float(np.std(estimates))


def classifier_score(probs, eps=1e-12):
    """exp(E_x KL(p(y|x) ‖ p(y))) for class probabilities [N, K] (rows sum to 1).

    The "Inception score" with a domain classifier. Between 1 (every sample
    gets the same prediction, or every prediction is uniform) and K (confident
    predictions spread evenly over the K classes). `eps` keeps log(0) finite
    for one-hot rows.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"probs must have shape [N, K]. Received shape {probs.shape}.")
    marginal = probs.mean(0, keepdims=True)
    kl = np.sum(probs * (np.log(probs + eps) - np.log(marginal + eps)), axis=1)
    return float(np.exp(kl.mean()))


def psnr(a, b, data_range=2.0):
    """Mean peak signal-to-noise ratio (dB) over pairs of images [N, H, W, C].

    `data_range` is max - min of the pixel range: 2 for tf_gkd's [-1, 1]
    images (255 for uint8). Identical images would score infinity; their MSE is
    floored at 1e-10 (≈ 106 dB for the [-1, 1] range).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim < 2:
        raise ValueError(f"Expected two image sets [N, H, W, C] of one shape. Received shapes {a.shape} and {b.shape}.")
    mse = np.mean((a - b) ** 2, axis=tuple(range(1, a.ndim)))
    return float(np.mean(10.0 * np.log10(data_range**2 / np.maximum(mse, 1e-10))))
