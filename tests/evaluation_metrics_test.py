"""Metric formulas on synthetic activations with known answers."""

import numpy as np
import pytest
import tensorflow as tf

from tf_gkd.evaluation import metrics


def gaussian(n, dim, mean=0.0, std=1.0, seed=0):
    return np.random.default_rng(seed).normal(mean, std, (n, dim))


def exact_moments(n, mean, std, seed=0):
    """n samples whose sample mean is exactly `mean` and sample covariance exactly diag(std²)."""
    mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    x = gaussian(n, len(mean), seed=seed)
    x -= x.mean(0)
    x = x @ np.linalg.inv(np.linalg.cholesky(np.cov(x, rowvar=False))).T  # Whitened: covariance I.
    return mean + x * std


def test_exact_moments_helper():
    x = exact_moments(50, [1.0, 2.0, 3.0], [1.0, 2.0, 0.5])
    np.testing.assert_allclose(x.mean(0), [1.0, 2.0, 3.0])
    np.testing.assert_allclose(np.cov(x, rowvar=False), np.diag([1.0, 4.0, 0.25]), atol=1e-12)


def test_fid_of_a_set_with_itself_is_zero():
    acts = gaussian(500, 16)
    assert metrics.frechet_distance(acts, acts) == pytest.approx(0.0, abs=1e-8)


def test_fid_of_a_mean_shift_is_its_squared_norm():
    # Identity covariances: only ‖Δμ‖² remains.
    shift = np.arange(8) / 4.0
    a = exact_moments(200, np.zeros(8), np.ones(8), seed=1)
    b = exact_moments(300, shift, np.ones(8), seed=2)
    assert metrics.frechet_distance(a, b) == pytest.approx(np.sum(shift**2), rel=1e-9)


def test_fid_of_diagonal_gaussians_has_the_closed_form():
    # Diagonal covariances commute: Tr(C₁ + C₂ - 2(C₁C₂)^½) = Σ (σ₁ - σ₂)².
    mu1, mu2 = np.array([0.0, 1.0, -2.0, 0.5]), np.array([1.0, 1.0, 0.0, 0.0])
    std1, std2 = np.array([1.0, 2.0, 0.5, 3.0]), np.array([2.0, 2.0, 1.5, 1.0])
    a, b = exact_moments(400, mu1, std1, seed=3), exact_moments(500, mu2, std2, seed=4)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((std1 - std2) ** 2)
    assert metrics.frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    assert metrics.frechet_distance(b, a) == pytest.approx(expected, rel=1e-9)


def test_fid_is_real_and_finite_for_rank_deficient_covariances():
    a = np.concatenate([gaussian(300, 3), np.zeros((300, 2))], axis=1)  # Singular covariance.
    b = gaussian(300, 5, seed=3)
    fid = metrics.frechet_distance(a, b)
    assert isinstance(fid, float) and np.isfinite(fid)
    assert fid == pytest.approx(metrics.frechet_distance(b, a), rel=1e-6)


def test_kid_is_zero_for_a_set_with_itself_and_positive_for_a_shift():
    a = gaussian(1000, 8, seed=4)
    same, _ = metrics.kernel_distance(a, a, num_subsets=5, max_subset_size=500)
    small, _ = metrics.kernel_distance(a, a + 0.25, num_subsets=5, max_subset_size=500)
    large, _ = metrics.kernel_distance(a, a + 1.0, num_subsets=5, max_subset_size=500)
    # Points shared by the two subsets enter the cross term k(x, x) but not the
    # within-set terms, hence a small negative value, O(1/m): -0.017 here.
    assert -0.05 < same < 0
    assert 0.1 < small < large


def test_kid_is_zero_for_two_samples_of_one_distribution():
    kid, _ = metrics.kernel_distance(gaussian(1000, 8, seed=5), gaussian(1000, 8, seed=6), num_subsets=5)
    assert abs(kid) < 0.02


def test_kid_is_deterministic_given_the_seed():
    a, b = gaussian(300, 4, seed=6), gaussian(300, 4, seed=7)
    assert metrics.kernel_distance(a, b, max_subset_size=100, seed=3) == metrics.kernel_distance(
        a, b, max_subset_size=100, seed=3
    )
    assert metrics.kernel_distance(a, b, max_subset_size=100, seed=3) != metrics.kernel_distance(
        a, b, max_subset_size=100, seed=4
    )


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
    b[1] = 0.02  # MSE 0.0004: 40 dB; the mean over images is 30 dB.
    assert metrics.psnr(a, b) == pytest.approx(30.0)
    assert metrics.psnr(np.zeros((1, 2, 2, 1)), np.full((1, 2, 2, 1), 25.5), data_range=255.0) == pytest.approx(20.0)


def test_precision_and_recall_of_a_set_against_itself_are_1():
    acts = gaussian(300, 8, seed=8)
    assert metrics.precision_recall(acts, acts, k=3) == (1.0, 1.0)


