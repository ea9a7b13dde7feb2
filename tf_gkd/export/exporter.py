"""An export directory: SavedModel, verified TFLite variants and their report, put in place atomically.

    saved_models/<name>/
      saved_model/          serving_default: z → float images; serving_uint8: z → uint8 images
      model_<variant>.tflite
      model_<variant>_b<N>.tflite   with --fixed_batch=N: the same variant at the static input shape [N, z_dim]
      export_report.json    per file: size, SHA-256, differences from Keras, operators with their
                            versions, the oldest TFLite runtime that loads it, latency, FID; for a
                            fixed-batch file, the operators that only its dynamic-batch twin has

Everything is written to a temporary directory beside the destination and
renamed into place only once every file has passed its verification, so a
failed or interrupted export leaves nothing where a user would load from, and
an export being replaced stays intact until the new one is complete.
"""

import dataclasses
import datetime
import importlib.metadata
import json
import os
import shutil

import numpy as np
from absl import logging

from tf_gkd import contract, files
from tf_gkd.export import opversions, qat, rewrite, runtime, tflite
from tf_gkd.export.tflite import ExportError
from tf_gkd.networks import io as model_io

# The fixed latents every file is compared with Keras on.
VERIFY_SAMPLES = 256
VERIFY_SEED = 10_000
# Latency is timed at one image per call (an app drawing one sample) and in batches.
LATENCY_BATCH_SIZES = (1, 64)
LATENCY_THREADS = 1
# Each latency is the median of the calls made in at least this time (see runtime.latency_ms_per_image).
LATENCY_MIN_SECONDS = 0.5
# How far the generator rewritten for mobile runtimes may be from it: float32 sums in another order.
REWRITE_TOLERANCE = 1e-4
# What of an `Evaluator` score goes into the report (the last three: class-conditional generators').
_SCORES = ("fid", "kid", "kid_std", "classifier_score", "label_accuracy", "fid_class_mean", "fid_class_worst")


def _scores(scores):
    return {k: scores[k] for k in _SCORES if k in scores}


def check_destination(export_dir, overwrite):
    """Raises ExportError unless `export_dir` is free, or is an export that `overwrite` allows replacing.

    A directory that is not an export (no `export_report.json`, not empty) is
    never replaced, so a mistyped --export_dir cannot wipe unrelated files.
    """
    if not os.path.lexists(export_dir):
        return
    if not overwrite:
        raise ExportError(
            f"{export_dir} already exists: pass --overwrite to replace it, or choose another --export_dir."
        )
    if not os.path.isdir(export_dir) or (
        os.listdir(export_dir) and not os.path.exists(os.path.join(export_dir, runtime.REPORT_FILE))
    ):
        raise ExportError(
            f"{export_dir} exists and is not an export directory (no {runtime.REPORT_FILE}): it is never "
            "replaced, even with --overwrite. Choose another --export_dir."
        )


def _dir_size(directory):
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(directory) for f in files)


def _versions():
    return {p: importlib.metadata.version(p) for p in ("tensorflow", "keras", "ai-edge-litert")}


@dataclasses.dataclass(frozen=True)
class _Check:
    """What every file is verified against: latents z, their one-hot labels (None when unconditional), the
    number of classes (0: unconditional) and the float32 Keras generator's images of them."""

    z: np.ndarray
    labels: np.ndarray | None
    num_classes: int
    reference: np.ndarray


