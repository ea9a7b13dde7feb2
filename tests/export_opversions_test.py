"""Operator versions of `.tflite` files and the oldest TFLite runtime that loads them."""

import importlib.util
import json
import os

import keras
import pytest
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from tensorflow.lite.tools import flatbuffer_utils

from tf_gkd.export import opversions, runtime, tflite
from tf_gkd.networks import factory

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
Z_DIM = 8


def load_script():
    spec = importlib.util.spec_from_file_location("runtime_versions", os.path.join(REPO, "scripts/runtime_versions.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """{variant: path} of a tiny Dense + Conv2DTranspose generator converted as gkd-export converts it.

    Also at a fixed batch (`fp32_b1`), whose operators have shapes known at conversion.
    """
    keras.utils.set_random_seed(0)
    generator = factory.make_generator("conv", z_dim=Z_DIM, width=0.1)
    assert {"Dense", "Conv2DTranspose"} <= {layer.__class__.__name__ for layer in generator.layers}
    directory = tmp_path_factory.mktemp("opversions")
    paths = {}
    for variant, batch_size in (("fp32", None), ("dynamic", None), ("fp32", 1)):
        saved_model = str(directory / f"{tflite.SAVED_MODEL_DIR}_{batch_size}")
        if not os.path.exists(saved_model):
            tflite.write_saved_model(generator, saved_model, batch_size)
        name = tflite.variant_name(variant, batch_size)
        paths[name] = str(directory / tflite.tflite_file(variant, batch_size))
        with open(paths[name], "wb") as f:
            f.write(tflite.convert(saved_model, variant, Z_DIM, batch_size))
    return paths


def converter_min_runtime(path):
    """The `min_runtime_version` that the converter wrote into the file's metadata, from its own table."""
    model = flatbuffer_utils.read_model(path)
    (entry,) = [m for m in model.metadata if m.name == b"min_runtime_version"]
    return bytes(model.buffers[entry.buffer].data).rstrip(b"\0").decode()


def test_ops_and_versions_are_read(files):
    for variant, path in files.items():
        ops = opversions.ops_of(path)
        assert ops == sorted(set(ops)) and all(isinstance(v, int) and v >= 1 for _, v in ops), variant
        names = {name for name, _ in ops}
        assert {"FULLY_CONNECTED", "TRANSPOSE_CONV"} <= names, variant
        # The same operators as LiteRT's interpreter lists, and the same versions as TensorFlow's flatbuffer reader.
        interpreter = Interpreter(
            model_path=path, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        )
        assert names == {op["op_name"] for op in interpreter._get_ops_details()}, variant
        model = flatbuffer_utils.read_model(path)
        codes = {
            (max(c.builtinCode, c.deprecatedBuiltinCode), c.version)
            for c in (model.operatorCodes[op.opcodeIndex] for op in model.subgraphs[0].operators)
        }
        assert {(getattr(schema.BuiltinOperator, name), version) for name, version in ops} == codes, variant


def test_the_minimum_runtime_is_that_of_the_newest_op_version(files):
    table = opversions.load_table()
    for variant, path in files.items():
        ops = opversions.ops_of(path)
        runtime_version, op = opversions.minimum_runtime(ops)
        assert op in ops and runtime_version == table[op[0]][op[1]], variant
        key = opversions.version_key(runtime_version)
        assert all(opversions.version_key(table[name][v]) <= key for name, v in ops), variant
        # The converter wrote the same into the file from its own (older) copy of the table.
        assert runtime_version == converter_min_runtime(path), variant
        if variant != "dynamic":  # Its hybrid TRANSPOSE_CONV needs more than its version says: below.
            report = opversions.report(path)
            assert report["min_runtime"] == {
                "version": runtime_version,
                "op": op[0],
                "op_version": op[1],
                "hybrid_kernel": False,
            }
            assert report["op_versions"] == {name: {str(v): table[name][v]} for name, v in ops}  # One version of each.


def test_a_hybrid_transposed_convolution_needs_the_runtime_that_brought_its_kernel(files):
    """The dynamic-range variant's TRANSPOSE_CONV has int8 weights and float input: an old version, but runtime 2.17."""
    version = dict(opversions.ops_of(files["dynamic"]))["TRANSPOSE_CONV"]
    assert opversions.hybrid_ops_of(files["dynamic"]) == {("TRANSPOSE_CONV", version)}
    assert opversions.version_key(opversions.load_table()["TRANSPOSE_CONV"][version]) < (2, 17)
    report = opversions.report(files["dynamic"])
    assert report["op_versions"]["TRANSPOSE_CONV"] == {str(version): "2.17.0"}
    assert report["min_runtime"] == {
        "version": "2.17.0",
        "op": "TRANSPOSE_CONV",
        "op_version": version,
        "hybrid_kernel": True,
    }
    assert opversions.describe(report["min_runtime"]) == f"TRANSPOSE_CONV version {version}, hybrid kernel"
    # The float and int8 files run the float and the int8 kernels.
    assert opversions.hybrid_ops_of(files["fp32"]) == set()


def test_dynamic_range_fully_connected_needs_a_newer_runtime(files):
    table = opversions.load_table()
    (fp32,) = [v for name, v in opversions.ops_of(files["fp32"]) if name == "FULLY_CONNECTED"]
    (dynamic,) = [v for name, v in opversions.ops_of(files["dynamic"]) if name == "FULLY_CONNECTED"]
    assert dynamic > fp32  # The hybrid kernel: int8 weights, float activations.
    runtime_version, _ = opversions.minimum_runtime(opversions.ops_of(files["dynamic"]))
    assert opversions.version_key(runtime_version) >= opversions.version_key(table["FULLY_CONNECTED"][dynamic])
    if dynamic >= 12:
        assert opversions.version_key(runtime_version) >= (2, 17)


def test_the_table(tmp_path):
    table = opversions.load_table()
    assert "runtime_version.cc" in opversions.table_source() and "commit" in opversions.table_source()
    assert table["FULLY_CONNECTED"][1] == "1.5.0"
    for name, versions in table.items():
        assert opversions.is_builtin(name), name
        runtimes = [opversions.version_key(versions[v]) for v in sorted(versions)]
        assert runtimes == sorted(runtimes), name  # A newer op version never needs an older runtime.
    # The file is exactly what scripts/runtime_versions.py writes, not edited by hand.
    with open(opversions.TABLE_FILE) as f:
        text = f.read()
    as_strings = {name: {str(v): r for v, r in versions.items()} for name, versions in table.items()}
    assert load_script().render(as_strings, opversions.table_source()) == text

    broken = tmp_path / "table.json"
    broken.write_text(json.dumps({"TANH": {"1": "1.14.0", "2": "soon"}}))
    with pytest.raises(ValueError, match="TANH version 2 has runtime 'soon'"):
        opversions.load_table(str(broken))


def test_the_script_reads_only_the_function_and_skips_comments(tmp_path):
    source = """
    // {{BuiltinOperator_ADD, 9}, "9.9.9"},  a comment
    std::string FindMinimumRuntimeVersionForOp(tflite::BuiltinOperator op_code, int op_version) {
      static const auto* m = new std::map<std::pair<BuiltinOperator, int>, std::string>({
          {{BuiltinOperator_TANH, 2}, "1.14.0"},
          /* {{BuiltinOperator_TANH, 3}, "8.0.0"}, */
          {{BuiltinOperator_TANH, 1}, "1.14.0"},
          {{BuiltinOperator_FULLY_CONNECTED,
            12}, "2.17.0"},
      });
      return std::string();
    }
    void Other() { auto x = {{BuiltinOperator_ADD, 1}, "0.0.1"}; }
    """
    script = load_script()
    table = script.parse(source)
    assert table == {"FULLY_CONNECTED": {"12": "2.17.0"}, "TANH": {"1": "1.14.0", "2": "1.14.0"}}
    cc, output = tmp_path / "runtime_version.cc", tmp_path / "table.json"
    cc.write_text(source)
    assert script.main([str(cc), "--source=test", f"--output={output}"]) == 0
    assert opversions.load_table(str(output)) == {"FULLY_CONNECTED": {12: "2.17.0"}, "TANH": {1: "1.14.0", 2: "1.14.0"}}
    assert script.main([str(cc), "--source=test", f"--output={output}", "--check"]) == 0
    assert script.main([str(cc), "--source=other", f"--output={output}", "--check"]) == 1
    with pytest.raises(ValueError, match="No FindMinimumRuntimeVersionForOp"):
        script.parse("int main() {}")


def test_unknown_op_versions_are_marked_not_guessed():
    newest = max(opversions.load_table()["FULLY_CONNECTED"])
    ops = [("TANH", 1), ("FULLY_CONNECTED", newest + 1)]
    assert opversions.runtime_of("FULLY_CONNECTED", newest + 1) == opversions.UNKNOWN
    assert opversions.minimum_runtime(ops) == (opversions.UNKNOWN, ("FULLY_CONNECTED", newest + 1))
    assert opversions.runtime_of("BUILTIN_9999", 1) == opversions.UNKNOWN  # A code newer than the schema.
    assert opversions.minimum_runtime([]) == (None, None)


def test_flex_and_custom_ops_are_not_loadable_by_a_plain_runtime(files, tmp_path):
    # The fp32 file with its TANH turned into a Flex op, then into some other custom op.
    for custom_code, marker in (("FlexTanh", opversions.FLEX), ("MyTanh", opversions.CUSTOM)):
        model = flatbuffer_utils.read_model(files["fp32"])
        (code,) = [c for c in model.operatorCodes if c.builtinCode == schema.BuiltinOperator.TANH]
        code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
        code.customCode = custom_code
        path = tmp_path / f"{custom_code}.tflite"
        flatbuffer_utils.write_model(model, str(path))
        ops = opversions.ops_of(str(path))
        assert (custom_code, 1) in ops and "TANH" not in {name for name, _ in ops}
        assert opversions.minimum_runtime(ops) == (marker, (custom_code, 1))
        assert opversions.report(str(path))["op_versions"][custom_code] == {"1": marker}


def test_a_file_that_is_not_tflite_is_refused(files, tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(runtime.TFLiteLoadError, match="is not a TFLite model"):
        opversions.ops_of(str(path))
    with pytest.raises(runtime.TFLiteLoadError, match="Cannot read"):
        opversions.ops_of(str(tmp_path / "missing.tflite"))
