"""Exported files under tflite-runtime 2.14, the last standalone TFLite runtime, in its own virtual environment.

scripts/setup.sh makes `.venv-tflite-2.14` (tflite-runtime 2.14 needs numpy < 2 and Python <= 3.11); without it
these tests are skipped.
"""

import json
import os
import subprocess

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_gkd import contract
from tf_gkd.export import exporter, opversions, tflite
from tf_gkd.networks import factory

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OLD_PYTHON = os.path.join(REPO, ".venv-tflite-2.14", "bin", "python")
Z_DIM = 8

pytestmark = pytest.mark.skipif(
    not os.path.exists(OLD_PYTHON), reason="no .venv-tflite-2.14 (scripts/setup.sh makes it where Python <= 3.11 is)"
)

RUN_TFLITE = os.path.join(REPO, "scripts", "run_tflite.py")


def run_old(z, paths, tmp_path):
    np.save(tmp_path / "z.npy", z)
    result = subprocess.run(
        [OLD_PYTHON, RUN_TFLITE, str(tmp_path / "z.npy"), *map(str, paths)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(generator, export directory, report) of a tiny Dense + Conv2DTranspose generator, for runtime 2.14."""
    keras.utils.set_random_seed(0)
    generator = factory.make_generator("conv", z_dim=Z_DIM, width=0.1)
    export_dir = tmp_path_factory.mktemp("old_runtime") / "export"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(exporter, "LATENCY_MIN_SECONDS", 0.0)
        report = exporter.export_generator(generator, str(export_dir), "tiny", target_runtime="2.14")
    return generator, export_dir, report


def test_every_file_written_for_2_14_loads_and_matches_there(exported, tmp_path):
    generator, export_dir, report = exported
    # Every variant, the dynamic-range one too: rewritten for mobile, the generator has no TRANSPOSE_CONV,
    # whose hybrid kernel needs 2.17 (below).
    assert list(report["tflite"]) == list(tflite.VARIANTS)
    assert report["left_out"] == {}
    assert report["keras"]["mobile_rewrite"]["subpixel_convolutions"] == 2
    z = contract.latents(16, Z_DIM, 5)
    expected = np.asarray(generator(z, training=False))
    results = run_old(z, [export_dir / entry["file"] for entry in report["tflite"].values()], tmp_path)
    assert results.pop("runtime") == "tflite-runtime 2.14.0"
    for variant, entry in report["tflite"].items():
        result = results[str(export_dir / entry["file"])]
        assert "error" not in result, (variant, result)
        images = np.load(result["output"])
        assert images.shape == (16, 28, 28, 1)
        assert tflite.over_tolerance(tflite.differences(images, expected), variant) == {}, variant


def convert_dynamic(export_dir, path, per_channel_dense):
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(export_dir / tflite.SAVED_MODEL_DIR), signature_keys=[tflite.FLOAT_SIGNATURE]
    )
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter._experimental_disable_per_channel_quantization_for_dense_layers = not per_channel_dense
    path.write_bytes(converter.convert())
    return opversions.report(str(path))["min_runtime"]


def test_files_needing_a_newer_runtime_are_refused_there_as_their_reports_say(exported, tmp_path):
    generator, _, _ = exported
    # The generator not rewritten (gkd-export --nomobile_rewrite), in gkd-export's dynamic range: per-tensor
    # dense weights, then the hybrid TRANSPOSE_CONV.
    export_dir = tmp_path
    tflite.write_saved_model(tflite.float32_copy(generator), str(export_dir / tflite.SAVED_MODEL_DIR))
    hybrid = tmp_path / "dynamic.tflite"
    needs = convert_dynamic(export_dir, hybrid, per_channel_dense=False)
    assert (needs["version"], needs["op"], needs["hybrid_kernel"]) == ("2.17.0", "TRANSPOSE_CONV", True)
    # The converter's default: per-channel dense weights, a FULLY_CONNECTED version that 2.14 does not have.
    per_channel = tmp_path / "per_channel_dynamic.tflite"
    needs = convert_dynamic(export_dir, per_channel, per_channel_dense=True)
    assert needs["version"] == "2.17.0" and (needs["op"], needs["op_version"]) == ("FULLY_CONNECTED", 12)
    results = run_old(contract.latents(2, Z_DIM, 5), [hybrid, per_channel], tmp_path)
    assert "weights->type != input->type (INT8 != FLOAT32)" in results[str(hybrid)]["error"]
    assert "Didn't find op for builtin opcode 'FULLY_CONNECTED' version '12'" in results[str(per_channel)]["error"]
