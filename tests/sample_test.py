"""gkd-sample: a PNG grid from a .tflite file with LiteRT alone, never importing TensorFlow."""

import subprocess
import sys

import keras
import matplotlib.image
import pytest

from tf_gkd.export import exporter, tflite
from tf_gkd.networks import factory

# Runs gkd-sample's entry point, then reports at exit whether TensorFlow was imported.
_RUN_AND_REPORT = (
    "import atexit, sys; "
    "atexit.register(lambda: print('tensorflow imported' if 'tensorflow' in sys.modules "
    "else 'tensorflow not imported')); "
    "from tf_gkd.bin import sample; sample.run()"
)


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    keras.utils.set_random_seed(0)
    directory = tmp_path_factory.mktemp("sample") / "export"
    generator = factory.make_generator("conv", z_dim=8, width=0.1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(exporter, "LATENCY_MIN_SECONDS", 0.0)  # Latency is not what these tests are about.
        exporter.export_generator(generator, str(directory), "tiny", variants=["fp32", "int8"], fixed_batch=2)
    return directory


def gkd_sample(*args):
    return subprocess.run([sys.executable, "-c", _RUN_AND_REPORT, *args], capture_output=True, text=True, timeout=120)


# A fixed-batch file too: 9 images from a file of batch 2, the last batch padded.
@pytest.mark.parametrize("file", ["model_fp32.tflite", "model_int8.tflite", "model_int8_b2.tflite"])
def test_writes_a_grid_without_tensorflow(export_dir, tmp_path, file):
    out = tmp_path / "grid.png"
    result = gkd_sample(f"--tflite={export_dir / file}", f"--out={out}", "--num=9")
    assert result.returncode == 0, result.stderr
    assert "tensorflow not imported" in result.stdout
    grid = matplotlib.image.imread(out)
    assert grid.ndim == 3 and grid.shape[0] > 3 * 28 and grid.shape[1] > 3 * 28


def test_a_truncated_file_is_named_and_exits_1(export_dir, tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes((export_dir / tflite.tflite_file("fp32")).read_bytes()[:1000])
    out = tmp_path / "grid.png"
    result = gkd_sample(f"--tflite={path}", f"--out={out}")
    assert result.returncode == 1
    assert f"{path} is not a valid TFLite model" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_a_tampered_exported_file_is_refused(export_dir, tmp_path):
    directory = tmp_path / "export"
    directory.mkdir()
    (directory / "export_report.json").write_bytes((export_dir / "export_report.json").read_bytes())
    data = bytearray((export_dir / tflite.tflite_file("int8")).read_bytes())
    data[len(data) // 2] ^= 0x01  # One bit: still a valid flatbuffer, no longer the exported file.
    path = directory / tflite.tflite_file("int8")
    path.write_bytes(bytes(data))
    result = gkd_sample(f"--tflite={path}", f"--out={tmp_path / 'grid.png'}")
    assert result.returncode == 1
    assert "does not match the SHA-256 recorded in" in result.stderr and "Traceback" not in result.stderr
