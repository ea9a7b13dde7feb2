"""The operators of a `.tflite` file with their versions, and the oldest TFLite runtime that loads it.

Every builtin operator of a TFLite model is stored with a version; a runtime
older than the one that introduced that version refuses the file. The oldest
runtime of each (operator, version) comes from TensorFlow Lite's own table
(`FindMinimumRuntimeVersionForOp` in `runtime_version.cc`), kept here as
`runtime_versions.json` and regenerated from a newer copy of that file with
`scripts/runtime_versions.py` (its "_source" key says which one it is).

One kind of requirement is not in the table: a kernel that came to runtimes
later than its operator's version says. The hybrid kernel (int8 weights, float
input and output: the dynamic-range variant) of the operators in
`HYBRID_RUNTIMES` is one; a file that runs it needs that runtime.

A custom operator (a `CUSTOM` code with a name) is not in the table: a Flex
one (`Flex…`, a TensorFlow operation) needs the Flex delegate, any other a
kernel the app registers; a plain runtime loads neither. An (operator, version)
that the table does not list gets `UNKNOWN`, never a guess.

Like `runtime`, this module imports no TensorFlow: the file is read with the
flatbuffer schema that `ai_edge_litert` ships.
"""

import functools
import json
import os
import re

from ai_edge_litert import schema_py_generated as schema

from tf_gkd.export.runtime import TFLiteLoadError

TABLE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runtime_versions.json")
SOURCE_KEY = "_source"
# What stands in for a runtime version where no plain runtime version is the answer.
UNKNOWN = "unknown"
FLEX = "needs the Flex delegate"
CUSTOM = "needs a custom op"

# Operators whose hybrid kernel (int8 weights, float input and output) came to runtimes without a
# new operator version, and the oldest runtime that runs it. TRANSPOSE_CONV's: found by loading a
# dynamic-range file under TFLite runtimes 2.14.0, 2.15.1, 2.16.2 (each fails to prepare the node:
# "weights->type != input->type (INT8 != FLOAT32)") and 2.17.1 (runs), where its version (3) dates
# from 2.3.0; tests/export_old_runtime_test.py repeats the 2.14 half.
HYBRID_RUNTIMES = {"TRANSPOSE_CONV": "2.17.0"}

