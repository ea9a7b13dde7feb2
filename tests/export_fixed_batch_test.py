"""Fixed-batch TFLite files (gkd-export --fixed_batch=N): static input shape, no batch computed at run time."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from tf_gkd import contract
from tf_gkd.export import exporter, opversions, runtime, tflite
from tf_gkd.networks import factory
from tf_gkd.networks import io as model_io

Z_DIM = 8
# Several latents, so that a batch mixed up with another dimension shows; it divides the int8 calibration set
# (same calibration latents as the dynamic-batch file), not the verification latents (the last batch is padded).
N = 5
# The operators that compute the batch dimension of a dynamic-batch file at run time.
BATCH_OPS = {"SHAPE", "STRIDED_SLICE", "PACK"}


def tiny_generator(kind="conv"):
    keras.utils.set_random_seed(0)
    return factory.make_generator(kind, z_dim=Z_DIM, width=0.1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(generator, export directory, report) of a tiny Dense + Reshape + Conv2DTranspose generator, every variant."""
    generator = tiny_generator()
    export_dir = tmp_path_factory.mktemp("fixed") / "export"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(exporter, "LATENCY_MIN_SECONDS", 0.0)
        report = exporter.export_generator(generator, str(export_dir), "tiny", fixed_batch=N)
    return generator, export_dir, report


def run(path, z, resolver=OpResolverType.AUTO):
    """The images of one invocation of the file on `z` with the plain LiteRT interpreter (a dynamic batch resized)."""
    interpreter = Interpreter(model_path=str(path), experimental_op_resolver_type=resolver)
    inp = interpreter.get_input_details()[0]
    if inp["shape_signature"][0] == -1:
        interpreter.resize_tensor_input(inp["index"], z.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], z)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def test_fixed_batch_files_are_written_and_reported_beside_the_dynamic_ones(exported):
    _, export_dir, report = exported
    files = [tflite.tflite_file(v, b) for v in tflite.VARIANTS for b in (None, N)]
    assert files[:2] == ["model_fp32.tflite", f"model_fp32_b{N}.tflite"]
    # Nothing else: the SavedModel the fixed files were converted from is gone.
    assert sorted(os.listdir(export_dir)) == sorted(["saved_model", runtime.REPORT_FILE, *files])
    assert report == json.loads((export_dir / runtime.REPORT_FILE).read_text())
    assert report["fixed_batch"] == N
    assert list(report["tflite"]) == [tflite.variant_name(v, b) for v in tflite.VARIANTS for b in (None, N)]
    for variant in tflite.VARIANTS:
        dynamic, fixed = report["tflite"][variant], report["tflite"][f"{variant}_b{N}"]
        assert dynamic["input_shape"] == [None, Z_DIM] and fixed["input_shape"] == [N, Z_DIM]
        assert fixed["variant"] == dynamic["variant"] == variant
        assert report["sha256"][fixed["file"]] == runtime.sha256(export_dir / fixed["file"])
        assert fixed["tolerance"] == tflite.TOLERANCES[variant]
        for key, tolerance in tflite.TOLERANCES[variant].items():
            assert fixed[key] <= tolerance, (variant, key)
        assert set(fixed["latency_ms_per_image"]) == {"batch_1", f"batch_{N}", "batch_64"}
        assert set(fixed["op_versions"]) == set(fixed["ops"])
        assert fixed["min_runtime"]["version"] not in (opversions.UNKNOWN, opversions.FLEX, opversions.CUSTOM)


