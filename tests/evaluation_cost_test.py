"""Cost of a generator: MACs against hand counts, latency, and an export's figures read back."""

import json

import keras
import pytest

from tf_gkd import contract
from tf_gkd.evaluation import cost
from tf_gkd.networks import factory
from tf_gkd.networks import io as model_io


def test_macs_of_a_dense_layer_are_inputs_times_outputs():
    z = keras.Input((3,))
    model = keras.Model(z, keras.layers.Dense(5)(z))
    assert cost.count_macs(model) == 3 * 5  # The bias adds are element-wise: not multiply-accumulates.


def test_macs_of_the_dense_generator():
    generator = factory.make_generator("dense", z_dim=8, width=0.1)  # 8 → 13 → 13 → 784.
    assert cost.count_macs(generator) == 8 * 13 + 13 * 13 + 13 * 784


def test_macs_of_a_transposed_convolution():
    # 7×7×4 → 14×14×2, 3×3 kernel, stride 2: every input pixel scatters 3·3·2 products per input channel.
    z = keras.Input((196,))
    x = keras.layers.Reshape((7, 7, 4))(z)
    x = keras.layers.Conv2DTranspose(2, 3, strides=2, padding="same")(x)
    model = keras.Model(z, x)
    assert cost.count_macs(model) == 7 * 7 * 4 * 3 * 3 * 2


def test_macs_of_the_conv_teacher():
    # project: 100 → 7·7·128; up_14: 7×7×128 → 14×14×64 and up_28: 14×14×64 → 28×28×1, 4×4 kernels.
    generator = factory.make_generator("conv")
    assert cost.count_macs(generator) == 100 * 6272 + 7 * 7 * 128 * 16 * 64 + 14 * 14 * 64 * 16 * 1


def test_keras_latency_is_measured_per_image_at_each_batch_size():
    generator = factory.make_generator("dense", z_dim=8, width=0.1)
    latency = cost.keras_latency_ms_per_image(generator, (1, 16), min_seconds=0.01)
    assert set(latency) == {"batch_1", "batch_16"}
    assert all(0 < ms < 1000 for ms in latency.values())


def _write_export(directory, generator, params=None):
    directory.mkdir()
    report = {
        "params": model_io.count_params(generator) if params is None else params,
        "z_dim": contract.z_dim(generator),
        "tflite": {
            "int8": {
                "size_bytes": 1234,
                "latency_ms_per_image": {"batch_1": 0.05, "batch_64": 0.01},
                "latency_threads": 1,
                "fid": 20.5,
                "ops": ["TANH"],
            },
            "fp32": {
                "size_bytes": 4321,
                "latency_ms_per_image": {"batch_1": 0.08, "batch_64": 0.02},
                "latency_threads": 1,
            },
        },
    }
    (directory / "export_report.json").write_text(json.dumps(report))


def test_an_export_of_the_generator_is_read(tmp_path):
    generator = factory.make_generator("dense", z_dim=8, width=0.1)
    _write_export(tmp_path / "mine", generator)
    variants, note = cost.read_export(str(tmp_path / "mine"), generator)
    assert variants == {
        "int8": {
            "size_bytes": 1234,
            "latency_ms_per_image": {"batch_1": 0.05, "batch_64": 0.01},
            "latency_threads": 1,
            "fid": 20.5,
        },
        "fp32": {"size_bytes": 4321, "latency_ms_per_image": {"batch_1": 0.08, "batch_64": 0.02}, "latency_threads": 1},
    }
    assert str(tmp_path / "mine" / "export_report.json") in note


@pytest.mark.parametrize("params, expected", [(None, None), (7, "export of another generator")])
def test_a_missing_or_foreign_export_gives_no_figures(tmp_path, params, expected):
    generator = factory.make_generator("dense", z_dim=8, width=0.1)
    if params is not None:
        _write_export(tmp_path / "other", generator, params=params)
    variants, note = cost.read_export(str(tmp_path / "other"), generator)
    assert variants is None
    assert note is None if expected is None else expected in note
