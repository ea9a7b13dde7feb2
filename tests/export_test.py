"""Export: variant round trips, stripped files, the uint8 signature, bad files, the atomic destination, gkd-export."""

import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from tensorflow.lite.tools import flatbuffer_utils

from tf_gkd import contract, errors, files
from tf_gkd.data import datasets
from tf_gkd.evaluation import classifier as classifier_lib
from tf_gkd.evaluation import evaluate
from tf_gkd.export import exporter, opversions, runtime, tflite
from tf_gkd.networks import factory
from tf_gkd.networks import io as model_io

Z_DIM = 8


@pytest.fixture(scope="module", autouse=True)
def quick_latency():
    """Latency is only checked for shape here: time the minimum number of calls."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(exporter, "LATENCY_MIN_SECONDS", 0.0)
        yield


def tiny_generator(kind, width=0.1):
    keras.utils.set_random_seed(0)
    return factory.make_generator(kind, z_dim=Z_DIM, width=width)


@pytest.fixture(scope="module")
def evaluator():
    """The real Evaluator with an untrained tiny classifier (FID needs features, not good ones) and random reals."""
    keras.utils.set_random_seed(0)
    classifier = classifier_lib.DomainClassifier(factory.make_classifier(width=0.25), {"test_accuracy": 0.1})
    real = np.random.default_rng(0).uniform(-1, 1, (40, 28, 28, 1)).astype(np.float32)
    return evaluate.Evaluator(classifier, real, batch_size=32)


@pytest.fixture(scope="module", params=["dense", "conv", "separable"])
def exported(request, evaluator, tmp_path_factory):
    """(generator, export directory, report) of a tiny generator exported with every variant and FID."""
    # A separable one at its 100x student's width: narrower, its int8 file's quantisation parameters
    # would outweigh its weights.
    generator = tiny_generator(request.param, 0.375 if request.param == "separable" else 0.1)
    export_dir = tmp_path_factory.mktemp(request.param) / "export"
    report = exporter.export_generator(generator, str(export_dir), "tiny", evaluator=evaluator, num_samples=64, seed=5)
    return generator, export_dir, report


def latents(num=16, seed=99):
    return contract.latents(num, Z_DIM, seed)


def test_every_variant_round_trips_within_its_tolerance(exported):
    generator, export_dir, report = exported
    assert sorted(os.listdir(export_dir)) == sorted(
        ["saved_model", runtime.REPORT_FILE] + [tflite.tflite_file(v) for v in tflite.VARIANTS]
    )
    assert os.listdir(export_dir.parent) == ["export"]  # No temporary directory left beside it.
    assert report == json.loads((export_dir / runtime.REPORT_FILE).read_text())
    z = latents()
    expected = np.asarray(generator(z, training=False))
    for variant in tflite.VARIANTS:
        entry = report["tflite"][variant]
        path = export_dir / entry["file"]
        assert entry["size_bytes"] == path.stat().st_size
        assert report["sha256"][entry["file"]] == runtime.sha256(path)
        for key, tolerance in tflite.TOLERANCES[variant].items():
            assert entry[key] <= tolerance, (variant, key)
        # Fresh latents, not those it was verified on.
        images = runtime.TFLiteGenerator(str(path))(z)
        assert images.shape == (16, 28, 28, 1) and images.dtype == np.float32
        assert np.abs(images - expected).max() <= tflite.TOLERANCES[variant]["max_abs_diff"]
        # Builtin operators only: no Flex or custom ones, listed before any delegate takes them.
        assert entry["ops"] and "FULLY_CONNECTED" in entry["ops"]
        assert not [op for op in entry["ops"] if op.startswith("Flex") or op in ("CUSTOM", "DELEGATE")]
        # Each operator's versions, and the oldest runtime that loads the file, one of those of its operators.
        assert set(entry["op_versions"]) == set(entry["ops"])
        needs = entry["min_runtime"]
        assert needs["version"] == entry["op_versions"][needs["op"]][str(needs["op_version"])]
        assert needs["version"] not in (opversions.UNKNOWN, opversions.FLEX, opversions.CUSTOM)
        assert set(entry["latency_ms_per_image"]) == {"batch_1", "batch_64"}
        assert all(ms > 0 for ms in entry["latency_ms_per_image"].values())
    sizes = {v: report["tflite"][v]["size_bytes"] for v in tflite.VARIANTS}
    assert sizes["int8"] < sizes["fp16"] < sizes["fp32"]
    assert report["min_runtime_table"] == opversions.table_source()


def test_a_prepared_call_runs_the_interpreter_on_the_inputs_it_was_prepared_with(exported):
    _, export_dir, _ = exported
    model = runtime.TFLiteGenerator(str(export_dir / tflite.tflite_file("fp32")))
    z, other = latents(4), latents(4, seed=1)
    expected = model(z)
    model.prepared(other)()
    assert not np.array_equal(model._interpreter.get_tensor(model._output), expected)
    model.prepared(z)()
    np.testing.assert_array_equal(model._interpreter.get_tensor(model._output), expected)


def test_the_tuned_int8_file_is_the_int8_file_of_a_network_prepared_for_it(exported):
    generator, export_dir, report = exported
    int8, tuned = report["tflite"]["int8"], report["tflite"]["int8_qat"]
    # The same operators (a transposed convolution may gain the bias of a folded batch norm), still
    # loaded by the old runtimes.
    assert tuned["ops"] == int8["ops"]
    assert opversions.loads_on(tuned["min_runtime"]["version"], "2.14.0")
    assert report["qat"]["steps"] == exporter.qat.STEPS
    assert set(report["qat"]) == {"steps", "l1_calibrated", "l1_narrowed", "l1_after", "tuning_kept"}


def test_files_keep_only_what_the_runtime_reads(exported):
    # No tensor names, description or conversion metadata; the signature and its names stay usable.
    _, export_dir, _ = exported
    z = latents(5)
    for variant in tflite.VARIANTS:
        path = str(export_dir / tflite.tflite_file(variant))
        model = flatbuffer_utils.read_model(path)
        assert model.description is None and model.subgraphs[0].name is None, variant
        assert not [t.name for t in model.subgraphs[0].tensors if t.name], variant
        assert b"CONVERSION_METADATA" not in [m.name for m in model.metadata], variant
        interpreter = Interpreter(model_path=path)
        assert interpreter.get_signature_list() == {"serving_default": {"inputs": ["z"], "outputs": ["images"]}}
        images = interpreter.get_signature_runner("serving_default")(z=z)["images"]
        np.testing.assert_array_equal(images, runtime.TFLiteGenerator(path)(z))


def test_stripping_changes_no_output(exported, tmp_path, monkeypatch):
    _, export_dir, _ = exported
    strip_unused = tflite.strip_unused
    monkeypatch.setattr(tflite, "strip_unused", lambda model: model)  # convert() then returns the converter's bytes.
    for variant in ("fp32", "int8"):
        converted = tflite.convert(str(export_dir / tflite.SAVED_MODEL_DIR), variant, Z_DIM)
        stripped = strip_unused(converted)
        assert len(stripped) < len(converted) - 500, variant  # At least the tensor names.
        outputs = []
        for name, data in (("converted", converted), ("stripped", stripped)):
            (tmp_path / name).write_bytes(data)
            generator = runtime.TFLiteGenerator(str(tmp_path / name))
            outputs.append([generator(latents(batch)) for batch in (1, 7)])
        for converted_images, stripped_images in zip(*outputs):
            np.testing.assert_array_equal(stripped_images, converted_images)


def test_fid_of_every_variant_is_on_the_keras_latents(exported, evaluator):
    generator, _, report = exported
    keras_scores = evaluator.evaluate(generator, 64, seed=5, progress=False)
    assert report["keras"]["fid"] == pytest.approx(keras_scores["fid"])
    assert report["fid_setup"]["num_samples"] == 64 and report["fid_setup"]["seed"] == 5
    # fp32 reproduces the Keras images to 1e-6, hence the Keras FID: the latents are the same.
    assert report["tflite"]["fp32"]["fid"] == pytest.approx(keras_scores["fid"], rel=1e-3)
    assert all(np.isfinite(report["tflite"][v]["fid"]) for v in tflite.VARIANTS)


def test_saved_model_signatures(exported):
    generator, export_dir, _ = exported
    signatures = tf.saved_model.load(str(export_dir / tflite.SAVED_MODEL_DIR)).signatures
    assert set(signatures) == {tflite.FLOAT_SIGNATURE, tflite.UINT8_SIGNATURE}
    z = latents()
    expected = np.asarray(generator(z, training=False))
    floats = signatures["serving_default"](z=tf.constant(z))["images"]
    np.testing.assert_allclose(floats, expected, atol=1e-5)

    uint8 = signatures["serving_uint8"](z=tf.constant(z))["images"]
    assert uint8.dtype == tf.uint8 and uint8.shape == (16, 28, 28, 1)
    diff = np.abs(uint8.numpy().astype(int) - datasets.to_uint8(expected).astype(int))
    assert diff.max() <= 1 and diff.mean() < 0.01  # Only rounding ties may differ.


def test_a_mixed_precision_generator_is_exported_in_float32(tmp_path):
    # Its bfloat16 graph would need Flex operators; the export must compute in float32 instead.
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        generator = tiny_generator("conv")
    finally:
        keras.config.set_dtype_policy("float32")
    report = exporter.export_generator(generator, str(tmp_path / "export"), "bf16", variants=["fp32"])
    assert "mixed_bfloat16" in report["keras"]["dtype_policies"]
    assert report["keras"]["float32_copy"]["max_abs_diff"] < 0.05  # bfloat16 rounding, nothing more.
    assert report["tflite"]["fp32"]["max_abs_diff"] <= tflite.TOLERANCES["fp32"]["max_abs_diff"]


def test_a_truncated_tflite_is_rejected(exported, tmp_path):
    _, export_dir, _ = exported
    data = (export_dir / tflite.tflite_file("fp32")).read_bytes()
    path = tmp_path / "model.tflite"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(runtime.TFLiteLoadError, match=f"{path} is not a valid TFLite model"):
        runtime.TFLiteGenerator(str(path))


def tamper(data):
    """The bytes with a run in the middle inverted: in the weights, so the flatbuffer still parses."""
    data = bytearray(data)
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    return bytes(data)


def test_a_tampered_tflite_fails_verification(exported, tmp_path):
    generator, export_dir, _ = exported
    path = tmp_path / "model_fp32.tflite"
    path.write_bytes(tamper((export_dir / path.name).read_bytes()))
    z = latents()
    with pytest.raises(tflite.ExportError, match="model_fp32.tflite .fp32. differs from the Keras generator"):
        tflite.verify(str(path), "fp32", z, np.asarray(generator(z, training=False)))


def test_a_tampered_file_in_an_export_fails_its_checksum(exported, tmp_path):
    _, export_dir, _ = exported
    copy = tmp_path / "export"
    shutil.copytree(export_dir, copy)
    path = copy / tflite.tflite_file("int8")
    path.write_bytes(tamper(path.read_bytes()))
    with pytest.raises(runtime.TFLiteLoadError, match="does not match the SHA-256 recorded in"):
        runtime.TFLiteGenerator(str(path))


def listing(directory):
    return {
        os.path.relpath(os.path.join(root, f), directory): open(os.path.join(root, f), "rb").read()
        for root, _, files in os.walk(directory)
        for f in files
    }


def test_an_existing_directory_is_refused_without_overwrite(tmp_path):
    export_dir = tmp_path / "export"
    export_dir.mkdir()
    (export_dir / runtime.REPORT_FILE).write_text("{}")
    (export_dir / "model_fp32.tflite").write_bytes(b"previous")
    before = listing(export_dir)
    with pytest.raises(tflite.ExportError, match=f"{export_dir} already exists: pass --overwrite"):
        exporter.export_generator(tiny_generator("dense"), str(export_dir), "tiny", variants=["fp32"])
    assert listing(export_dir) == before
    assert os.listdir(tmp_path) == ["export"]


def test_an_export_in_progress_is_refused_and_a_killed_ones_leftovers_are_removed(tmp_path):
    export_dir = tmp_path / "export"
    with files.locked(files.sibling_lock(export_dir), "the test"):
        with pytest.raises(errors.LockedError, match=f"Export directory {export_dir} is in use by another process"):
            exporter.export_generator(tiny_generator("dense"), str(export_dir), "tiny", variants=["fp32"])
    killed = tmp_path / f".export.tmp-{'0' * 32}"  # What a killed export leaves.
    killed.mkdir()
    exporter.export_generator(tiny_generator("dense"), str(export_dir), "tiny", variants=["fp32"])
    assert os.listdir(tmp_path) == ["export"]


def test_overwrite_replaces_only_an_export(tmp_path):
    export_dir = tmp_path / "export"
    export_dir.mkdir()
    (export_dir / runtime.REPORT_FILE).write_text("{}")
    (export_dir / "stale.tflite").write_bytes(b"previous")
    exporter.export_generator(tiny_generator("dense"), str(export_dir), "tiny", variants=["fp32"], overwrite=True)
    assert sorted(os.listdir(export_dir)) == ["export_report.json", "model_fp32.tflite", "saved_model"]
    assert os.listdir(tmp_path) == ["export"]

    other = tmp_path / "not_an_export"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(tflite.ExportError, match="is not an export directory"):
        exporter.export_generator(tiny_generator("dense"), str(other), "tiny", variants=["fp32"], overwrite=True)
    assert listing(other) == {"notes.txt": b"mine"}


def test_a_failed_verification_leaves_nothing_and_keeps_the_previous_export(tmp_path, monkeypatch):
    export_dir = tmp_path / "export"
    generator = tiny_generator("dense")
    exporter.export_generator(generator, str(export_dir), "tiny", variants=["fp32"])
    before = listing(export_dir)
    monkeypatch.setitem(tflite.TOLERANCES, "int8", {"max_abs_diff": 0.0, "mean_abs_diff": 0.0})
    with pytest.raises(tflite.ExportError, match=r"model_int8.tflite \(int8\) differs .* max_abs_diff .* > 0"):
        exporter.export_generator(generator, str(export_dir), "tiny", variants=["fp32", "int8"], overwrite=True)
    assert listing(export_dir) == before
    with pytest.raises(tflite.ExportError):
        exporter.export_generator(generator, str(tmp_path / "new"), "tiny", variants=["int8"])
    assert os.listdir(tmp_path) == ["export"]


@pytest.mark.slow
def test_gkd_export_binary(tiny_data_dir, tmp_path):
    classifier_dir = tmp_path / "classifiers"
    cache = classifier_dir / "fashion_mnist"
    model_io.save_model_atomic(factory.make_classifier(width=0.25), str(cache / classifier_lib.CLASSIFIER_FILE))
    (cache / classifier_lib.INFO_FILE).write_text(json.dumps({"dataset": "fashion_mnist", "test_accuracy": 0.1}))
    generator_path = tmp_path / "run" / "generator.keras"
    model_io.save_model_atomic(tiny_generator("dense"), str(generator_path))
    export_dir = tmp_path / "exports" / "tiny"

    def gkd_export(*args):
        cmd = [
            sys.executable,
            "-m",
            "tf_gkd.bin.export",
            f"--generator={generator_path.parent}",
            "--name=tiny",
            f"--export_dir={export_dir}",
            f"--data_dir={tiny_data_dir}",
            f"--classifier_dir={classifier_dir}",
            "--num_samples=50",
            "--variants=fp32,int8",
            *args,
        ]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300)

    result = gkd_export()
    assert result.returncode == 0, result.stderr
    report = json.loads((export_dir / runtime.REPORT_FILE).read_text())
    assert list(report["tflite"]) == ["fp32", "int8"]
    assert report["fid_setup"]["real_split"] == "test" and report["fid_setup"]["dataset"] == "fashion_mnist"
    assert report["fid_setup"]["num_real"] == 64
    assert np.isfinite(report["keras"]["fid"]) and np.isfinite(report["tflite"]["int8"]["fid"])
    assert "model_int8.tflite" in result.stdout and f"Exported to {export_dir}" in result.stdout
    int8 = report["tflite"]["int8"]["min_runtime"]
    assert f"{int8['version']} ({int8['op']} version {int8['op_version']})" in result.stdout

    before = listing(export_dir)
    result = gkd_export("--skip_fid")
    assert result.returncode == 1
    assert f"{export_dir} already exists: pass --overwrite" in result.stderr and "Traceback" not in result.stderr
    assert listing(export_dir) == before

    result = gkd_export(f"--generator={tmp_path / 'nope.keras'}", "--overwrite")
    assert result.returncode == 1 and "No generator at" in result.stderr
    assert listing(export_dir) == before
