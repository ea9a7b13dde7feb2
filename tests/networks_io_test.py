"""Atomic saves, and load_generator: round trips and every way a file can fail the contract."""

import os
import re
import shutil
import zipfile

import keras
import numpy as np
import pytest

from tf_gkd import contract
from tf_gkd.networks import factory
from tf_gkd.networks import io as model_io


def tiny_generator(z_dim=8):
    return factory.make_generator("dense", z_dim=z_dim, width=0.1)


@pytest.fixture(scope="module")
def saved_generator(tmp_path_factory):
    """(generator, path of its .keras file, in a run directory of its own)."""
    generator = tiny_generator()
    path = tmp_path_factory.mktemp("run") / "generator.keras"
    model_io.save_model_atomic(generator, str(path))
    return generator, path


def test_round_trip_from_a_file_and_from_a_run_directory(saved_generator):
    generator, path = saved_generator
    assert os.listdir(path.parent) == ["generator.keras"]  # No temporary file left behind.
    z = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    for where in (path, path.parent):
        loaded = model_io.load_generator(str(where))
        np.testing.assert_array_equal(loaded(z), generator(z))
        assert contract.z_dim(loaded) == 8


def test_count_params_counts_every_weight():
    generator = tiny_generator()
    # width 0.1 → 13 units: 8·13+13, 13·13+13, 13·784+784.
    assert model_io.count_params(generator) == (8 * 13 + 13) + (13 * 13 + 13) + (13 * 784 + 784)
    conv = factory.make_generator("conv", z_dim=4, width=0.1)
    assert model_io.count_params(conv) == conv.count_params()  # BatchNorm statistics included.


def test_failed_save_keeps_the_previous_file(saved_generator, tmp_path, monkeypatch):
    generator, good = saved_generator
    path = tmp_path / "generator.keras"
    path.write_bytes(good.read_bytes())

    def crash_midway(filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"half a model")
        raise OSError("disk full")

    monkeypatch.setattr(generator, "save", crash_midway)
    with pytest.raises(OSError, match="disk full"):
        model_io.save_model_atomic(generator, str(path))
    assert os.listdir(tmp_path) == ["generator.keras"]
    assert path.read_bytes() == good.read_bytes()


# Each writer makes a file at `path` that is not a generator; `good` is a valid generator file.
def _text(path, good):
    path.write_text("hello")


def _truncated(path, good):
    path.write_bytes(good.read_bytes()[:300])


def _foreign_zip(path, good):
    with zipfile.ZipFile(path, "w") as f:
        f.writestr("notes.txt", "not a model")


def _image_to_image(path, good):
    images = keras.Input((28, 28, 1))
    keras.Model(images, keras.layers.Activation("tanh")(images)).save(path)


def _three_inputs(path, good):
    # Two inputs are a class-conditional generator's (z, label); a third is not in the contract.
    z, labels, extra = keras.Input((8,)), keras.Input((10,)), keras.Input((3,))
    x = keras.layers.Dense(784)(keras.layers.Concatenate()([z, labels, extra]))
    keras.Model([z, labels, extra], keras.layers.Reshape((28, 28, 1))(x)).save(path)


def _wrong_output(path, good):
    z = keras.Input((8,))
    keras.Model(z, keras.layers.Dense(10)(z)).save(path)


def _two_channels(path, good):
    z = keras.Input((8,))
    keras.Model(z, keras.layers.Reshape((28, 28, 2))(keras.layers.Dense(28 * 28 * 2)(z))).save(path)


@pytest.mark.parametrize(
    "name, write, message",
    [
        ("text.keras", _text, "not a valid .keras archive"),
        ("truncated.keras", _truncated, "not a valid .keras archive"),
        ("foreign.keras", _foreign_zip, "cannot be loaded as a Keras model"),
        ("generator.h5", _text, "not a .keras file"),
        ("images.keras", _image_to_image, r"takes z \[N, z_dim\] \(and, class-conditional, a one-hot label"),
        ("three_inputs.keras", _three_inputs, r"takes z \[N, z_dim\].*this model takes \[\(None, 8\), \(None, 10"),
        ("wrong_output.keras", _wrong_output, r"returns images \[N, S, S, 1 or 3\]; this model returns \[\(None, 10"),
        ("two_channels.keras", _two_channels, r"returns \[\(None, 28, 28, 2\)\] \(Images must be square, with 1"),
    ],
)
def test_files_that_are_not_generators_are_named(tmp_path, saved_generator, name, write, message):
    path = tmp_path / name
    write(path, saved_generator[1])
    with pytest.raises(model_io.GeneratorLoadError, match=message) as error:
        model_io.load_generator(str(path))
    assert str(path) in str(error.value)


def test_missing_paths_are_named(tmp_path):
    missing = tmp_path / "missing.keras"
    with pytest.raises(model_io.GeneratorLoadError, match=re.escape(f"No generator at {missing}: the file does not")):
        model_io.load_generator(str(missing))
    with pytest.raises(model_io.GeneratorLoadError, match=re.escape(f"{tmp_path} is a directory without any of")):
        model_io.load_generator(str(tmp_path))


def test_a_vae_run_directory_yields_its_decoder(tmp_path, saved_generator):
    shutil.copy(saved_generator[1], tmp_path / "decoder.keras")
    decoder = model_io.load_generator(str(tmp_path))
    assert contract.z_dim(decoder) == contract.z_dim(saved_generator[0])


def test_image_shape_is_read_off_the_generator():
    rgb = factory.make_generator("dense", z_dim=4, width=0.1, image_shape=(16, 16, 3))
    assert model_io.image_shape(rgb) == (16, 16, 3)
