"""Metric formulas on synthetic activations with known answers."""

import numpy as np
import pytest

from tf_gkd.evaluation import metrics


def gaussian(n, dim, mean=0.0, std=1.0, seed=0):
    return np.random.default_rng(seed).normal(mean, std, (n, dim))


def test_fid_of_a_set_with_itself_is_zero():
    acts = gaussian(500, 16)
    assert metrics.frechet_distance(acts, acts) == pytest.approx(0.0, abs=1e-8)


def test_fid_of_a_mean_shift_is_its_squared_norm():
    acts = gaussian(2000, 8)
    shift = np.arange(8) / 4.0
    # Same covariance, so only ‖Δμ‖² remains.
    assert metrics.frechet_distance(acts, acts + shift) == pytest.approx(np.sum(shift**2), rel=1e-8)


def test_fid_of_gaussians_with_known_moments():
    # N(0, I) vs N(0, 4I) in 4 dims: Tr(I + 4I - 2·2I) = 4·1 = 4 (sample moments, so approximately).
    fid = metrics.frechet_distance(gaussian(20000, 4, seed=1), gaussian(20000, 4, std=2.0, seed=2))
    assert fid == pytest.approx(4.0, rel=0.05)


def test_fid_is_symmetric_and_real_for_rank_deficient_covariances():
    a = np.concatenate([gaussian(300, 3), np.zeros((300, 2))], axis=1)  # Singular covariance.
    b = gaussian(300, 5, seed=3)
    assert metrics.frechet_distance(a, b) == pytest.approx(metrics.frechet_distance(b, a), rel=1e-6)
    assert np.isfinite(metrics.frechet_distance(a, b))


def test_kid_is_zero_for_the_same_distribution_and_grows_with_a_shift():
    a, b = gaussian(1000, 8, seed=4), gaussian(1000, 8, seed=5)
    same, _ = metrics.kernel_distance(a, b, num_subsets=5, max_subset_size=500)
    shifted, _ = metrics.kernel_distance(a, b + 1.0, num_subsets=5, max_subset_size=500)
    assert abs(same) < 0.05
    assert shifted > 1.0


def test_kid_is_deterministic():
    a, b = gaussian(300, 4, seed=6), gaussian(300, 4, seed=7)
    assert metrics.kernel_distance(a, b, seed=3) == metrics.kernel_distance(a, b, seed=3)


def test_classifier_score_bounds():
    confident = np.eye(10)[np.arange(1000) % 10]
    assert metrics.classifier_score(confident) == pytest.approx(10.0, rel=1e-6)
    assert metrics.classifier_score(np.full((1000, 10), 0.1)) == pytest.approx(1.0)
    one_class = np.eye(10)[np.zeros(100, int)]
    assert metrics.classifier_score(one_class) == pytest.approx(1.0)


def test_psnr_known_value():
    a = np.zeros((2, 4, 4, 1))
    b = np.full((2, 4, 4, 1), 0.2)  # MSE 0.04, range 2: 10·log10(4 / 0.04) = 20 dB.
    assert metrics.psnr(a, b) == pytest.approx(20.0)
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.psnr(a, b[:1])


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match=r"\[N >= 2, D\]"):
        metrics.frechet_distance(np.zeros(5), np.zeros((5, 2)))
