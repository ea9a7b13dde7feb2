"""Export for mobile: every TFLite file of a teacher and its students side by side.

    .venv/bin/python benchmarks/export.py --teacher=runs/quickstart/teacher \
        --student=20x=runs/quickstart/students/20x [--student=50x=...] [--workdir=runs/bench_export] \
        [--num_samples=10000] [--old_runtime_python=.venv-tflite-2.14/bin/python]

Exports the teacher and every --student as gkd-export does (all variants, with
FID on --num_samples samples: the gkd-evaluate evaluator, the domain
classifier's features against the test split) into <workdir>/<name> (replaced
on every run), and as the reference of the rewrite for mobile runtimes
(`tf_gkd.export.rewrite`), its fp32 and int8 files converted from the generator
as it is (gkd-export --nomobile_rewrite, no FID) into <workdir>/<name>_as_is;
then loads every file under an older TFLite runtime, the one of
--old_runtime_python (tflite-runtime 2.14 in the virtual environment that
scripts/setup.sh makes), and compares its output with the Keras generator's.
Prints, per model and file: bytes, the oldest runtime that loads it (from the
export report), LiteRT latency per image at batch 1 and 64 (one thread, the
invocation alone: `runtime.latency_ms_per_image`), FID,
whether it runs and matches under the older runtime, and at batch 1 how many
times faster it is than the teacher's same variant and than its own fp32; then,
per model, the fp32 and int8 latency without the rewrite and with it.
With --profile_layers, also where a file's time goes: for every model, the
fp32 and int8 LiteRT latency at batch 1 of each prefix of the network (the
sub-model up to the end of each stage: a layer whose successor is not a batch
normalization or an activation that the converter fuses into it), so that each
stage's cost is the difference from the prefix before. Checks each student's
int8 against the targets (at least 3.5x smaller than its fp32, FID within 10 %
of its Keras model's, at least 10x faster than the teacher's int8 and 1.5x
faster than its own fp32 at batch 1), and its int8_qat file's FID within 1 % of
its Keras model's (beside int8's ratio: what quantization-aware tuning gains),
and writes `export_benchmark.json` in --workdir.
"""

import json
import os
import subprocess
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402

from tf_gkd import contract  # noqa: E402
from tf_gkd.data import datasets  # noqa: E402
from tf_gkd.evaluation import evaluate  # noqa: E402
from tf_gkd.export import exporter, rewrite, runtime, tflite  # noqa: E402
from tf_gkd.networks import io as model_io  # noqa: E402

import runs as runs_lib  # noqa: E402 (benchmarks/runs.py)

flags.DEFINE_string("teacher", None, "The teacher: a generator .keras file or run directory.")
flags.DEFINE_multi_string("student", [], "NAME=PATH: a student, a generator .keras file or run directory (repeatable).")
flags.DEFINE_string("workdir", "runs/bench_export", "Directory of the benchmark's exports and results.")
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data directory.")
flags.DEFINE_string("classifier_dir", "saved_models/classifiers", "Cache of the domain classifiers.")
flags.DEFINE_integer("num_samples", 10_000, "Samples scored for each FID.", lower_bound=2)
flags.DEFINE_string(
    "old_runtime_python",
    os.path.join(runs_lib.REPO, ".venv-tflite-2.14", "bin", "python"),
    "A Python with an older TFLite runtime (tflite_runtime or ai_edge_litert) to load every file with.",
)
flags.DEFINE_boolean("profile_layers", False, "Also time each stage of every model (prefix sub-models, batch 1).")
FLAGS = flags.FLAGS

# Targets for every student's int8 file.
MIN_INT8_SIZE_RATIO = 3.5
MAX_FID_INCREASE = 0.10
MAX_QAT_FID_INCREASE = 0.01  # The int8 file after quantization-aware tuning (int8_qat).
MIN_INT8_SPEEDUP_VS_TEACHER = 10.0
MIN_INT8_SPEEDUP_VS_FP32 = 1.5
CHECK_LATENTS = 8


# Layers that the converter fuses into the layer before them: a prefix never ends just before one.
FUSED = (
    keras.layers.BatchNormalization,
    rewrite.FoldedBatchNorm,
    keras.layers.LeakyReLU,
    keras.layers.ReLU,
    keras.layers.Activation,
)
# The files converted from the generator as it is too, the reference of the rewrite for mobile runtimes.
AS_IS_VARIANTS = ("fp32", "int8")


class _Prefix:
    """A .tflite prefix of a generator (any output), callable on z like `runtime.TFLiteGenerator`, for timing."""

    def __init__(self, path, z_dim):
        self.z_dim = z_dim
        self._interpreter = Interpreter(model_path=path, num_threads=exporter.LATENCY_THREADS)
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._shape = None

    def __call__(self, z):
        if z.shape != self._shape:
            self._interpreter.resize_tensor_input(self._input, z.shape)
            self._interpreter.allocate_tensors()
            self._shape = z.shape
        self._interpreter.set_tensor(self._input, z)
        self._interpreter.invoke()


