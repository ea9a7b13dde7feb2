"""Sample-quality and fidelity metrics from activations or images, in float64 NumPy.

FID, KID and the classifier score are TF-GAN's formulas
(`frechet_classifier_distance_from_activations`,
`kernel_classifier_distance_and_std_from_activations`,
`classifier_score_from_logits`); TF-GAN itself no longer imports on current
TensorFlow. Precision and recall are the k-nearest-neighbour manifold estimate
of Kynkäänniemi et al. (2019). PSNR and SSIM (TensorFlow's `tf.image.ssim`)
compare two image sets pair by pair: a student's samples with its teacher's on
the same latents. Every function takes activations, probabilities or images,
not models, so they are tested on synthetic arrays with known answers.

FID and KID values depend on the feature extractor: tf_gkd's are computed on
its own domain classifier's `features` layer and are not comparable with
Inception-based numbers. Always report them with the extractor, the sample
count and the real split used.
"""

import numpy as np
import tensorflow as tf

# Rows of the [rows, N] distance matrices of precision and recall computed at once (80 MB for N = 10,000).
_DISTANCE_CHUNK = 1000


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
    TF-GAN's disjoint blocks of 1,000 do. Unbiased: it is
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


def _squared_distances(x, y):
    """‖x_i - y_j‖² for every pair of rows, [len(x), len(y)], clipped at 0 against round-off."""
    d = x @ y.T
    d *= -2.0
    d += np.sum(x * x, axis=1)[:, None]
    d += np.sum(y * y, axis=1)[None, :]
    return np.maximum(d, 0.0, out=d)


def _knn_radii(acts, k):
    """Squared distance from each row to its k-th nearest neighbour among the other rows."""
    # Column 0 of each sorted row is the point itself (distance 0), so the k-th neighbour is column k.
    return np.concatenate(
        [
            np.partition(_squared_distances(acts[start : start + _DISTANCE_CHUNK], acts), k, axis=1)[:, k]
            for start in range(0, len(acts), _DISTANCE_CHUNK)
        ]
    )


def _fraction_in_manifold(points, centres, radii):
    """Share of `points` inside at least one ball centred on a row of `centres` with squared radius `radii`."""
    inside = [
        np.any(_squared_distances(points[start : start + _DISTANCE_CHUNK], centres) <= radii[None, :], axis=1)
        for start in range(0, len(points), _DISTANCE_CHUNK)
    ]
    return float(np.mean(np.concatenate(inside)))


class Manifold:
    """The k-NN estimate of the manifold of a set of activations [N > k, D]: balls reaching each row's k-th neighbour.

    Built once for the real activations and reused for every generated set
    (computing the radii is most of the cost of precision and recall).
    """

    def __init__(self, acts, k=3):
        acts = _as_2d(acts, "acts")
        if not 1 <= k < len(acts):
            raise ValueError(f"k must be in [1, N - 1] for N = {len(acts)} activations. Received: k={k}")
        self.acts, self.k = acts, k
        self.radii = _knn_radii(acts, k)


def precision_recall(real, fake, k=3):
    """Precision and recall of generated activations against real ones (Kynkäänniemi et al., 2019).

    Precision is the share of generated samples inside the real manifold (how
    many samples look real); recall the share of real samples inside the
    generated manifold (how much of the real variety is generated: mode
    collapse shows up as low recall). Each manifold is the union of balls
    centred on its samples, reaching their k-th nearest neighbour.

    Args:
      real: real activations [N1 > k, D], or their `Manifold` (built once, reused).
      fake: generated activations [N2 > k, D].
      k: neighbour defining each ball's radius (the paper's default, 3).

    Returns:
      (precision, recall), each in [0, 1].
    """
    real = real if isinstance(real, Manifold) else Manifold(real, k)
    fake = Manifold(fake, real.k)
    if real.acts.shape[1] != fake.acts.shape[1]:
        raise ValueError(f"Activation sizes differ: {real.acts.shape[1]} vs {fake.acts.shape[1]}.")
    return (
        _fraction_in_manifold(fake.acts, real.acts, real.radii),
        _fraction_in_manifold(real.acts, fake.acts, fake.radii),
    )


def _check_image_pairs(a, b):
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"Expected two image sets [N, H, W, C] of one shape. Received shapes {a.shape} and {b.shape}.")


def psnr(a, b, data_range=2.0):
    """Mean peak signal-to-noise ratio (dB) over pairs of images [N, H, W, C].

    `data_range` is max - min of the pixel range: 2 for tf_gkd's [-1, 1]
    images (255 for uint8). Identical images would score infinity; their MSE is
    floored at 1e-10 (≈ 106 dB for the [-1, 1] range).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    _check_image_pairs(a, b)
    mse = np.mean((a - b) ** 2, axis=tuple(range(1, a.ndim)))
    return float(np.mean(10.0 * np.log10(data_range**2 / np.maximum(mse, 1e-10))))


def ssim(a, b, data_range=2.0, low=-1.0, batch_size=1000):
    """Mean structural similarity (Wang et al., 2004) over pairs of images [N, H >= 11, W >= 11, C].

    Pixels are in [low, low + data_range]: [-1, 1] for tf_gkd's images. This
    is `tf.image.ssim` with its defaults (11×11 Gaussian window, σ = 1.5,
    k1 = 0.01, k2 = 0.03). SSIM's luminance term is not shift-invariant and
    assumes intensities from 0, so the images are shifted by -`low` first:
    [-1, 1] images score as [0, 1] images do with range 1. 1 for identical
    images; lower, down to -1, the less alike.
    """
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    _check_image_pairs(a, b)
    values = [
        tf.image.ssim(a[start : start + batch_size] - low, b[start : start + batch_size] - low, max_val=data_range)
        for start in range(0, len(a), batch_size)
    ]
    return float(np.mean(np.concatenate(values), dtype=np.float64))
