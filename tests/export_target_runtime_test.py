"""gkd-export --target_runtime: only files that load on an older TFLite runtime, converted for it where possible."""

import os
import subprocess
import sys

import keras
import pytest
from ai_edge_litert import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

from tf_gkd.export import exporter, opversions, runtime, tflite
from tf_gkd.networks import factory

Z_DIM = 8


@pytest.fixture(autouse=True)
def quick_latency(monkeypatch):
    monkeypatch.setattr(exporter, "LATENCY_MIN_SECONDS", 0.0)


def tiny_generator():
    keras.utils.set_random_seed(0)
    return factory.make_generator("dense", z_dim=Z_DIM, width=0.1)


def export(tmp_path, target_runtime, name="export"):
    return exporter.export_generator(
        tiny_generator(), str(tmp_path / name), "tiny", variants=["fp32", "dynamic"], target_runtime=target_runtime
    )


@pytest.mark.parametrize(
    "text, expected", [("2.14", "2.14.0"), ("2.14.0", "2.14.0"), (" 2.3 ", "2.3.0"), ("3", "3.0.0")]
)
def test_a_target_runtime_is_read_as_a_version(text, expected):
    assert opversions.parse_target(text) == expected


@pytest.mark.parametrize("text", ["banana", "", "2.14.0.1", "2.x", "v2.14"])
def test_a_target_that_is_not_a_version_is_refused(text):
    with pytest.raises(ValueError, match="must be a TFLite runtime version such as 2.14"):
        opversions.parse_target(text)


def test_a_target_older_than_every_runtime_is_refused():
    with pytest.raises(ValueError, match=r"older than every TFLite runtime .* \(the oldest is 1.5.0\)"):
        opversions.parse_target("1.4")


def test_every_variant_loads_on_runtime_2_14(tmp_path):
    """The dynamic variant's dense layers have one weight scale each: per-channel ones need runtime 2.17."""
    report = export(tmp_path, "2.14")
    assert report["target_runtime"] == "2.14.0" and report["left_out"] == {}
    assert list(report["tflite"]) == ["fp32", "dynamic"]
    for entry in report["tflite"].values():
        assert opversions.loads_on(entry["min_runtime"]["version"], "2.14.0")
    model = flatbuffer_utils.read_model(str(tmp_path / "export" / "model_dynamic.tflite"))
    fully_connected = schema.BuiltinOperator.FULLY_CONNECTED
    weights = [
        model.subgraphs[0].tensors[op.inputs[1]]
        for op in model.subgraphs[0].operators
        if max(
            model.operatorCodes[op.opcodeIndex].builtinCode, model.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode
        )
        == fully_connected
    ]
    quantized = [w for w in weights if w.type == schema.TensorType.INT8]  # Small layers stay float.
    assert quantized and all(len(w.quantization.scale) == 1 for w in quantized)
    # Without a target, the same files.
    assert export(tmp_path, None, "any")["sha256"] == report["sha256"]


def test_a_file_that_cannot_load_on_the_target_is_left_out_with_its_reason(tmp_path):
    report = export(tmp_path, "2.2")
    assert list(report["tflite"]) == ["fp32"]
    why = "needs TFLite runtime 2.3.0 (FULLY_CONNECTED version 9), newer than --target_runtime 2.2.0"
    assert report["left_out"] == {"model_dynamic.tflite": why}
    assert sorted(os.listdir(tmp_path / "export")) == sorted(
        ["model_fp32.tflite", runtime.REPORT_FILE, tflite.SAVED_MODEL_DIR]
    )


def test_a_target_too_old_for_every_file_writes_nothing(tmp_path):
    with pytest.raises(tflite.ExportError, match="No TFLite file loads on runtime 1.13.0: model_fp32.tflite needs"):
        export(tmp_path, "1.13")
    assert os.listdir(tmp_path) == []


def test_gkd_export_refuses_a_bad_target_before_writing(tmp_path):
    path = tmp_path / "generator.keras"
    tiny_generator().save(path)
    result = subprocess.run(
        [sys.executable, "-m", "tf_gkd.bin.export", f"--generator={path}", "--name=tiny",
         f"--export_dir={tmp_path / 'export'}", "--target_runtime=latest", "--skip_fid"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert (
        "--target_runtime must be a TFLite runtime version such as 2.14 or 2.14.0. Received: 'latest'" in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["generator.keras"]
