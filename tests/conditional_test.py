"""Class-conditional networks, teachers and students: (z, label) → images, and mixing them refused."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

from tf_gkd import contract
from tf_gkd.data import datasets
from tf_gkd.data import pairs as pairs_lib
from tf_gkd.evaluation import classifier as classifier_lib
from tf_gkd.evaluation import evaluate
from tf_gkd.export import exporter, runtime, tflite
from tf_gkd.models import distiller as distill_lib
from tf_gkd.models import gan as gan_lib
from tf_gkd.models import vae as vae_lib
from tf_gkd.networks import factory, narrow
from tf_gkd.networks import io as model_io
from tf_gkd.runs import config as config_lib
from tf_gkd.runs import teacher as teacher_lib
from tf_gkd.runs import train as runs

TINY = dict(
    generator_kind="dense",
    discriminator_kind="dense",
    encoder_kind="dense",
    generator_width=0.25,
    discriminator_width=0.25,
    encoder_width=0.25,
    z_dim=8,
    batch_size=16,
    train_steps=10,
    steps_per_execution=5,
    log_every=5,
    sample_every=10,
    checkpoint_every=10,
    num_samples=20,
)


def tiny_config(data_dir, **overrides):
    return config_lib.TrainConfig(**(TINY | dict(data_dir=data_dir) | overrides))


@pytest.mark.parametrize("kind", factory.KINDS)
def test_a_conditional_generator_takes_z_and_a_one_hot_label(kind):
    generator = factory.make_generator(kind, z_dim=8, width=0.25, num_classes=10)
    assert [tuple(x.shape) for x in generator.inputs] == [(None, 8), (None, 10)]
    assert contract.z_dim(generator) == 8 and contract.num_classes(generator) == 10
    z = np.repeat(contract.latents(1, 8, seed=0), 2, axis=0)
    images = np.asarray(generator(contract.generator_inputs(generator, z, [3, 7])))
    assert images.shape == (2, 28, 28, 1)
    assert np.abs(images[0] - images[1]).max() > 1e-4  # The label reaches the images.


def test_conditional_discriminator_and_encoder_read_the_label():
    images = np.repeat(np.random.default_rng(0).uniform(-1, 1, (1, 28, 28, 1)).astype(np.float32), 2, axis=0)
    labels = contract.one_hot([0, 9], 10)
    for kind in factory.TRUNK_KINDS:
        discriminator = factory.make_discriminator(kind, width=0.25, num_classes=10)
        logits = np.asarray(discriminator([images, labels]))
        assert logits.shape == (2, 1)
        # A projection discriminator: the same image scores differently as another class (its
        # embedding starts random), and its `features` layer is still there for feature losses.
        assert abs(logits[0, 0] - logits[1, 0]) > 1e-6
        assert discriminator.get_layer(factory.FEATURES_LAYER) is not None
        encoder = factory.make_encoder(kind, z_dim=4, width=0.25, num_classes=10)
        mean, log_var = encoder([images, labels])
        assert mean.shape == log_var.shape == (2, 4)
        assert np.abs(np.asarray(mean[0] - mean[1])).max() > 1e-6


def test_unconditional_networks_are_unchanged():
    for network in (
        factory.make_generator("conv", z_dim=8, width=0.25),
        factory.make_discriminator("conv", width=0.25),
        factory.make_encoder("conv", z_dim=8, width=0.25),
    ):
        assert len(network.inputs) == 1
        assert "label" not in [x.name for x in network.inputs]
    with pytest.raises(ValueError, match="num_classes must be >= 0"):
        factory.make_generator("dense", num_classes=-1)


def test_labels_are_checked_against_the_generator():
    conditional = factory.make_generator("dense", z_dim=4, width=0.25, num_classes=3)
    unconditional = factory.make_generator("dense", z_dim=4, width=0.25)
    z = contract.latents(2, 4, seed=0)
    with pytest.raises(ValueError, match=r"Labels must be in \[0, 3\).*Received: 3"):
        contract.generator_inputs(conditional, z, [0, 3])
    with pytest.raises(ValueError, match="class-conditional \\(3 classes\\): give it labels"):
        contract.generator_inputs(conditional, z)
    with pytest.raises(ValueError, match="is unconditional: it takes no labels"):
        contract.generator_inputs(unconditional, z, [0, 1])
    assert contract.generator_inputs(unconditional, z) is z
    assert contract.class_labels(7, 3).tolist() == [0, 1, 2, 0, 1, 2, 0]


def test_a_saved_conditional_generator_meets_the_contract(tmp_path):
    generator = factory.make_generator("conv4", z_dim=8, width=0.25, num_classes=10)
    path = str(tmp_path / "generator.keras")
    model_io.save_model_atomic(generator, path)
    loaded = model_io.load_generator(path)
    assert contract.num_classes(loaded) == 10
    inputs = contract.generator_inputs(loaded, contract.latents(3, 8, seed=1), [0, 4, 9])
    np.testing.assert_allclose(loaded(inputs), generator(inputs), atol=1e-6)


@pytest.fixture(scope="module")
def conditional_teacher(tiny_data_dir, tmp_path_factory):
    """A finished tiny class-conditional GAN teacher run on the tiny 10-class data."""
    workdir = str(tmp_path_factory.mktemp("conditional_teacher"))
    runs.train(tiny_config(tiny_data_dir, conditional=True), workdir)
    return workdir


def test_a_conditional_gan_run(conditional_teacher):
    generator = model_io.load_generator(conditional_teacher)
    discriminator = model_io.load_model_file(os.path.join(conditional_teacher, "discriminator.keras"))
    assert contract.num_classes(generator) == contract.num_classes(discriminator) == 10
    with open(os.path.join(conditional_teacher, "config.json")) as f:
        assert json.load(f)["conditional"] is True
    # The sample grid has one column per class: 20 samples → 10 columns, 2 rows of 28 px (and padding).
    grid = np.asarray(Image.open(os.path.join(conditional_teacher, "samples", "step_0000010.png")))
    assert grid.shape[1] > grid.shape[0] * 2


def test_a_conditional_vae_run(tiny_data_dir, tmp_path):
    workdir = tmp_path / "cvae"
    model = runs.train(tiny_config(tiny_data_dir, model="vae", conditional=True), str(workdir))
    assert contract.num_classes(model.encoder) == contract.num_classes(model.decoder) == 10
    decoder = model_io.load_generator(str(workdir))
    assert contract.num_classes(decoder) == 10
    with open(workdir / "vae_eval.json") as f:
        assert np.isfinite(json.load(f)["negative_elbo"])


@pytest.mark.parametrize(
    "recipe",
    [
        {},  # Pure online mimicry: labels drawn uniformly in the step.
        dict(offline_pairs=32),  # Labels stored with the pairs.
        dict(
            adversarial_weight=1.0,
            feature_weight=1.0,
            distribution_weight=1.0,
            distribution_target="real",
            r1_weight=1.0,
            init_discriminator=True,
        ),  # The teacher's conditional discriminator, the real images' labels.
    ],
    ids=["online", "offline", "adversarial"],
)
def test_a_conditional_student(tiny_data_dir, conditional_teacher, tmp_path, recipe):
    config = tiny_config(tiny_data_dir, model="distill", teacher=conditional_teacher, conditional=True, **recipe)
    model = runs.train(config, str(tmp_path / "student"))
    student = model_io.load_generator(str(tmp_path / "student"))
    assert contract.num_classes(student) == 10
    logs = {m.name: float(m.result()) for m in model.metrics}
    assert np.isfinite(logs["loss"])


def test_offline_pairs_store_the_labels(conditional_teacher, tmp_path):
    teacher = model_io.load_generator(conditional_teacher)
    path = str(tmp_path / "pairs.tfrecord")
    pairs_lib.write_pairs(teacher, path, num_pairs=12, seed=3, batch_size=5, progress=False)
    pairs = list(pairs_lib.pairs_dataset(path, 8, (28, 28, 1), num_classes=10).as_numpy_iterator())
    labels = np.array([p["label"] for p in pairs])
    np.testing.assert_array_equal(labels, contract.class_labels(12, 10))
    z = np.stack([p["z"] for p in pairs])
    expected = teacher(contract.generator_inputs(teacher, z, labels))
    np.testing.assert_allclose(np.stack([p["teacher"] for p in pairs]), expected, atol=2e-3)  # Stored as float16.


def test_conditioning_mixed_between_teacher_and_student_is_refused(
    tiny_data_dir, tiny_gan_config, conditional_teacher, tmp_path
):
    unconditional_teacher = str(tmp_path / "teacher")
    runs.train(tiny_gan_config(z_dim=8), unconditional_teacher)
    cases = [
        (conditional_teacher, False, "is class-conditional \\(10 classes\\): pass --conditional"),
        (unconditional_teacher, True, "is unconditional: drop --conditional"),
    ]
    for teacher, conditional, message in cases:
        config = tiny_config(tiny_data_dir, model="distill", teacher=teacher, conditional=conditional)
        workdir = tmp_path / f"student_{conditional}"
        with pytest.raises(teacher_lib.TeacherError, match=message):
            runs.train(config, str(workdir))
        assert not workdir.exists()  # Nothing written.


def test_conditional_training_needs_labelled_data(tmp_path):
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    for i in range(20):
        Image.fromarray(np.full((28, 28), i * 10, np.uint8)).save(folder / f"{i}.png")
    config = tiny_config(str(tmp_path / "tfds"), dataset=f"folder:{folder}", conditional=True)
    workdir = tmp_path / "run"
    with pytest.raises(config_lib.ConfigError, match="--conditional needs labelled data") as error:
        runs.train(config, str(workdir))
    assert error.value.field == "conditional"
    assert not workdir.exists()


@pytest.fixture(scope="module")
def tiny_classifier(tiny_data_dir):
    """A domain classifier trained on the tiny data's labels (a bar whose row is the class)."""
    spec = datasets.DataSpec("fashion_mnist", data_dir=tiny_data_dir)
    (train_images, train_labels), (test_images, test_labels) = spec.load("train"), spec.load("test")
    train_images, test_images = datasets.to_float(train_images).numpy(), datasets.to_float(test_images).numpy()
    model, _ = classifier_lib.train_classifier(
        train_images, train_labels, test_images, test_labels, epochs=8, batch_size=32, width=0.25
    )
    classifier = classifier_lib.DomainClassifier(model, {"dataset": "fashion_mnist", "task": "labels"})
    return classifier, test_images, test_labels