def _write_tflite(directory, saved_model, variant, batch_size, check, score, target):
    """Converts, writes and verifies one TFLite file.

    Args:
      check: a `_Check`.
      score: None, or a function of a `runtime.TFLiteGenerator` returning its scores (FID, ...).

    Returns:
      (its report entry, None), or (None, why it was left out) when it does not load on runtime `target`
      (the file is removed).
    """
    z, labels, num_classes = check.z, check.labels, check.num_classes
    z_dim = z.shape[1]
    file = tflite.tflite_file(variant, batch_size)
    path = os.path.join(directory, file)
    with open(path, "wb") as f:
        f.write(tflite.convert(saved_model, variant, z_dim, batch_size, num_classes))
    operators = opversions.report(path)
    needs = operators["min_runtime"]
    if target is not None and not opversions.loads_on(needs["version"], target):
        os.remove(path)
        return None, (
            f"needs TFLite runtime {needs['version']} ({opversions.describe(needs)}), "
            f"newer than --target_runtime {target}"
        )
    entry = {
        "file": file,
        "variant": variant,
        "input_shape": [batch_size, z_dim],  # None (null): any batch size.
        **({"label_shape": [batch_size, num_classes]} if num_classes else {}),
        "size_bytes": os.path.getsize(path),
        **tflite.verify(path, variant, z, check.reference, labels),
        "tolerance": tflite.TOLERANCES[variant],
        "ops": sorted(operators["op_versions"]),
        **operators,
    }
    model_tflite = runtime.TFLiteGenerator(path, num_threads=LATENCY_THREADS)
    # A fixed-batch file is also timed at its own batch size; at the others it runs in batches of it.
    batch_sizes = sorted({*LATENCY_BATCH_SIZES, *([batch_size] if batch_size else [])})
    entry["latency_ms_per_image"] = {
        f"batch_{b}": runtime.latency_ms_per_image(model_tflite, b, min_seconds=LATENCY_MIN_SECONDS)
        for b in batch_sizes
    }
    entry["latency_threads"] = LATENCY_THREADS
    if score is not None:
        entry.update(score(model_tflite))
    return entry, None


def _for_mobile(model, inputs, reference):
    """(`rewrite.for_mobile(model)`, what changed and how far it is from `reference`); `model` if it cannot be."""
    try:
        mobile = rewrite.for_mobile(model)
    except rewrite.GraphError as e:
        logging.warning("The generator is exported as it is, not rewritten for mobile runtimes: %s", e)
        return model, {"applied": False, "why_not": str(e)}
    diffs = tflite.differences(np.asarray(mobile(inputs, training=False)), reference)
    if not diffs["max_abs_diff"] <= REWRITE_TOLERANCE:  # (NaN included)
        raise ExportError(
            f"The generator rewritten for mobile runtimes differs from it by {diffs['max_abs_diff']:.3g} "
            f"(more than {REWRITE_TOLERANCE}): a rewrite that should keep its function did not. Export with "
            "--nomobile_rewrite, and report the generator's layers."
        )
    return mobile, {"applied": True, **rewrite.count(mobile), **diffs}


@dataclasses.dataclass(frozen=True)
class _Options:
    """`export_generator`'s arguments but the generator and where it goes, checked."""

    variants: list
    evaluator: object
    num_samples: int
    seed: int
    fixed_batch: int | None
    target_runtime: str | None
    qat_steps: int
    mobile_rewrite: bool