def test_precision_and_recall_of_far_apart_sets_are_0():
    a, b = gaussian(200, 8, seed=9), gaussian(150, 8, mean=100.0, seed=10)
    assert metrics.precision_recall(a, b) == (0.0, 0.0)
    assert metrics.precision_recall(b, a) == (0.0, 0.0)


def test_precision_and_recall_count_points_inside_the_k_nn_balls():
    # 1-D, k = 1: each point's ball reaches its nearest neighbour in its own set.
    real = np.array([[0.0], [1.0], [2.0], [10.0], [12.0]])  # Radii 1, 1, 1, 2, 2.
    fake = np.array([[0.5], [0.7], [11.5], [11.9], [5.0], [5.2]])  # Radii 0.2, 0.2, 0.4, 0.4, 0.2, 0.2.
    precision, recall = metrics.precision_recall(real, fake, k=1)
    assert precision == pytest.approx(4 / 6)  # All but 5.0 and 5.2 lie in a real ball.
    assert recall == pytest.approx(1 / 5)  # Only 12 lies in a fake ball (0.1 from 11.9, radius 0.4).


def test_mode_collapse_keeps_precision_and_loses_recall():
    real = gaussian(500, 4, seed=11)
    collapsed = real[0] + gaussian(50, 4, std=1e-3, seed=12)  # Every sample is (nearly) one real image.
    varied = real[::10]
    assert metrics.precision_recall(real, collapsed) == (1.0, pytest.approx(1 / 500))
    precision, recall = metrics.precision_recall(real, varied)
    assert precision == 1.0 and recall > 0.5


def test_a_manifold_is_reused_as_is():
    real, fake = gaussian(300, 4, seed=12), gaussian(200, 4, mean=0.5, seed=13)
    manifold = metrics.Manifold(real, k=5)
    assert metrics.precision_recall(manifold, fake) == metrics.precision_recall(real, fake, k=5)
    with pytest.raises(ValueError, match="k=300"):
        metrics.Manifold(real, k=300)


def test_psnr_and_ssim_of_identical_images():
    images = np.random.default_rng(0).uniform(-1, 1, (5, 28, 28, 1))
    assert metrics.psnr(images, images) == pytest.approx(10 * np.log10(4 / 1e-10))  # The MSE floor.
    assert metrics.ssim(images, images) == pytest.approx(1.0, abs=1e-6)


def test_ssim_falls_with_noise_and_batching_does_not_change_it():
    rng = np.random.default_rng(1)
    images = np.clip(rng.normal(0, 0.5, (7, 28, 28, 1)), -1, 1)
    slightly = np.clip(images + rng.normal(0, 0.05, images.shape), -1, 1)
    very = np.clip(images + rng.normal(0, 0.5, images.shape), -1, 1)
    assert 1.0 > metrics.ssim(images, slightly) > metrics.ssim(images, very)
    assert metrics.ssim(images, very, batch_size=3) == pytest.approx(metrics.ssim(images, very), rel=1e-6)


def test_ssim_matches_tensorflow_on_0_1_images():
    rng = np.random.default_rng(2)
    a, b = rng.uniform(-1, 1, (4, 28, 28, 1)), rng.uniform(-1, 1, (4, 28, 28, 1))
    # [-1, 1] with range 2 is [0, 1] with range 1: SSIM is invariant to that joint scaling.
    expected = np.mean(tf.image.ssim(((a + 1) / 2).astype(np.float32), ((b + 1) / 2).astype(np.float32), max_val=1.0))
    assert metrics.ssim(a, b) == pytest.approx(float(expected), rel=1e-4)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: metrics.frechet_distance(np.zeros(5), np.zeros((5, 2))), r"\[N >= 2, D\]"),
        (lambda: metrics.frechet_distance(np.zeros((1, 2)), np.zeros((5, 2))), r"\[N >= 2, D\]"),
        (lambda: metrics.frechet_distance(np.zeros((5, 3)), np.zeros((5, 2))), "sizes differ"),
        (lambda: metrics.kernel_distance(np.zeros((5, 2)), np.zeros((5, 2)), max_subset_size=1), "max_subset_size=1"),
        (lambda: metrics.classifier_score(np.full(10, 0.1)), r"\[N, K\]"),
        (lambda: metrics.psnr(np.zeros((2, 4, 4, 1)), np.zeros((1, 4, 4, 1))), "one shape"),
        (lambda: metrics.ssim(np.zeros((2, 28, 28)), np.zeros((2, 28, 28))), "one shape"),
        (lambda: metrics.precision_recall(np.zeros((5, 3)), np.zeros((5, 2))), "sizes differ"),
    ],
)
def test_bad_shapes_are_rejected_with_what_was_received(call, message):
    with pytest.raises(ValueError, match=message):
        call()