def class_mean_generator(images, labels, shift=0):
    """A conditional 'generator' returning the mean real image of class (label + shift) mod 10, whatever z."""
    means = np.stack([images[labels == (c + shift) % 10].mean(0) for c in range(10)])
    z, label = keras.Input((4,), name="z"), keras.Input((10,), name="label")
    pixels = keras.layers.Dense(28 * 28, use_bias=False, name="means")(label)
    images_out = keras.layers.Reshape((28, 28, 1))(pixels)
    generator = keras.Model([z, label], images_out)
    generator.get_layer("means").set_weights([means.reshape(10, -1)])
    return generator


def test_conditional_generators_are_scored_class_by_class(tiny_classifier):
    classifier, test_images, test_labels = tiny_classifier
    evaluator = evaluate.Evaluator(classifier, test_images, batch_size=50, real_labels=test_labels)
    right = evaluator.evaluate(class_mean_generator(test_images, test_labels), num_samples=100)
    wrong = evaluator.evaluate(class_mean_generator(test_images, test_labels, shift=1), num_samples=100)
    assert right["label_accuracy"] > 0.9 and wrong["label_accuracy"] < 0.1
    assert len(right["fid_per_class"]) == 10
    assert right["fid_class_mean"] == pytest.approx(np.mean(right["fid_per_class"]))
    assert right["fid_class_worst"] == max(right["fid_per_class"])
    # Each class against its own real images: the right classes are much closer than the shifted ones,
    # while over all classes at once the two sample the same images.
    assert right["fid_class_mean"] < 0.5 * wrong["fid_class_mean"]
    assert right["fid"] == pytest.approx(wrong["fid"], rel=1e-6)


