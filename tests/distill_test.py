"""Generator distillation: loss terms by hand, the frozen teacher, learning, offline pairs."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_gkd import contract, rundir
from tf_gkd.data import pairs as pairs_lib
from tf_gkd.losses import distill as losses
from tf_gkd.models import distiller as distill_lib
from tf_gkd.models.adversary import Adversary
from tf_gkd.networks import factory
from tf_gkd.runs import train as runs
from tf_gkd.runs.config import TrainConfig

REAL = np.random.default_rng(0).uniform(-1, 1, (16, 28, 28, 1)).astype(np.float32)
Z_DIM = 8


def tiny_teacher(seed=1):
    keras.utils.set_random_seed(seed)
    return factory.make_generator("dense", z_dim=Z_DIM, width=0.2, name="teacher")


def tiny_distiller(teacher=None, adversarial_weight=0.0, feature_weight=0.0, **kwargs):
    keras.utils.set_random_seed(2)
    teacher = teacher or tiny_teacher()
    student = factory.make_generator("dense", z_dim=Z_DIM, width=0.05, name="student")
    uses_d = adversarial_weight > 0 or feature_weight > 0 or kwargs.get("distribution_weight", 0) > 0
    discriminator = factory.make_discriminator("dense", width=0.1) if uses_d else None
    model = distill_lib.GeneratorDistiller(
        teacher,
        student,
        discriminator,
        adversarial_weight=adversarial_weight,
        feature_weight=feature_weight,
        seed=0,
        **kwargs,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        d_optimizer=keras.optimizers.Adam(1e-3) if uses_d else None,
    )
    return model


def fit(model, steps, data=None):
    data = data or {"real": REAL}
    return model.fit(tf.data.Dataset.from_tensors(data).repeat(), steps_per_epoch=steps, verbose=0, shuffle=False)


# Loss terms on hand-made tensors.
S = tf.constant([[0.5, -1.0], [0.0, 1.0]])
T = tf.constant([[0.0, -1.0], [1.0, 1.0]])


def test_pixel_losses_by_hand():
    assert float(losses.l1_loss(S, T)) == pytest.approx((0.5 + 0 + 1 + 0) / 4)
    assert float(losses.mse_loss(S, T)) == pytest.approx((0.25 + 0 + 1 + 0) / 4)
    assert losses.pixel_loss("l1") is losses.l1_loss and losses.pixel_loss("mse") is losses.mse_loss
    with pytest.raises(ValueError, match="Unknown pixel loss.*'l3'"):
        losses.pixel_loss("l3")


def test_feature_loss_by_hand_and_only_moves_the_student():
    student, teacher = tf.Variable(S), tf.Variable(T)
    with tf.GradientTape() as tape:
        loss = losses.feature_loss(student, teacher)
    assert float(loss) == pytest.approx(1.25 / 4)
    grad_student, grad_teacher = tape.gradient(loss, [student, teacher])
    np.testing.assert_allclose(grad_student, 2 * (S - T) / 4)
    assert grad_teacher is None


def test_psnr_by_hand():
    teacher = np.zeros((2, 4, 4, 1), np.float32)
    student = teacher + np.array([0.2, 0.0], np.float32)[:, None, None, None]
    psnr = losses.psnr(student, teacher).numpy()
    assert psnr[0] == pytest.approx(10 * np.log10(4 / 0.04), rel=1e-5)  # (max 2)² / mse, in dB.
    assert psnr[1] == pytest.approx(100.0)  # Identical images: capped, finite.


# The distiller.


def test_teacher_is_frozen_bit_for_bit():
    teacher = tiny_teacher()
    before = [w.copy() for w in teacher.get_weights()]
    model = tiny_distiller(teacher, adversarial_weight=0.1, feature_weight=1.0)
    student_before = [w.copy() for w in model.student.get_weights()]
    fit(model, 5)
    for b, a in zip(before, teacher.get_weights()):
        np.testing.assert_array_equal(b, a)
    assert any(not np.array_equal(b, a) for b, a in zip(student_before, model.student.get_weights()))
    assert not teacher.trainable


def test_mimicry_steps_lower_the_pixel_loss_on_fixed_latents():
    model = tiny_distiller()
    z = contract.latents(64, Z_DIM, seed=5)
    target = model.teacher(z)

    def pixel():
        return float(losses.l1_loss(model.student(z, training=False), target))

    before = pixel()
    history = fit(model, 60)
    assert pixel() < 0.7 * before
    # Pure mimicry logs no adversarial metrics: there is no discriminator.
    assert set(history.history) == {"loss", "pixel", "psnr"}


def test_adversarial_and_feature_terms_are_logged_and_weighted():
    model = tiny_distiller(adversarial_weight=0.5, feature_weight=2.0, pixel_weight=3.0)
    logs = fit(model, 1).history
    total = 3.0 * logs["pixel"][0] + 0.5 * logs["adversarial"][0] + 2.0 * logs["feature"][0]
    assert logs["loss"][0] == pytest.approx(total, rel=1e-5)
    assert {"d_loss", "d_real", "d_fake"} <= set(logs)


def test_offline_batches_train_without_a_teacher():
    teacher = tiny_teacher()
    z = contract.latents(16, Z_DIM, seed=3)
    offline = {"real": REAL, "z": z, "teacher": np.asarray(teacher(z))}
    model = tiny_distiller(teacher)
    model.teacher = None
    logs = fit(model, 3, offline).history
    assert np.isfinite(logs["pixel"]).all()
    with pytest.raises(ValueError, match="every batch must bring its targets"):
        model.train_step({"real": tf.constant(REAL)})


def test_pure_mimicry_reads_no_images():
    model = tiny_distiller()
    assert not model.uses_real_images
    size_only = {"batch": np.zeros((16, 0), np.float32)}
    z, _, target = model._targets(size_only)
    assert z.shape == (16, Z_DIM)
    np.testing.assert_allclose(target, model.teacher(z), atol=1e-6)
    logs = fit(model, 3, size_only).history
    assert np.isfinite(logs["pixel"]).all()
    adversarial = tiny_distiller(adversarial_weight=0.1)
    assert adversarial.uses_real_images
    with pytest.raises(ValueError, match="must bring real images"):
        adversarial.train_step(size_only)


def test_vae_teacher_posterior_latents():
    keras.utils.set_random_seed(3)
    encoder = factory.make_encoder("dense", z_dim=Z_DIM, width=0.1)
    # A posterior with σ = e^-10: its samples are its means.
    log_var = encoder.get_layer("log_var")
    log_var.set_weights([np.zeros_like(log_var.kernel), np.full(Z_DIM, -20.0, np.float32)])
    model = tiny_distiller(teacher_encoder=encoder, posterior_fraction=0.5)
    encoder_before = [w.copy() for w in encoder.get_weights()]
    z, _, target = model._targets({"real": tf.constant(REAL)})
    mean, _ = encoder(REAL)
    assert z.shape == (16, Z_DIM) and target.shape == (16, 28, 28, 1)
    # The first half of the batch comes from the posteriors of the real images, the rest from the prior.
    np.testing.assert_allclose(z[:8], mean[:8], atol=1e-3)
    assert np.abs(np.asarray(z[8:]) - np.asarray(mean[8:])).mean() > 0.3
    np.testing.assert_allclose(target, model.teacher(z), atol=1e-6)
    fit(model, 2)
    for b, a in zip(encoder_before, encoder.get_weights()):
        np.testing.assert_array_equal(b, a)


def test_bad_distiller_arguments():
    teacher, student = tiny_teacher(), factory.make_generator("dense", z_dim=Z_DIM, width=0.05)
    with pytest.raises(ValueError, match="need a discriminator"):
        distill_lib.GeneratorDistiller(teacher, student, None, adversarial_weight=0.1)
    with pytest.raises(ValueError, match="same z: teacher z_dim=8, student z_dim=4"):
        distill_lib.GeneratorDistiller(teacher, factory.make_generator("dense", z_dim=4, width=0.05))
    with pytest.raises(ValueError, match="posterior_fraction"):
        distill_lib.GeneratorDistiller(teacher, student, posterior_fraction=1.5)


# Offline pairs.


def test_offline_pairs_reproduce_the_online_targets(tmp_path):
    teacher = tiny_teacher()
    path = tmp_path / rundir.PAIRS_FILE
    pairs_lib.write_pairs(teacher, str(path), num_pairs=70, seed=4, batch_size=32, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [rundir.PAIRS_FILE]  # No temporary file left.
    read = list(pairs_lib.pairs_dataset(str(path), Z_DIM, contract.DEFAULT_IMAGE_SHAPE).as_numpy_iterator())
    z = np.stack([r["z"] for r in read])
    images = np.stack([r["teacher"] for r in read])
    np.testing.assert_array_equal(z, contract.latents(70, Z_DIM, seed=4))
    # Images are stored as float16: 11 significant bits.
    np.testing.assert_allclose(images, np.asarray(teacher(z)), atol=1e-3)
    # The fixed sample grid of a run with the same seed is the start of the pairs.
    np.testing.assert_array_equal(z[:16], contract.latents(16, Z_DIM, seed=4))


def test_checkpoint_keys_are_those_of_earlier_runs():
    # Runs written by earlier revisions resume only if the checkpoint's object names stay the same.
    pure = {"generator", "ema_generator", "g_optimizer", "seed"}
    assert set(tiny_distiller().checkpoint_items()) == pure
    assert set(tiny_distiller(adversarial_weight=0.1).checkpoint_items()) == pure | {"discriminator", "d_optimizer"}


def test_scheduled_weights_follow_the_run_and_are_logged():
    model = tiny_distiller(
        adversarial_weight=0.4,
        pixel_weight=2.0,
        pixel_weight_schedule="ramp_down:0:1",
        adversarial_weight_schedule="ramp_up:0:1",
        total_steps=4,
    )
    for step in range(4):  # Progress step/4 at each update.
        logs = {k: v[0] for k, v in fit(model, 1).history.items()}
        assert logs["pixel_weight"] == pytest.approx(2.0 * (1 - step / 4))
        assert logs["adversarial_weight"] == pytest.approx(0.4 * step / 4)
        total = logs["pixel_weight"] * logs["pixel"] + logs["adversarial_weight"] * logs["adversarial"]
        assert logs["loss"] == pytest.approx(total, rel=1e-5)


def test_constant_weights_log_no_schedule():
    logs = fit(tiny_distiller(adversarial_weight=0.4, total_steps=4), 1).history
    assert "pixel_weight" not in logs and "adversarial_weight" not in logs


def test_schedules_need_the_run_length():
    with pytest.raises(ValueError, match="schedules need the run's total_steps"):
        tiny_distiller(pixel_weight_schedule="ramp_down:0.5:1")


def test_r1_penalty_trains_the_discriminator():
    plain, r1 = tiny_distiller(adversarial_weight=0.1), tiny_distiller(adversarial_weight=0.1, r1_weight=10.0)
    d_plain, d_r1 = fit(plain, 1).history["d_loss"][0], fit(r1, 1).history["d_loss"][0]
    assert np.isfinite(d_r1) and d_r1 > d_plain  # Same weights and batch: the penalty adds to the loss.
    # Lazy R1 in the compiled step: the first update is due, weighted by the interval.
    lazy = tiny_distiller(adversarial_weight=0.1, r1_weight=10.0, r1_interval=2)
    assert fit(lazy, 1).history["d_loss"][0] == pytest.approx(d_plain + 2 * (d_r1 - d_plain), rel=1e-4)


def test_lazy_r1_is_the_penalty_times_its_interval_on_every_nth_update():
    keras.utils.set_random_seed(3)
    discriminator = factory.make_discriminator("dense", width=0.1)
    fake = np.random.default_rng(1).uniform(-1, 1, REAL.shape).astype(np.float32)

    def d_loss(r1_weight, r1_interval=1, update=0):
        adversary = Adversary(
            discriminator, keras.random.SeedGenerator(0), r1_weight=r1_weight, r1_interval=r1_interval
        )
        adversary.compile(keras.optimizers.Adam())
        adversary.build_optimizer()
        adversary.optimizer.iterations.assign(update)
        return float(adversary.discriminator_loss(REAL, fake)[0])

    plain, every_update = d_loss(0.0), d_loss(1.0)
    assert every_update > plain + 1e-4
    for update in (0, 3, 6):
        assert d_loss(1.0, 3, update) == pytest.approx(plain + 3 * (every_update - plain), rel=1e-5)
    for update in (1, 2, 5):
        assert d_loss(1.0, 3, update) == pytest.approx(plain, rel=1e-6)
    with pytest.raises(ValueError, match="r1_interval must be >= 1"):
        Adversary(discriminator, keras.random.SeedGenerator(0), r1_weight=1.0, r1_interval=0)


def test_energy_distance_by_hand_and_zero_for_one_distribution():
    s, t = np.array([[0.0], [2.0]], np.float32), np.array([[1.0], [3.0]], np.float32)
    # 2·E|s - t| - E|s - s'| - E|t - t'| over distinct pairs: 2·(1 + 3 + 1 + 1)/4 - 2 - 2.
    assert float(losses.energy_distance(s, t)) == pytest.approx(2 * 6 / 4 - 2 - 2, abs=1e-4)
    rng = np.random.default_rng(0)
    same = [float(losses.energy_distance(rng.normal(size=(64, 4)), rng.normal(size=(64, 4)))) for _ in range(20)]
    shifted = float(losses.energy_distance(rng.normal(size=(64, 4)) + 1.0, rng.normal(size=(64, 4))))
    assert abs(np.mean(same)) < 0.02 and shifted > 1.0


def test_energy_distance_moves_only_the_student_and_stays_finite_when_collapsed():
    student = tf.Variable(np.zeros((4, 3), np.float32))  # Every row the same: zero distances.
    teacher = tf.Variable(np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = losses.energy_distance(student, teacher)
    grad_student, grad_teacher = tape.gradient(loss, [student, teacher])
    assert np.all(np.isfinite(grad_student)) and grad_teacher is None


@pytest.mark.parametrize("target", ["teacher", "real"])
def test_distribution_term_is_logged_and_weighted(target):
    model = tiny_distiller(distribution_weight=0.5, distribution_target=target, pixel_weight=2.0)
    logs = {k: v[0] for k, v in fit(model, 1).history.items()}
    assert logs["distribution"] > 0
    assert logs["loss"] == pytest.approx(2.0 * logs["pixel"] + 0.5 * logs["distribution"], rel=1e-5)


def test_distribution_term_needs_a_discriminator_and_a_known_target():
    with pytest.raises(ValueError, match="distribution_weight need a discriminator"):
        distill_lib.GeneratorDistiller(tiny_teacher(), tiny_teacher(), distribution_weight=0.1)
    with pytest.raises(ValueError, match="distribution_target must be one of"):
        tiny_distiller(distribution_weight=0.1, distribution_target="classifier")


def test_adversary_is_idle_until_its_ramp_starts():
    model = tiny_distiller(adversarial_weight=0.4, adversarial_weight_schedule="ramp_up:0.5:1", total_steps=4)
    assert model.adversary_start == 2 and len(model.fit_callbacks) == 1
    d_weights = [w.numpy() for w in model.adversary.discriminator.weights]
    data = tf.data.Dataset.from_tensors({"real": REAL}).repeat()
    history = model.fit(data, steps_per_epoch=2, callbacks=model.fit_callbacks, verbose=0, shuffle=False).history
    # Two steps of pure mimicry: the discriminator neither trained nor scored, then the switch.
    assert history["d_loss"] == [0.0] and history["adversarial"] == [0.0]
    for before, after in zip(d_weights, model.adversary.discriminator.weights):
        np.testing.assert_array_equal(before, after.numpy())
    assert model.adversary_active
    history = model.fit(data, steps_per_epoch=2, verbose=0, shuffle=False).history
    assert history["d_loss"][0] > 0 and history["adversarial"][0] > 0
    assert any(np.any(b != a.numpy()) for b, a in zip(d_weights, model.adversary.discriminator.weights))


def test_the_adversarial_schedule_scales_every_discriminator_term():
    # The feature and distribution terms wait for the schedule too: an idle discriminator, then a(t) of the ramp.
    model = tiny_distiller(
        feature_weight=1.0, distribution_weight=2.0, adversarial_weight_schedule="ramp_up:0.5:1", total_steps=4
    )
    assert model.adversary_start == 2 and len(model.fit_callbacks) == 1
    data = tf.data.Dataset.from_tensors({"real": REAL}).repeat()
    # One step per epoch, so that the history has every step's terms.
    h = model.fit(data, epochs=4, steps_per_epoch=1, verbose=0, shuffle=False, callbacks=model.fit_callbacks).history
    assert h["d_loss"][:2] == [0, 0] and min(h["d_loss"][2:]) > 0  # Idle, then trained.
    for step, factor in ((0, 0.0), (1, 0.0), (2, 0.0), (3, 0.5)):
        expected = h["pixel"][step] + factor * (h["feature"][step] + 2.0 * h["distribution"][step])
        assert h["loss"][step] == pytest.approx(expected, rel=1e-5)
    assert h["feature"][3] > 0 and h["distribution"][3] != 0 and h["loss"][3] > h["pixel"][3]
    constant = tiny_distiller(adversarial_weight=0.4)
    assert constant.adversary_start == 0 and constant.fit_callbacks == []
    assert fit(constant, 1).history["d_loss"][0] > 0


def test_idle_discriminator_learns_at_the_runs_rate():
    config = TrainConfig(train_steps=100, lr_decay="cosine")
    late = runs.make_optimizer(1.0, config, first_step=60)
    # Its first update is the run's step 60: the cosine rate of that step, not of step 0.
    assert float(late.learning_rate) == pytest.approx(0.5 * (1 + np.cos(0.6 * np.pi)), rel=1e-5)
    assert float(runs.make_optimizer(1.0, config).learning_rate) == pytest.approx(1.0)
    assert late.get_config()["learning_rate"]["config"]["offset"] == 60