_BUILTIN_NAMES = {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
_BUILTINS = set(_BUILTIN_NAMES.values()) - {"CUSTOM"}
_VERSION = re.compile(r"\d+(\.\d+)*")


@functools.cache
def _read_table(path):
    with open(path) as f:
        data = json.load(f)
    table = {}
    for name, versions in data.items():
        if name == SOURCE_KEY:
            continue
        for version, runtime in versions.items():
            if not _VERSION.fullmatch(runtime):
                raise ValueError(f"{path}: {name} version {version} has runtime {runtime!r}, not a version number.")
        table[name] = {int(version): runtime for version, runtime in versions.items()}
    return data.get(SOURCE_KEY, ""), table


def load_table(path=TABLE_FILE):
    """{builtin operator name: {op version (int): oldest runtime version "x.y.z"}} from a table file.

    Raises ValueError if a runtime is not a version number.
    """
    return {name: dict(versions) for name, versions in _read_table(path)[1].items()}


def table_source(path=TABLE_FILE):
    """Which `runtime_version.cc` the table file was generated from (repository, path, commit)."""
    return _read_table(path)[0]


def version_key(version):
    """A runtime version "x.y.z" as a tuple of ints, for comparing versions."""
    return tuple(int(part) for part in version.split("."))


def parse_target(text):
    """A runtime version given by a user ("2.14" or "2.14.0") as "x.y.z".

    Raises:
      ValueError: `text` is not a version number, or is older than every runtime of the table.
    """
    if not isinstance(text, str) or not _VERSION.fullmatch(text.strip()) or text.count(".") > 2:
        raise ValueError(f"must be a TFLite runtime version such as 2.14 or 2.14.0. Received: {text!r}")
    parts = [int(part) for part in text.strip().split(".")]
    version = ".".join(str(part) for part in parts + [0] * (3 - len(parts)))
    table = _read_table(TABLE_FILE)[1]
    oldest = min((runtime for versions in table.values() for runtime in versions.values()), key=version_key)
    if version_key(version) < version_key(oldest):
        raise ValueError(
            f"{text} is older than every TFLite runtime that the runtime-version table knows (the oldest is "
            f"{oldest}). Received: {text!r}"
        )
    return version


def loads_on(min_runtime, target):
    """Whether a file whose oldest runtime is `min_runtime` (a version or a marker) loads on runtime `target`."""
    return min_runtime is None or (
        min_runtime not in (UNKNOWN, FLEX, CUSTOM) and version_key(min_runtime) <= version_key(target)
    )


def ops_of(path):
    """The operators that a `.tflite` file's subgraphs run, as sorted unique (name, version) pairs.

    A builtin operator is named as in the TFLite schema (`FULLY_CONNECTED`); a
    custom one by its custom code (`FlexMatMul`). A builtin code newer than the
    schema here is named `BUILTIN_<code>`.

    Raises:
      TFLiteLoadError: the file is missing or not a TFLite flatbuffer.
    """
    return _read(path)[0]


def hybrid_ops_of(path):
    """The (name, version) pairs of `HYBRID_RUNTIMES`' operators that a file runs with int8 weights on float input.

    Raises:
      TFLiteLoadError: the file is missing or not a TFLite flatbuffer.
    """
    return _read(path)[1]


def _read(path):
    """(`ops_of`, `hybrid_ops_of`) of the file at `path`."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise TFLiteLoadError(f"Cannot read {path}: {e.strerror}.") from None
    if data[4:8] != b"TFL3":
        raise TFLiteLoadError(f"{path} is not a TFLite model (no TFL3 file identifier).")
    try:
        model = schema.Model.GetRootAs(data, 0)
        ops, hybrid = set(), set()
        for subgraph in (model.Subgraphs(s) for s in range(model.SubgraphsLength())):
            for op in (subgraph.Operators(i) for i in range(subgraph.OperatorsLength())):
                code = model.OperatorCodes(op.OpcodeIndex())
                # Codes past 127 live in BuiltinCode; the deprecated int8 field holds a placeholder for them.
                builtin = max(code.DeprecatedBuiltinCode(), code.BuiltinCode())
                if builtin == schema.BuiltinOperator.CUSTOM:
                    name = (code.CustomCode() or b"").decode("utf-8", "replace") or "CUSTOM"
                else:
                    name = _BUILTIN_NAMES.get(builtin, f"BUILTIN_{builtin}")
                ops.add((name, code.Version()))
                if name in HYBRID_RUNTIMES:
                    types = {subgraph.Tensors(t).Type() for t in op.InputsAsNumpy() if t >= 0}
                    outputs = {subgraph.Tensors(t).Type() for t in op.OutputsAsNumpy()}
                    if schema.TensorType.INT8 in types and outputs == {schema.TensorType.FLOAT32}:
                        hybrid.add((name, code.Version()))
    except Exception as e:  # A damaged flatbuffer fails anywhere: struct.error, IndexError, AttributeError...
        raise TFLiteLoadError(f"{path} is not a valid TFLite model (truncated or corrupt file?): {e!r}") from None
    return sorted(ops), hybrid


def is_builtin(name):
    """Whether `name` (as `ops_of` gives it) is a builtin operator of the TFLite schema."""
    return name in _BUILTINS


def runtime_of(name, version, table=None, hybrid=False):
    """The oldest runtime version that runs operator `name` at `version`, or `FLEX`, `CUSTOM`, `UNKNOWN`.

    `hybrid`: the operator runs its hybrid kernel, which for `HYBRID_RUNTIMES`' operators needs a newer runtime.
    """
    if not is_builtin(name) and not name.startswith("BUILTIN_"):
        return FLEX if name.startswith("Flex") else CUSTOM
    table = _read_table(TABLE_FILE)[1] if table is None else table
    runtime = table.get(name, {}).get(version, UNKNOWN)
    if hybrid and name in HYBRID_RUNTIMES and runtime != UNKNOWN:
        runtime = max(runtime, HYBRID_RUNTIMES[name], key=version_key)
    return runtime


def minimum_runtime(ops, table=None, hybrid=()):
    """The oldest runtime that loads a model of `ops` ((name, version) pairs), and the op that needs it.

    `hybrid`: the pairs of `ops` that run their hybrid kernel (`hybrid_ops_of`).

    Returns:
      (runtime, (name, version)): the highest runtime version among the ops, and
      one op that needs it; or the first that no plain runtime version answers
      for, in this order: a custom op (`CUSTOM`), a Flex op (`FLEX`), an
      (op, version) the table does not list (`UNKNOWN`). (None, None) for no ops.
    """
    runtimes = [(runtime_of(name, version, table, (name, version) in hybrid), (name, version)) for name, version in ops]
    for marker in (CUSTOM, FLEX, UNKNOWN):
        for runtime, op in runtimes:
            if runtime == marker:
                return runtime, op
    if not runtimes:
        return None, None
    return max(runtimes, key=lambda pair: version_key(pair[0]))


def describe(min_runtime):
    """The operator a report's `min_runtime` names, as text: "TRANSPOSE_CONV version 3, hybrid kernel"."""
    if not min_runtime["op"]:
        return "no operators"
    return f"{min_runtime['op']} version {min_runtime['op_version']}" + (
        ", hybrid kernel" if min_runtime.get("hybrid_kernel") else ""
    )


def report(path, table=None):
    """What an export report says of a file's operators.

    {"op_versions": {name: {version: oldest runtime or marker}},
     "min_runtime": {"version": runtime or marker, "op": name, "op_version": version, "hybrid_kernel": bool}}
    """
    ops, hybrid = _read(path)
    op_versions = {}
    for name, version in ops:
        op_versions.setdefault(name, {})[str(version)] = runtime_of(name, version, table, (name, version) in hybrid)
    runtime, op = minimum_runtime(ops, table, hybrid)
    return {
        "op_versions": op_versions,
        "min_runtime": {
            "version": runtime,
            "op": op and op[0],
            "op_version": op and op[1],
            "hybrid_kernel": op in hybrid,
        },
    }