def test_a_conditional_generator_needs_labelled_real_images(tiny_classifier):
    classifier, test_images, test_labels = tiny_classifier
    generator = class_mean_generator(test_images, test_labels)
    unlabelled = evaluate.Evaluator(classifier, test_images, batch_size=50)
    with pytest.raises(evaluate.ClassLabelError, match="the real images have no labels"):
        unlabelled.evaluate(generator, num_samples=100)
    evaluator = evaluate.Evaluator(classifier, test_images, batch_size=50, real_labels=test_labels)
    with pytest.raises(evaluate.ClassLabelError, match="its FID needs at least 2 of each"):
        evaluator.evaluate(generator, num_samples=15)


@pytest.fixture(scope="module")
def conditional_export(tmp_path_factory):
    """A tiny class-conditional conv4 generator exported as fp32, int8 and int8 at a fixed batch of 2."""
    keras.utils.set_random_seed(0)
    generator = factory.make_generator("conv4", z_dim=8, width=0.1, num_classes=10)
    directory = tmp_path_factory.mktemp("conditional_export") / "export"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(exporter, "LATENCY_MIN_SECONDS", 0.0)  # Latency is not what these tests are about.
        report = exporter.export_generator(generator, str(directory), "cond", variants=["fp32", "int8"], fixed_batch=2)
    return generator, directory, report