def profile_stages(generator):
    """[(last layer of the stage, {variant: ms per image at batch 1 of the prefix up to it})] for fp32 and int8,
    of the generator rewritten for mobile runtimes, as gkd-export converts it."""
    model = rewrite.for_mobile(tflite.float32_copy(generator))
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    ends = [layer for layer, after in zip(layers, [*layers[1:], None]) if not isinstance(after, FUSED)]
    z_dim = model.inputs[0].shape[-1]
    stages = []
    with tempfile.TemporaryDirectory() as directory:
        for i, layer in enumerate(ends):
            saved_model = os.path.join(directory, f"prefix_{i}")
            tflite.write_saved_model(keras.Model(model.inputs, layer.output), saved_model)
            times = {}
            for variant in ("fp32", "int8"):
                path = os.path.join(directory, f"prefix_{i}_{variant}.tflite")
                with open(path, "wb") as f:
                    f.write(tflite.convert(saved_model, variant, z_dim))
                times[variant] = runtime.latency_ms_per_image(
                    _Prefix(path, z_dim), 1, min_seconds=exporter.LATENCY_MIN_SECONDS
                )
            stages.append((layer, times))
    return stages


def old_runtime_check(generator, export_dir, report):
    """{file: "yes" | "no: why"} under --old_runtime_python, and that runtime's name; None without one."""
    if not os.path.exists(FLAGS.old_runtime_python):
        return None, None
    z = contract.latents(CHECK_LATENTS, report["z_dim"], 0)
    expected = np.asarray(tflite.float32_copy(generator)(z, training=False))
    np.save(os.path.join(export_dir, "check_z.npy"), z)
    paths = {os.path.join(export_dir, entry["file"]): entry for entry in report["tflite"].values()}
    result = subprocess.run(
        [FLAGS.old_runtime_python, os.path.join(runs_lib.REPO, "scripts", "run_tflite.py"),
         os.path.join(export_dir, "check_z.npy"), *paths],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    outputs = json.loads(result.stdout.strip().splitlines()[-1])
    verdicts = {}
    for path, entry in paths.items():
        out = outputs[path]
        if "error" in out:
            verdicts[entry["file"]] = "no: " + out["error"].splitlines()[0][:80]
            continue
        over = tflite.over_tolerance(tflite.differences(np.load(out["output"]), expected), entry["variant"])
        verdicts[entry["file"]] = "runs, but " + ", ".join(f"{k} {v:.3g}" for k, v in over.items()) if over else "yes"
    return verdicts, outputs["runtime"]


def main(argv):
    del argv
    if not FLAGS.student:
        raise app.UsageError("Give at least one --student=NAME=PATH to compare with the teacher.")
    models = {"teacher": FLAGS.teacher}
    for spec in FLAGS.student:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path or name in models:
            raise app.UsageError(f"--student must be NAME=PATH with a new NAME. Received: --student={spec!r}")
        models[name] = path
    evaluator = evaluate.load_evaluator(datasets.DataSpec("fashion_mnist", FLAGS.data_dir), FLAGS.classifier_dir)
    results, old_runtime = {}, None
    for name, path in models.items():
        generator = model_io.load_generator(path)
        export_dir = os.path.join(FLAGS.workdir, name)
        report = exporter.export_generator(
            generator, export_dir, name, overwrite=True, evaluator=evaluator, num_samples=FLAGS.num_samples
        )
        verdicts, old_runtime = old_runtime_check(generator, export_dir, report)
        as_is = exporter.export_generator(
            generator, export_dir + "_as_is", name, AS_IS_VARIANTS, overwrite=True, mobile_rewrite=False
        )
        results[name] = {"path": os.path.abspath(path), "params": report["params"], "keras_fid": report["keras"]["fid"]}
        results[name]["files"] = {
            variant: {
                "file": entry["file"],
                "size_bytes": entry["size_bytes"],
                "min_runtime": entry["min_runtime"],
                "ms_per_image_batch_1": entry["latency_ms_per_image"]["batch_1"],
                "ms_per_image_batch_64": entry["latency_ms_per_image"]["batch_64"],
                "fid": entry["fid"],
                "old_runtime": verdicts[entry["file"]] if verdicts else "not checked",
            }
            for variant, entry in report["tflite"].items()
        }
        results[name]["without_rewrite"] = {
            variant: {f"ms_per_image_{b}": ms for b, ms in entry["latency_ms_per_image"].items()}
            for variant, entry in as_is["tflite"].items()
        }
    teacher = results["teacher"]["files"]
    for name, model in results.items():
        files = model["files"]
        for variant, r in files.items():
            r["speedup_vs_teacher_batch_1"] = teacher[variant]["ms_per_image_batch_1"] / r["ms_per_image_batch_1"]
            r["speedup_vs_own_fp32_batch_1"] = files["fp32"]["ms_per_image_batch_1"] / r["ms_per_image_batch_1"]
        if name != "teacher":
            int8, tuned, fp32, keras_fid = files["int8"], files["int8_qat"], files["fp32"], model["keras_fid"]
            model["targets_met"] = {
                f"int8 at least {MIN_INT8_SIZE_RATIO}x smaller than fp32": (
                    fp32["size_bytes"] >= MIN_INT8_SIZE_RATIO * int8["size_bytes"]
                ),
                f"int8 FID within {MAX_FID_INCREASE:.0%} of Keras": (
                    int8["fid"] <= (1 + MAX_FID_INCREASE) * model["keras_fid"]
                ),
                f"int8 at least {MIN_INT8_SPEEDUP_VS_TEACHER:g}x faster than the teacher's int8 at batch 1": (
                    int8["speedup_vs_teacher_batch_1"] >= MIN_INT8_SPEEDUP_VS_TEACHER
                ),
                f"int8 at least {MIN_INT8_SPEEDUP_VS_FP32:g}x faster than its fp32 at batch 1": (
                    int8["speedup_vs_own_fp32_batch_1"] >= MIN_INT8_SPEEDUP_VS_FP32
                ),
                f"int8_qat FID within {MAX_QAT_FID_INCREASE:.0%} of Keras (int8: {int8['fid'] / keras_fid:.3f}x, "
                f"int8_qat: {tuned['fid'] / keras_fid:.3f}x)": (tuned["fid"] <= (1 + MAX_QAT_FID_INCREASE) * keras_fid),
            }
    summary = {
        "fid_setup": f"{FLAGS.num_samples} samples vs the fashion_mnist test split, domain classifier features",
        "latency": f"LiteRT, {exporter.LATENCY_THREADS} thread, ms per image",
        "old_runtime": old_runtime or f"not checked ({FLAGS.old_runtime_python} does not exist)",
        "models": results,
    }
    path_json = os.path.join(FLAGS.workdir, "export_benchmark.json")
    with open(path_json, "w") as f:
        json.dump(summary, f, indent=2)

    print(f"\nFID: {summary['fid_setup']}. Latency: {summary['latency']}. Older runtime: {summary['old_runtime']}.")
    print(
        f"{'model':8s} {'file':22s} {'bytes':>9s} {'min runtime':>11s} {'ms b1':>8s} {'ms b64':>8s} {'FID':>7s} "
        f"{'xT b1':>6s} {'xfp32':>6s}  older runtime"
    )
    for name, model in results.items():
        print(f"{name:8s} {'keras':22s} {'':>9s} {'':>11s} {'':>8s} {'':>8s} {model['keras_fid']:7.3f}")
        for r in model["files"].values():
            print(
                f"{name:8s} {r['file']:22s} {r['size_bytes']:9d} {r['min_runtime']['version']:>11s} "
                f"{r['ms_per_image_batch_1']:8.4g} {r['ms_per_image_batch_64']:8.4g} {r['fid']:7.3f} "
                f"{r['speedup_vs_teacher_batch_1']:6.2f} {r['speedup_vs_own_fp32_batch_1']:6.2f}  {r['old_runtime']}"
            )
    print("\nThe rewrite for mobile runtimes: ms per image at batch 1 (and 64), the generator as it is -> rewritten")
    for name, model in results.items():
        for variant, before in model["without_rewrite"].items():
            after = model["files"][variant]
            b1, b64 = before["ms_per_image_batch_1"], before["ms_per_image_batch_64"]
            print(
                f"{name:8s} {variant:6s} {b1:8.4g} -> {after['ms_per_image_batch_1']:8.4g} "
                f"({b1 / after['ms_per_image_batch_1']:.2f}x)   batch 64: {b64:8.4g} -> "
                f"{after['ms_per_image_batch_64']:8.4g} ({b64 / after['ms_per_image_batch_64']:.2f}x)"
            )
    if FLAGS.profile_layers:
        print("\nWhere the time goes: LiteRT, batch 1, one thread, µs per image of each prefix (+ its last stage)")
        for name, path in models.items():
            results[name]["stages"] = []
            before = {"fp32": 0.0, "int8": 0.0}
            for layer, times in profile_stages(model_io.load_generator(path)):
                results[name]["stages"].append({"layer": layer.name, "ms_per_image_batch_1": times})
                print(
                    f"{name:8s} {layer.name:16s} {layer.__class__.__name__:18s} {str(layer.output.shape):20s} "
                    + "  ".join(f"{v} {1000 * t:7.1f} (+{1000 * (t - before[v]):6.1f})" for v, t in times.items())
                )
                before = times
        with open(path_json, "w") as f:
            json.dump(summary, f, indent=2)
    for name, model in results.items():
        for target, met in model.get("targets_met", {}).items():
            print(f"{name}: {target}: {'met' if met else 'NOT met'}")
    logging.info("Wrote %s", path_json)


if __name__ == "__main__":
    flags.mark_flags_as_required(["teacher"])
    app.run(main)