def _write_files(generator, directory, name, options):
    """Writes and verifies every file in `directory`; returns the report (also written there)."""
    variants, evaluator, num_samples, seed = options.variants, options.evaluator, options.num_samples, options.seed
    fixed_batch, target_runtime = options.fixed_batch, options.target_runtime
    z_dim, num_classes = contract.z_dim(generator), contract.num_classes(generator)
    model = tflite.float32_copy(generator)
    z = contract.latents(VERIFY_SAMPLES, z_dim, VERIFY_SEED)
    labels = contract.class_labels(VERIFY_SAMPLES, num_classes) if num_classes else None
    inputs = contract.generator_inputs(model, z, labels)
    reference = np.asarray(model(inputs, training=False))
    check = _Check(z, labels, num_classes, reference)
    rewritten = {"applied": False, "why_not": "--nomobile_rewrite"}
    if options.mobile_rewrite:
        model, rewritten = _for_mobile(model, inputs, reference)
    report = {
        "name": name,
        "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "versions": _versions(),
        "z_dim": z_dim,
        "num_classes": num_classes,
        "params": model_io.count_params(generator),
        "verification": {
            "num_latents": VERIFY_SAMPLES,
            "seed": VERIFY_SEED,
            "reference": "the Keras generator in float32",
            "labels": "classes 0, 1, ... in turn" if num_classes else None,
        },
        # A mixed-precision generator is exported in float32: how far that is from the model as trained.
        "keras": {
            "dtype_policies": sorted({layer.dtype_policy.name for layer in generator.layers}),
            "float32_copy": tflite.differences(reference, generator(inputs, training=False)),
            # The float32 copy rewritten for mobile runtimes, which every file is converted from (`rewrite`).
            "mobile_rewrite": rewritten,
        },
    }
    score = None
    if evaluator is not None:
        scores = evaluator.evaluate(generator, num_samples, seed, progress=False)
        report["fid_setup"] = {
            "extractor": evaluator.classifier.describe(),
            "classifier_test_accuracy": evaluator.classifier.info.get("test_accuracy"),
            "dataset": evaluator.classifier.info.get("dataset"),
            **{k: scores[k] for k in ("num_samples", "num_real", "real_split", "seed")},
        }
        report["keras"].update(_scores(scores))

        def score(model_tflite):
            # The latents evaluator.evaluate gave the Keras generator: its FID and these compare like for like.
            sample_labels = contract.class_labels(num_samples, num_classes) if num_classes else None
            images = model_tflite.generate(contract.latents(num_samples, z_dim, seed), sample_labels)
            return _scores(evaluator.score_images(images, sample_labels))

    saved_model = os.path.join(directory, tflite.SAVED_MODEL_DIR)
    tflite.write_saved_model(model, saved_model)
    shape = ", ".join(str(d) for d in model_io.image_shape(model))
    takes = f"z float32 [N, {z_dim}]" + (f", label float32 [N, {num_classes}] (one-hot)" if num_classes else "")
    report["saved_model"] = {
        "path": tflite.SAVED_MODEL_DIR,
        "size_bytes": _dir_size(saved_model),
        "signatures": {
            tflite.FLOAT_SIGNATURE: f"{takes} -> images float32 [N, {shape}] in [-1, 1]",
            tflite.UINT8_SIGNATURE: f"{takes} -> images uint8 [N, {shape}] in [0, 255]",
        },
        **tflite.check_saved_model(saved_model, z, reference, labels, num_classes),
    }

    report["tflite"], report["sha256"] = {}, {}
    # Where each file's min_runtime comes from: TFLite's table of the runtime that introduced each operator version.
    report["min_runtime_table"] = opversions.table_source()
    # And the hybrid kernels that need a newer runtime than their operator's version says.
    report["hybrid_kernel_runtimes"] = dict(opversions.HYBRID_RUNTIMES)
    report["fixed_batch"] = fixed_batch
    report["target_runtime"] = target_runtime
    report["left_out"] = {}  # {file: why}: the files that would not load on target_runtime, or were not tuned.
    # The SavedModels the files are converted from, {(float or qat, batch size): directory}: beside the
    # export's own, the same model with signatures of the static shape [fixed_batch, z_dim], and the model
    # tuned for int8 (`qat`). Not part of the export: removed once the files are written.
    sources = {("float", None): saved_model}
    batch_sizes = [None] if fixed_batch is None else [None, fixed_batch]
    hidden = []
    if "int8_qat" in variants:
        try:
            calibration = tflite.calibration_batches(z_dim, None, num_classes)
            tuned, report["qat"] = qat.fine_tune(model, calibration, options.qat_steps)
        except rewrite.GraphError as e:  # (qat.QATError among them)
            variants = [v for v in variants if v != "int8_qat"]
            for batch_size in batch_sizes:
                report["left_out"][tflite.tflite_file("int8_qat", batch_size)] = f"was not tuned: {e}"
            logging.warning("int8_qat left out: %s", e)
        else:
            for batch_size in batch_sizes:
                hidden.append(os.path.join(directory, f".{tflite.SAVED_MODEL_DIR}_qat_b{batch_size}"))
                tflite.write_saved_model(tuned.model, hidden[-1], batch_size)
                sources["qat", batch_size] = hidden[-1]
    if fixed_batch is not None:
        hidden.append(os.path.join(directory, f".{tflite.SAVED_MODEL_DIR}_b{fixed_batch}"))
        tflite.write_saved_model(model, hidden[-1], fixed_batch)
        sources["float", fixed_batch] = hidden[-1]
    for variant in variants:
        for batch_size in batch_sizes:
            source = sources["qat" if variant == "int8_qat" else "float", batch_size]
            entry, why = _write_tflite(directory, source, variant, batch_size, check, score, target_runtime)
            if entry is None:
                report["left_out"][tflite.tflite_file(variant, batch_size)] = why
                logging.info("%s left out: it %s.", tflite.tflite_file(variant, batch_size), why)
                continue
            if batch_size is not None and variant in report["tflite"]:
                # What the fixed batch removes (or adds) next to the same variant with a dynamic batch.
                fixed, dynamic = set(entry["ops"]), set(report["tflite"][variant]["ops"])
                entry["ops_only_in_dynamic_batch"] = sorted(dynamic - fixed)
                entry["ops_only_in_fixed_batch"] = sorted(fixed - dynamic)
            report["tflite"][tflite.variant_name(variant, batch_size)] = entry
            report["sha256"][entry["file"]] = runtime.sha256(os.path.join(directory, entry["file"]))
            logging.info(
                "%s: %d bytes, min runtime %s, max abs diff %.3g, FID %s, %.3f ms/image at batch 1.",
                entry["file"],
                entry["size_bytes"],
                entry["min_runtime"]["version"],
                entry["max_abs_diff"],
                f"{entry['fid']:.3f}" if "fid" in entry else "skipped",
                entry["latency_ms_per_image"]["batch_1"],
            )
    for source in hidden:
        shutil.rmtree(source)
    if not report["tflite"]:
        raise ExportError(
            f"No TFLite file loads on runtime {target_runtime}: "
            + "; ".join(f"{file} {why}" for file, why in report["left_out"].items())
            + ". Choose a newer --target_runtime; nothing was written."
        )
    with open(os.path.join(directory, runtime.REPORT_FILE), "w") as f:
        json.dump(report, f, indent=2)
    return report