def test_a_conditional_export_takes_z_and_a_label(conditional_export):
    generator, directory, report = conditional_export
    assert report["num_classes"] == 10
    assert "label float32 [N, 10] (one-hot)" in report["saved_model"]["signatures"]["serving_default"]
    z, labels = contract.latents(5, 8, seed=4), np.array([0, 3, 9, 3, 1])
    expected = np.asarray(generator(contract.generator_inputs(generator, z, labels)))
    for variant, tolerance in (("fp32", 1e-4), ("int8_b2", 0.5)):
        assert report["tflite"][variant]["label_shape"][1] == 10
        model = runtime.TFLiteGenerator(str(directory / tflite.tflite_file(*variant.split("_b"))))
        assert model.num_classes == 10 and model.z_dim == 8
        images = model.generate(z, labels)
        assert np.abs(images - expected).mean() < tolerance / 10 and np.abs(images - expected).max() < tolerance
        with pytest.raises(ValueError, match=r"Labels must be in \[0, 10\)"):
            model(z, [0, 1, 2, 3, 10])
        with pytest.raises(ValueError, match="class-conditional \\(10 classes\\): give one label per z"):
            model(z)


def test_gkd_sample_draws_a_class_or_one_row_per_class(conditional_export, tmp_path):
    _, directory, _ = conditional_export
    path = directory / tflite.tflite_file("int8")
    # The PNG is the grid scaled by 2.5: 2 x 2 tiles for one class, 10 rows (classes) x 4 for all.
    for label, rows, cols in (("3", 2, 2), ("all", 10, 4)):
        out = tmp_path / f"{label}.png"
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "tf_gkd.bin.sample",
                f"--tflite={path}",
                f"--out={out}",
                "--num=4",
                f"--label={label}",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        grid = np.asarray(Image.open(out))
        assert grid.shape[:2] == pytest.approx((2.5 * (rows * 29 + 1), 2.5 * (cols * 29 + 1)), abs=3)
    result = subprocess.run(
        [sys.executable, "-m", "tf_gkd.bin.sample", f"--tflite={path}", f"--out={tmp_path / 'x.png'}", "--label=10"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "--label must be all or a class in [0, 10)" in result.stderr
    assert not (tmp_path / "x.png").exists()


def test_networks_of_one_model_must_be_conditioned_alike():
    conditional = factory.make_generator("dense", z_dim=4, width=0.25, num_classes=10)
    unconditional_d = factory.make_discriminator("dense", width=0.25)
    with pytest.raises(ValueError, match="the generator is class-conditional \\(10 classes\\), the discriminator is "
                                         "unconditional"):  # fmt: skip
        gan_lib.GAN(conditional, unconditional_d)
    with pytest.raises(ValueError, match="the decoder is class-conditional \\(10 classes\\), the encoder is uncond"):
        vae_lib.VAE(factory.make_encoder("dense", z_dim=4, width=0.25), conditional)
    teacher = factory.make_generator("dense", z_dim=4, width=0.5)
    with pytest.raises(ValueError, match="the student is class-conditional \\(10 classes\\), the teacher is uncond"):
        distill_lib.GeneratorDistiller(teacher, conditional)


@pytest.mark.parametrize("kind", ["dense", "conv", "conv4"])
def test_a_conditional_student_started_from_its_teacher(kind):
    def make(width, seed):
        keras.utils.set_random_seed(seed)
        return factory.make_generator(kind, z_dim=8, width=width, num_classes=10, name=f"g_{width}_{seed}")

    teacher = make(0.25, seed=0)
    copy = narrow.narrow_from(teacher, make(0.25, seed=1))
    for a, b in zip(teacher.get_weights(), copy.get_weights()):
        np.testing.assert_array_equal(a, b)  # At the same width: the teacher itself.
    student = narrow.narrow_from(teacher, make(0.125, seed=1))
    # The label projection keeps the columns its first layer keeps: silence every other column of the
    # teacher's first layer and label projection, and the narrower student gives the same first activations.
    first = "dense_0" if kind == "dense" else "project"
    kept = student.get_layer(first + factory.LABEL_SUFFIX).get_weights()[0]
    full = teacher.get_layer(first + factory.LABEL_SUFFIX).get_weights()[0]
    columns = [int(np.flatnonzero((full == kept[:, [j]]).all(0))[0]) for j in range(kept.shape[1])]
    np.testing.assert_array_equal(full[:, columns], kept)
    base_kernel = teacher.get_layer(first).get_weights()[0][:, columns]
    np.testing.assert_array_equal(base_kernel, student.get_layer(first).get_weights()[0])
