"""The VAE teacher: networks, losses against hand-computed values, training, run directory."""

import json
import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from train_binary_test import gkd_train, latest_step

from tf_gkd import contract, rundir
from tf_gkd.losses import vae as vae_losses
from tf_gkd.models import vae as vae_lib
from tf_gkd.networks import factory
from tf_gkd.networks import io as model_io
from tf_gkd.networks import layers as gkd_layers
from tf_gkd.runs import config as config_lib
from tf_gkd.runs import train as runs
from tf_gkd.runs import vae_report

TINY_VAE = ["--model=vae", "--encoder_kind=dense", "--encoder_width=0.25"]


def tiny_vae(kind="dense", z_dim=4, **kwargs):
    keras.utils.set_random_seed(0)
    model = vae_lib.VAE(
        factory.make_encoder(kind, z_dim, width=0.25), factory.make_generator(kind, z_dim, width=0.25), seed=0, **kwargs
    )
    model.compile(keras.optimizers.Adam(1e-3))
    return model


def images(n=8, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, 28, 28, 1)).astype(np.float32)


@pytest.mark.parametrize("kind", factory.TRUNK_KINDS)
def test_encoder_decoder_and_sampling_shapes(kind):
    encoder = factory.make_encoder(kind, z_dim=5, width=0.25)
    mean, log_var = encoder(images(3))
    assert mean.shape == log_var.shape == (3, 5)
    assert mean.dtype == log_var.dtype == "float32"
    z = gkd_layers.Sampling(seed=1)([mean, log_var])
    assert z.shape == (3, 5)
    decoded = factory.make_generator(kind, z_dim=5, width=0.25)(z)
    assert decoded.shape == (3, 28, 28, 1)


def test_encoder_rejects_bad_sizes():
    with pytest.raises(ValueError, match="Received: z_dim=0"):
        factory.make_encoder("dense", z_dim=0)
    with pytest.raises(ValueError, match="Received: kind='resnet'"):
        factory.make_encoder("resnet")


@pytest.mark.parametrize("kind", factory.KINDS)
def test_pre_activation_view_gives_the_tanh_input(kind):
    generator = factory.make_generator(kind, z_dim=4, width=0.25)
    pre_activation, decoded = factory.with_pre_activation(generator)(np.ones((2, 4), np.float32))
    np.testing.assert_allclose(np.tanh(pre_activation), decoded, atol=1e-6)
    np.testing.assert_allclose(decoded, generator(np.ones((2, 4), np.float32)), atol=1e-6)
    # tanh(a) = 2·sigmoid(2a) − 1: 2a are the logits of the [0, 1] pixels.
    np.testing.assert_allclose(tf.sigmoid(2 * pre_activation), (decoded + 1) / 2, atol=1e-6)


def test_pre_activation_view_needs_a_tanh_images_layer():
    z = keras.Input((4,))
    other = keras.Model(z, keras.layers.Dense(3, name="images")(z))
    with pytest.raises(ValueError, match="Received: model"):
        factory.with_pre_activation(other)


def test_sampling_layer_reparameterises_and_serialises():
    layer = gkd_layers.Sampling(seed=3)
    mean = np.full((20000, 2), [1.0, -2.0], np.float32)
    log_var = np.full((20000, 2), [0.0, math.log(4.0)], np.float32)
    z = np.asarray(layer([mean, log_var]))
    np.testing.assert_allclose(z.mean(0), [1.0, -2.0], atol=0.05)
    np.testing.assert_allclose(z.std(0), [1.0, 2.0], rtol=0.03)
    # No variance: z is the mean.
    np.testing.assert_allclose(layer([mean[:3], np.full((3, 2), -100.0, np.float32)]), mean[:3], atol=1e-6)
    clone = keras.layers.deserialize(keras.layers.serialize(layer))
    assert isinstance(clone, gkd_layers.Sampling) and clone.seed == 3


@pytest.mark.parametrize(
    "mean, log_var, expected",
    [
        ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0], 0.0),  # q = prior.
        ([1.0, 1.0, 1.0], [0.0, 0.0, 0.0], 1.5),  # ½·μ² per dimension.
        ([0.0, 0.0, 0.0], [math.log(2.0)] * 3, 3 * 0.5 * (2.0 - 1.0 - math.log(2.0))),
        ([2.0, 0.0, 0.0], [0.0, -1.0, 0.0], 0.5 * 4.0 + 0.5 * (math.exp(-1.0) - 1.0 + 1.0)),
    ],
)
def test_kl_against_closed_form(mean, log_var, expected):
    kl = vae_losses.kl_divergence(np.array([mean], np.float32), np.array([log_var], np.float32))
    assert kl.shape == (1,)
    np.testing.assert_allclose(kl, [expected], atol=1e-6)