def export_generator(
    generator,
    export_dir,
    name,
    variants=tflite.VARIANTS,
    overwrite=False,
    evaluator=None,
    num_samples=10_000,
    seed=0,
    fixed_batch=None,
    target_runtime=None,
    qat_steps=None,
    mobile_rewrite=True,
):
    """Exports `generator` to `export_dir`: SavedModel, the TFLite `variants`, `export_report.json`.

    Args:
      generator: a Keras generator z [N, z_dim] (, one-hot label [N, K]) → images [N, H, W, C] in [-1, 1].
      export_dir: the destination directory.
      name: the export's name, written into the report.
      variants: TFLite variants, a subset of `tflite.VARIANTS`.
      overwrite: replace an existing export at `export_dir`.
      evaluator: an `evaluate.Evaluator` scoring the Keras generator and every
        variant on the same `num_samples` latents drawn with `seed`; None skips FID.
      fixed_batch: None, or a batch size N: every variant is also written with
        the static input shape [N, z_dim] (`model_<variant>_b<N>.tflite`),
        verified, timed and scored like the others.
      target_runtime: None, or the oldest TFLite runtime the files must load on
        ("2.14", "2.14.0"): a file that would not is left out, with the reason
        in the report's `left_out`.
      qat_steps: steps of quantization-aware tuning for the `int8_qat` variant
        (`qat.fine_tune`; None: `qat.STEPS`; 0: only its ranges are chosen).
      mobile_rewrite: convert every file from the generator with its batch norms
        folded and its 4×4 stride-2 transposed convolutions written as sub-pixel
        convolutions (`rewrite.for_mobile`: the same function, faster LiteRT
        kernels); False: from the generator as it is.

    Returns:
      The report, as written.

    Raises:
      ValueError: `variants`, `fixed_batch`, `target_runtime` or `qat_steps` is invalid (before anything is written).
      ExportError: the destination exists (without `overwrite`), a conversion
        fails, a file fails its verification, or no file loads on
        `target_runtime`. Nothing is then left at
        `export_dir` (an export being replaced is kept as it was).
      LockedError: another process is exporting to `export_dir`.
    """
    unknown = sorted(set(variants) - set(tflite.VARIANTS))
    if unknown or not variants:
        raise ValueError(f"variants must be a non-empty subset of {tflite.VARIANTS}. Received: {list(variants)}")
    tflite.check_batch_size(fixed_batch)
    qat_steps = qat.STEPS if qat_steps is None else qat_steps
    if qat_steps < 0:
        raise ValueError(f"qat_steps must be >= 0. Received: qat_steps={qat_steps}")
    if target_runtime is not None:
        try:
            target_runtime = opversions.parse_target(target_runtime)
        except ValueError as e:
            raise ValueError(f"target_runtime {e}") from None
    # One process exports to a directory at a time; the temporary folders of a killed one are removed first.
    with files.locked(files.sibling_lock(export_dir), f"Export directory {export_dir}"):
        files.remove_replacement_leftovers(export_dir)
        check_destination(export_dir, overwrite)
        # Checked again before the swap: a process that does not lock (a user) may have written it meanwhile.
        with files.atomic_directory(export_dir, before_replace=lambda: check_destination(export_dir, overwrite)) as tmp:
            options = _Options(
                list(variants), evaluator, num_samples, seed, fixed_batch, target_runtime, qat_steps, mobile_rewrite
            )
            report = _write_files(generator, tmp, name, options)
    return report