def test_fixed_batch_files_have_a_static_input_and_match_keras(exported):
    generator, export_dir, _ = exported
    z = contract.latents(N, Z_DIM, 99)  # Fresh latents, not those it was verified on.
    expected = np.asarray(generator(z, training=False))
    for variant in tflite.VARIANTS:
        path = export_dir / tflite.tflite_file(variant, N)
        interpreter = Interpreter(model_path=str(path))
        (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
        assert list(inp["shape"]) == list(inp["shape_signature"]) == [N, Z_DIM], variant
        assert list(out["shape"]) == list(out["shape_signature"]) == [N, 28, 28, 1], variant
        assert interpreter.get_signature_list() == {"serving_default": {"inputs": ["z"], "outputs": ["images"]}}
        diffs = tflite.differences(run(path, z), expected)
        for key, tolerance in tflite.TOLERANCES[variant].items():
            assert diffs[key] <= tolerance, (variant, key)


def test_fixed_batch_files_compute_no_batch_size(exported):
    # The generator rewritten for mobile runtimes reshapes to a constant shape: its dynamic-batch files
    # compute no batch size either.
    _, export_dir, report = exported
    for variant in tflite.VARIANTS:
        dynamic = {name for name, _ in opversions.ops_of(export_dir / tflite.tflite_file(variant))}
        fixed = {name for name, _ in opversions.ops_of(export_dir / tflite.tflite_file(variant, N))}
        assert not BATCH_OPS & (dynamic | fixed), variant
        assert {"FULLY_CONNECTED", "RESHAPE", "CONV_2D", "DEPTH_TO_SPACE"} <= fixed, variant
        entry = report["tflite"][f"{variant}_b{N}"]
        assert entry["ops_only_in_dynamic_batch"] == entry["ops_only_in_fixed_batch"] == [], variant


def test_fixed_batch_files_of_the_generator_as_it_is_compute_no_batch_size(tmp_path):
    export_dir = tmp_path / "export"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(exporter, "LATENCY_MIN_SECONDS", 0.0)
        report = exporter.export_generator(
            tiny_generator(), str(export_dir), "tiny", variants=["fp32"], fixed_batch=N, mobile_rewrite=False
        )
    dynamic = {name for name, _ in opversions.ops_of(export_dir / tflite.tflite_file("fp32"))}
    fixed = {name for name, _ in opversions.ops_of(export_dir / tflite.tflite_file("fp32", N))}
    assert BATCH_OPS <= dynamic and not BATCH_OPS & fixed
    assert {"FULLY_CONNECTED", "RESHAPE", "TRANSPOSE_CONV"} <= fixed
    assert report["tflite"][f"fp32_b{N}"]["ops_only_in_dynamic_batch"] == sorted(BATCH_OPS)


def test_fixed_and_dynamic_files_compute_the_same_on_the_builtin_kernels(exported):
    # Only the shapes differ. (With the default XNNPACK delegate they may differ by rounding: it may take
    # operators of one file that it leaves to LiteRT in the other, where their shapes are computed at run time.)
    _, export_dir, _ = exported
    z = contract.latents(N, Z_DIM, 7)
    builtin = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    for variant in tflite.VARIANTS:
        fixed = run(export_dir / tflite.tflite_file(variant, N), z, builtin)
        np.testing.assert_array_equal(fixed, run(export_dir / tflite.tflite_file(variant), z, builtin), err_msg=variant)


def test_a_fixed_batch_file_generates_any_number_of_images(exported):
    generator, export_dir, _ = exported
    assert runtime.TFLiteGenerator(str(export_dir / tflite.tflite_file("fp32"))).batch_size is None
    model = runtime.TFLiteGenerator(str(export_dir / tflite.tflite_file("fp32", N)))
    assert model.batch_size == N and model.z_dim == Z_DIM
    z = contract.latents(2 * N + 2, Z_DIM, 3)
    expected = np.asarray(generator(z, training=False))
    for num in (1, N, 2 * N + 2):  # Fewer, as many, more than N (its last batch padded).
        images = model(z[:num])
        assert images.shape == (num, 28, 28, 1)
        np.testing.assert_allclose(images, expected[:num], atol=tflite.TOLERANCES["fp32"]["max_abs_diff"])
    np.testing.assert_allclose(model.generate(z, batch_size=3), expected, atol=1e-4)


@pytest.mark.parametrize("bad", [0, -1, 2.0, True, "1"])
def test_a_bad_fixed_batch_is_refused_before_anything_is_written(bad, tmp_path):
    with pytest.raises(ValueError, match=f"must be a positive integer. Received: {bad!r}"):
        exporter.export_generator(tiny_generator("dense"), str(tmp_path / "export"), "tiny", fixed_batch=bad)
    assert os.listdir(tmp_path) == []


def gkd_export(generator_path, export_dir, *args):
    cmd = [
        sys.executable,
        "-m",
        "tf_gkd.bin.export",
        f"--generator={generator_path}",
        "--name=tiny",
        f"--export_dir={export_dir}",
        "--skip_fid",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@pytest.fixture
def generator_path(tmp_path):
    path = tmp_path / "run" / "generator.keras"
    model_io.save_model_atomic(tiny_generator("dense"), str(path))
    return path


@pytest.mark.parametrize("bad", ["0", "-2"])
def test_gkd_export_refuses_a_bad_fixed_batch(bad, generator_path, tmp_path):
    result = gkd_export(generator_path, tmp_path / "export", f"--fixed_batch={bad}")
    assert result.returncode == 1
    assert f"--fixed_batch={bad}: {bad} is not a positive integer" in result.stderr
    assert "Traceback" not in result.stderr
    assert os.listdir(tmp_path) == ["run"]


@pytest.mark.slow
def test_gkd_export_writes_fixed_batch_files(generator_path, tmp_path):
    export_dir = tmp_path / "export"
    result = gkd_export(generator_path, export_dir, "--fixed_batch=2", "--variants=fp32,int8")
    assert result.returncode == 0, result.stderr
    report = json.loads((export_dir / runtime.REPORT_FILE).read_text())
    assert list(report["tflite"]) == ["fp32", "fp32_b2", "int8", "int8_b2"]
    for file in ("model_fp32_b2.tflite", "model_int8_b2.tflite"):
        assert file in result.stdout
    assert "model_int8_b2.tflite: input [2, 8]; operators only in model_int8.tflite: none." in result.stdout