def test_bernoulli_reconstruction_against_hand_computed_values():
    # Pixels x01 = 0, 1, 0.5, 1 (x = -1, 1, 0, 1) with logits 0, 2, -1, 30.
    x = np.array([-1.0, 1.0, 0.0, 1.0], np.float32).reshape(1, 2, 2, 1)
    logits = np.array([0.0, 2.0, -1.0, 30.0], np.float32).reshape(1, 2, 2, 1)

    def softplus(v):
        return math.log1p(math.exp(v))

    # −[x·log σ(l) + (1 − x)·log(1 − σ(l))] = x·softplus(−l) + (1 − x)·softplus(l).
    expected = softplus(0.0) + softplus(-2.0) + 0.5 * softplus(1.0) + 0.5 * softplus(-1.0) + softplus(-30.0)
    np.testing.assert_allclose(vae_losses.bernoulli_reconstruction_loss(x, logits), [expected], rtol=1e-6)
    # Uninformative logits cost log 2 per pixel: 784·log 2 nats for a 28×28 image.
    per_image = vae_losses.bernoulli_reconstruction_loss(images(2), np.zeros((2, 28, 28, 1), np.float32))
    np.testing.assert_allclose(per_image, [784 * math.log(2.0)] * 2, rtol=1e-6)


def test_gaussian_reconstruction_against_hand_computed_values():
    sigma = 0.1
    constant = 0.5 * math.log(2 * math.pi * sigma**2)
    x = images(1)
    np.testing.assert_allclose(vae_losses.gaussian_reconstruction_loss(x, x, sigma), [784 * constant], rtol=1e-5)
    # One pixel off by 0.2 in [-1, 1] is 0.1 on the [0, 1] scale: + 0.1² / (2σ²) = + 0.5.
    decoded = x.copy()
    decoded[0, 5, 5, 0] -= 0.2
    np.testing.assert_allclose(
        vae_losses.gaussian_reconstruction_loss(x, decoded, sigma), [784 * constant + 0.5], rtol=1e-5
    )
    with pytest.raises(ValueError, match="Received: sigma=0"):
        vae_losses.gaussian_reconstruction_loss(x, x, 0)


@pytest.mark.parametrize("likelihood", vae_losses.LIKELIHOODS)
def test_training_steps_lower_the_loss_on_a_fixed_batch(likelihood):
    model = tiny_vae(likelihood=likelihood)
    batch = np.clip(images(16) * 0.2 + np.linspace(-0.8, 0.8, 28)[None, :, None, None], -1, 1).astype(np.float32)
    before = model.evaluate_elbo(batch)
    weights = [w.numpy().copy() for w in (model.encoder.weights[0], model.decoder.weights[0])]
    model.fit(tf.data.Dataset.from_tensors(batch).repeat(), steps_per_epoch=30, epochs=1, verbose=0, shuffle=False)
    after = model.evaluate_elbo(batch)
    assert int(model.step) == 30
    assert after["loss"] < before["loss"] - 10, (before, after)
    assert after["negative_elbo"] == pytest.approx(after["reconstruction"] + after["kl"])
    assert all(
        not np.array_equal(w, v.numpy()) for w, v in zip(weights, (model.encoder.weights[0], model.decoder.weights[0]))
    )


def test_vae_rejects_mismatched_networks():
    with pytest.raises(ValueError, match="Received: encoder outputs"):
        vae_lib.VAE(factory.make_encoder("dense", 3, 0.25), factory.make_generator("dense", 4, 0.25))
    with pytest.raises(ValueError, match="Received: likelihood='poisson'"):
        vae_lib.VAE(
            factory.make_encoder("dense", 4, 0.25), factory.make_generator("dense", 4, 0.25), likelihood="poisson"
        )


def test_latent_manifold_needs_a_2d_latent():
    assert vae_report.latent_manifold(factory.make_generator("dense", 2, 0.25), size=3).shape == (9, 28, 28, 1)
    with pytest.raises(ValueError, match="z_dim=4"):
        vae_report.latent_manifold(factory.make_generator("dense", 4, 0.25))


@pytest.mark.parametrize(
    "field, value", [("likelihood", "poisson"), ("gaussian_sigma", 0.0), ("beta", -1.0), ("encoder_width", 0.0)]
)
def test_bad_vae_config_values_are_named(field, value):
    with pytest.raises(config_lib.ConfigError, match=f"Received: {field}="):
        config_lib.TrainConfig(model="vae", **{field: value})


