"""gkd-export: a generator as SavedModel and verified TFLite files for mobile, with a report.

    gkd-export --generator=runs/quickstart/teacher --name=quickstart     # → saved_models/quickstart/

Writes `saved_model/`, `model_{fp32,fp16,dynamic,int8,int8_qat}.tflite` and
`export_report.json` (sizes, differences from Keras, operators with their
versions and the oldest TFLite runtime that loads each file, LiteRT latency,
FID with the gkd-evaluate evaluator). Every TFLite file is run with LiteRT and
compared with the Keras generator; past its tolerance the export fails and
nothing is left at --export_dir. With --fixed_batch=N, each variant is also
written with the static input shape [N, z_dim] as `model_<variant>_b<N>.tflite`
(no operators computing the batch at run time, as GPU delegates want).
`model_int8_qat.tflite` is the int8 file of the generator tuned for int8
(`tf_gkd.export.qat`: ranges chosen for the rounding, --qat_steps of
quantization-aware tuning). Every file is converted from the generator rewritten for mobile runtimes
(`tf_gkd.export.rewrite`: batch norms folded, transposed convolutions as sub-pixel convolutions; the
same function, faster kernels). With --target_runtime=X.Y, only files that load on TFLite runtime X.Y are
written; the others are left out with the reason (printed and in the report).
"""

import os

from absl import app, flags

from tf_gkd import errors
from tf_gkd.bin import common, evaluator_flags
from tf_gkd.export import exporter, opversions, qat, tflite
from tf_gkd.networks import io as model_io

flags.DEFINE_string(
    "generator",
    None,
    "A generator .keras file, or a run directory (its generator.keras, decoder.keras or student.keras).",
)
flags.DEFINE_string("name", None, "Name of the export (its directory under saved_models/ by default).")
flags.DEFINE_string("export_dir", None, "Destination directory (default: saved_models/<name>).")
flags.DEFINE_boolean("overwrite", False, "Replace an existing export at --export_dir.")
flags.DEFINE_list(
    "variants", list(tflite.VARIANTS), f"Comma-separated TFLite variants to write, of {','.join(tflite.VARIANTS)}."
)
flags.DEFINE_integer(
    "fixed_batch",
    None,
    "Also write every variant with the static input shape [N, z_dim], as model_<variant>_b<N>.tflite "
    "(for GPU delegates; without it, only files with a dynamic batch).",
    lower_bound=1,
)
flags.DEFINE_string(
    "target_runtime",
    None,
    "The oldest TFLite runtime the files must load on (e.g. 2.14, the last standalone tflite-runtime): files "
    "that would need a newer one are left out, with the reason (default: no limit).",
)
flags.DEFINE_integer(
    "qat_steps",
    qat.STEPS,
    "Steps of quantization-aware tuning for the int8_qat file (0: only its ranges are chosen for int8).",
    lower_bound=0,
)
flags.DEFINE_boolean(
    "mobile_rewrite",
    True,
    "Convert every file from the generator with its batch norms folded, its 4x4 stride-2 transposed "
    "convolutions written as sub-pixel convolutions (a convolution and a depth-to-space) and its reshapes to a "
    "constant shape: the same function, faster LiteRT kernels, fewer operators. --nomobile_rewrite converts the "
    "generator as it is.",
)
flags.DEFINE_boolean("skip_fid", False, "Skip the FID of the Keras model and of every variant (a quick export).")
common.define_data_flags("Its test split is the FID reference.")
evaluator_flags.define_classifier_dir_flag()
flags.DEFINE_integer("num_samples", 10_000, "Generated samples scored for each FID.", lower_bound=2)
flags.DEFINE_integer("seed", 0, "Seed of the FID latents: the same seed gives every model the same z.")
FLAGS = flags.FLAGS


def _fid(entry):
    return f"{entry['fid']:8.3f}" if "fid" in entry else f"{'skipped':>8s}"


def _min_runtime(needs):
    return f"{needs['version']} ({opversions.describe(needs)})" if needs["op"] else str(needs["version"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.name or os.sep in FLAGS.name or FLAGS.name in (".", ".."):
        raise app.UsageError(f"--name must be a plain name, not a path. Received: --name={FLAGS.name!r}")
    export_dir = FLAGS.export_dir or os.path.join("saved_models", FLAGS.name)
    variants = list(dict.fromkeys(FLAGS.variants))  # In the given order, once each.
    if not variants or not set(variants) <= set(tflite.VARIANTS):
        raise app.UsageError(
            f"--variants must be some of {','.join(tflite.VARIANTS)}. Received: --variants={','.join(variants)}"
        )
    if FLAGS.target_runtime is not None:
        try:
            opversions.parse_target(FLAGS.target_runtime)
        except ValueError as e:
            raise app.UsageError(f"--target_runtime {e}") from None
    exporter.check_destination(export_dir, FLAGS.overwrite)  # First: a refusal costs nothing.
    generator = model_io.load_generator(FLAGS.generator)
    evaluator = None if FLAGS.skip_fid else evaluator_flags.load_evaluator()
    report = exporter.export_generator(
        generator,
        export_dir,
        FLAGS.name,
        variants,
        FLAGS.overwrite,
        evaluator,
        FLAGS.num_samples,
        FLAGS.seed,
        fixed_batch=FLAGS.fixed_batch,
        target_runtime=FLAGS.target_runtime,
        qat_steps=FLAGS.qat_steps,
        mobile_rewrite=FLAGS.mobile_rewrite,
    )

    width = max(len("keras generator"), *(len(entry["file"]) for entry in report["tflite"].values()))
    print(
        f"{'file':{width}s} {'bytes':>10s} {'max abs diff':>13s} {'mean abs diff':>14s} {'FID':>8s} "
        f"{'ms/image b1':>12s} {'ms/image b64':>13s}  min runtime"
    )
    print(f"{'keras generator':{width}s} {'':>10s} {'':>13s} {'':>14s} {_fid(report['keras'])}")
    for entry in report["tflite"].values():
        latency = entry["latency_ms_per_image"]
        print(
            f"{entry['file']:{width}s} {entry['size_bytes']:10d} {entry['max_abs_diff']:13.3g} "
            f"{entry['mean_abs_diff']:14.3g} {_fid(entry)} "
            f"{latency['batch_1']:12.4g} {latency['batch_64']:13.4g}  {_min_runtime(entry['min_runtime'])}"
        )
    for entry in report["tflite"].values():
        if "ops_only_in_dynamic_batch" in entry:
            dynamic = tflite.tflite_file(entry["variant"])
            line = f"{entry['file']}: input {entry['input_shape']}; operators only in {dynamic}: "
            line += ", ".join(entry["ops_only_in_dynamic_batch"]) or "none"
            if entry["ops_only_in_fixed_batch"]:
                line += f"; only in {entry['file']}: {', '.join(entry['ops_only_in_fixed_batch'])}"
            print(line + ".")
    for file, why in report["left_out"].items():
        print(f"{file}: left out, it {why}.")
    if "fid_setup" in report:
        setup = report["fid_setup"]
        print(
            f"FID: {setup['num_samples']} samples (seed {setup['seed']}) vs {setup['dataset']} {setup['real_split']} "
            f"({setup['num_real']} images), {setup['extractor']}."
        )
    print(f"Exported to {export_dir}")


def run():
    flags.mark_flags_as_required(["generator", "name"])
    app.run(errors.with_messages(main))


if __name__ == "__main__":
    run()