def test_identity_fields_depend_on_the_model(tmp_path):
    vae = config_lib.TrainConfig(model="vae")
    config_lib.record(vae, tmp_path, step=0)
    with pytest.raises(config_lib.ConfigError, match="likelihood: 'bernoulli' in the run, 'gaussian' now"):
        config_lib.check_resume(config_lib.TrainConfig(model="vae", likelihood="gaussian"), tmp_path)
    config_lib.check_resume(config_lib.TrainConfig(model="vae", loss="hinge"), tmp_path)  # A GAN-only field.

    # A GAN run from before the VAE fields existed still resumes.
    gan_dir = tmp_path / "gan"
    config_lib.record(config_lib.TrainConfig(), gan_dir, step=0)
    saved = json.loads((gan_dir / "config.json").read_text())
    for name in ("encoder_kind", "encoder_width", "encoder_depth", "likelihood", "gaussian_sigma", "beta"):
        del saved[name]
    (gan_dir / "config.json").write_text(json.dumps(saved))
    config_lib.check_resume(config_lib.TrainConfig(encoder_kind="dense"), gan_dir)


@pytest.fixture(scope="module")
def vae_2d_run(tiny_data_dir, tmp_path_factory):
    """A tiny dense VAE with a 2-D latent, trained in-process: (model, workdir)."""
    workdir = str(tmp_path_factory.mktemp("vae_2d"))
    config = config_lib.TrainConfig(
        model="vae",
        data_dir=tiny_data_dir,
        z_dim=2,
        encoder_kind="dense",
        generator_kind="dense",
        encoder_width=0.25,
        generator_width=0.25,
        batch_size=16,
        train_steps=10,
        steps_per_execution=5,
        log_every=5,
        sample_every=10,
        checkpoint_every=10,
        num_samples=8,
    )
    return runs.train(config, workdir), workdir


def test_vae_run_directory(vae_2d_run):
    model, workdir = vae_2d_run
    samples = sorted(os.listdir(os.path.join(workdir, "samples")))
    assert samples == [
        "latent_manifold.png",
        "latent_scatter.png",
        "reconstructions_step_0000000.png",
        "reconstructions_step_0000010.png",
        "step_0000000.png",
        "step_0000010.png",
    ]
    result = json.loads(open(os.path.join(workdir, rundir.VAE_EVAL_FILE)).read())
    assert result["num_images"] == 64 and result["step"] == 10
    assert result["negative_elbo"] == pytest.approx(result["reconstruction"] + result["kl"])
    assert 0 < result["kl"] and 0 < result["reconstruction"] < 784 * math.log(2.0) + 100
    tags = {
        v.tag
        for f in os.listdir(os.path.join(workdir, "tb"))
        for e in tf.compat.v1.train.summary_iterator(os.path.join(workdir, "tb", f))
        for v in e.summary.value
    }
    assert {
        "train/loss",
        "train/reconstruction",
        "train/kl",
        "samples",
        "reconstructions",
        "test/negative_elbo",
        "latent_manifold",
        "latent_scatter",
    } <= tags


def test_saved_decoder_is_a_generator_giving_the_same_images(vae_2d_run):
    model, workdir = vae_2d_run
    decoder = model_io.load_generator(os.path.join(workdir, "decoder.keras"))  # Checks the generator contract.
    assert contract.z_dim(decoder) == 2
    z = np.random.default_rng(0).standard_normal((5, 2)).astype(np.float32)
    np.testing.assert_allclose(decoder(z), model.generate(z), atol=1e-6)
    encoder = keras.saving.load_model(os.path.join(workdir, "encoder.keras"), safe_mode=True)
    x = images(3)
    np.testing.assert_allclose(encoder(x)[0], model.encoder(x)[0], atol=1e-6)


@pytest.mark.slow
def test_binary_trains_and_resumes_a_vae(tiny_data_dir, tmp_path):
    workdir = tmp_path / "run"
    args = [*TINY_VAE, "--log_every=5", "--sample_every=10", "--checkpoint_every=5"]
    first = gkd_train(workdir, tiny_data_dir, *args, "--train_steps=10")
    assert first.returncode == 0, first.stderr
    assert latest_step(str(workdir)) == 10
    assert {"decoder.keras", "encoder.keras", "vae_eval.json"} <= set(os.listdir(workdir))
    assert "latent_manifold.png" not in os.listdir(workdir / "samples")  # z_dim=100.

    again = gkd_train(workdir, tiny_data_dir, *args, "--train_steps=20")
    assert again.returncode == 0, again.stderr
    assert "Resumed from" in again.stderr and "(step 10)" in again.stderr
    assert latest_step(str(workdir)) == 20
    assert json.loads((workdir / "vae_eval.json").read_text())["step"] == 20
