"""Writing a `compare.Comparison` out: metrics.json, report.md, PNG figures and TensorBoard.

<output_dir>/
  metrics.json          every number with its unit, and the settings it was measured with
  report.md             cost and quality tables (ratios to the teacher), failures, the figures
  samples.png           the same latents through the teacher and every other generator, one row each
  classes.png           class-conditional generators: one row per class, the same latents in every row
  pareto_size.png       FID against parameters
  pareto_latency.png    FID against Keras latency per image at the smallest batch size
  training_curves.png   the runs' train/* scalars, read back from their TensorBoard events
  tb/                   the same figures and scalars for TensorBoard
  tb/hparams/           TensorBoard's HParams view: one trial per entry, its recipe (role and the
                        run options that differ between entries) as hparams, its scores as metrics
"""

import json
import math
import os

import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf
from tensorboard.plugins.hparams import api as hp

from tf_gkd import contract, files
from tf_gkd import images as image_utils
from tf_gkd.evaluation import compare

# Latents per row of classes.png.
CLASS_GRID_LATENTS = 8
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"
TENSORBOARD_DIR = "tb"
HPARAMS_DIR = "hparams"  # In TENSORBOARD_DIR: one run per entry, for TensorBoard's HParams tab.
# How each role is drawn in the Pareto plots (the teacher is also a horizontal reference line).
_MARKERS = {"teacher": ("*", "C3"), "student": ("o", "C0"), "baseline": ("s", "C1"), "generator": ("^", "C2")}
_DECIMALS = {
    "fid": 2,
    "kid": 3,
    "classifier_score": 2,
    "precision": 3,
    "recall": 3,
    "label_accuracy": 3,
    "fid_class_mean": 2,
    "fid_class_worst": 2,
    "psnr": 2,
    "ssim": 3,
}


def _valued(value, unit):
    return {"value": value, "unit": unit}


def _latency_key(comparison):
    return f"batch_{min(comparison.settings['latency']['batch_sizes'])}"


def _vs_teacher(entry, teacher):
    """Ratios to the teacher: how many times smaller and faster, and the FID relative to the teacher's."""
    if teacher is None or entry is teacher:
        return None
    pairs = {"params": (teacher.cost["params"], entry.cost["params"], "× fewer parameters than the teacher")}
    for batch, ms in entry.cost["keras_latency_ms_per_image"].items():
        pairs[f"latency_{batch}"] = (
            teacher.cost["keras_latency_ms_per_image"][batch],
            ms,
            "× faster than the teacher (Keras)",
        )
    pairs["fid"] = (np.mean(entry.quality["fid"]), np.mean(teacher.quality["fid"]), "× the teacher's FID (1 = as good)")
    return {key: _valued(float(a / b), unit) for key, (a, b, unit) in pairs.items() if b > 0}


def to_json(comparison):
    """The comparison as a JSON-serializable dict: settings, units, entries, failures."""
    teacher = comparison.teacher
    entries, failed = [], []
    for entry in comparison.entries:
        if not entry.ok:
            failed.append({"name": entry.name, "path": entry.path, "error": entry.error})
            continue
        ms = compare.UNITS["latency"]
        entries.append(
            {
                "name": entry.name,
                "role": entry.role,
                "path": os.path.abspath(entry.path),
                "file": os.path.abspath(entry.file),
                "z_dim": contract.z_dim(entry.generator),
                "runs": [os.path.abspath(path) for path in entry.runs] or None,
                "quality": {k: {**compare.summary(v), "unit": compare.UNITS[k]} for k, v in entry.quality.items()},
                "fidelity": {k: {**compare.summary(v), "unit": compare.UNITS[k]} for k, v in entry.fidelity.items()}
                or None,
                "cost": {
                    **{k: _valued(entry.cost[k], compare.UNITS[k]) for k in ("params", "macs", "keras_bytes")},
                    "keras_latency": {b: _valued(v, ms) for b, v in entry.cost["keras_latency_ms_per_image"].items()},
                    "tflite": {"variants": entry.tflite, "source": entry.tflite_note} if entry.tflite_note else None,
                },
                "vs_teacher": _vs_teacher(entry, teacher),
                "config": entry.config,
                "notes": entry.notes,
            }
        )
    return {"settings": comparison.settings, "units": compare.UNITS, "entries": entries, "failed": failed}


def mean_std(values, decimals):
    """Per-seed values as "mean ± std" with `decimals` decimals ("mean" for one value, "—" for none)."""
    if not values:
        return "—"
    summary = compare.summary(values)
    text = f"{summary['mean']:.{decimals}f}"
    return text if summary["std"] is None else f"{text} ± {summary['std']:.{decimals}f}"


def _ratio(ratios, key):
    return f"{ratios[key]['value']:.2f}×" if ratios and key in ratios else "—"


def _label(entry):
    """The model column: its name, and how many training runs its numbers are over when several."""
    return f"`{entry.name}` ({len(entry.runs)} runs)" if entry.runs else f"`{entry.name}`"


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def to_markdown(comparison, figures):
    """report.md: what was measured, the cost and quality tables, TFLite figures, failures, notes, figures."""
    s = comparison.settings
    teacher = comparison.teacher
    ok = [e for e in comparison.entries if e.ok]
    seeds = ", ".join(str(seed) for seed in s["seeds"])
    lines = [
        "# Evaluation report",
        "",
        f"{s['dataset']} {s['real_split']} split ({s['num_real']:,} images) against {s['num_samples']:,} samples per "
        f"generator and seed (seeds {seeds}; mean ± sample std over seeds, and over training runs for a model "
        f"trained several times, when several), scored on {s['extractor']} "
        f"(test accuracy {s['classifier_test_accuracy']:.4f}). "
        + (f"Precision and recall with k = {s['precision_recall_k']}. " if s["precision_recall_k"] else "")
        + (
            f"PSNR and SSIM against the teacher `{teacher.name}` on the same latents."
            if teacher
            else "No teacher: no PSNR or SSIM."
        ),
        "",
        "## Cost",
        "",
    ]
    batches = list(s["latency"]["batch_sizes"])
    header = ["model", "role", "params", "× smaller", "MACs / image", ".keras bytes"]
    header += [f"ms / image, batch {b}" for b in batches] + [f"× faster, batch {min(batches)}"]
    rows = []
    for e in ok:
        ratios = _vs_teacher(e, teacher)
        latency = [f"{e.cost['keras_latency_ms_per_image'][f'batch_{b}']:.4g}" for b in batches]
        rows.append(
            [
                _label(e),
                e.role,
                f"{e.cost['params']:,}",
                _ratio(ratios, "params"),
                f"{e.cost['macs']:,}",
                f"{e.cost['keras_bytes']:,}",
                *latency,
                _ratio(ratios, f"latency_{_latency_key(comparison)}"),
            ]
        )
    lines += _table(header, rows)
    latency = s["latency"]
    lines += [
        "",
        f"Keras latency: {latency['runtime']}, {latency['statistic']}, on {latency['cpu_count']} CPU cores. "
        "MACs: multiply-accumulates of the linear layers.",
        "",
        "## Quality",
        "",
    ]
    header = ["model", "FID", "FID / teacher", "KID", "classifier score", "precision", "recall", "PSNR dB", "SSIM"]
    rows = [
        [_label(e), mean_std(e.quality.get("fid"), 2), _ratio(_vs_teacher(e, teacher), "fid")]
        + [mean_std(e.quality.get(k), _DECIMALS[k]) for k in ("kid", "classifier_score", "precision", "recall")]
        + [mean_std(e.fidelity.get(k), _DECIMALS[k]) for k in compare.FIDELITY]
        for e in ok
    ]
    lines += _table(header, rows)
    conditional = [e for e in ok if "label_accuracy" in e.quality]
    if conditional:
        lines += ["", "### Class by class (class-conditional generators)", ""]
        header = ["model", "label accuracy", "per-class FID, mean", "per-class FID, worst class"]
        rows = [
            [_label(e)] + [mean_std(e.quality.get(k), _DECIMALS[k]) for k in compare.CLASS_QUALITY] for e in conditional
        ]
        lines += _table(header, rows)
        lines += [
            "",
            "Each generator was asked for every class equally often; label accuracy is how often the domain "
            "classifier sees the class asked for, and each class's FID compares its samples with the real images "
            "of that class.",
        ]
    exported = [e for e in ok if e.tflite]
    if exported:
        lines += ["", "## TFLite (from each gkd-export report, LiteRT)", ""]
        rows = [
            [
                f"`{e.name}`",
                variant,
                f"{v.get('size_bytes', 0):,}",
                ", ".join(f"{b.replace('_', ' ')}: {ms:.4g}" for b, ms in v.get("latency_ms_per_image", {}).items()),
                v.get("latency_threads", "—"),
                f"{v['fid']:.2f}" if "fid" in v else "—",
            ]
            for e in exported
            for variant, v in e.tflite.items()
        ]
        lines += _table(["model", "variant", "bytes", "ms / image", "threads", "FID"], rows)
        lines += ["", "As each export measured them (its samples and seed: see its export_report.json)."]
    failed = [e for e in comparison.entries if not e.ok]
    if failed:
        lines += ["", "## Failed", ""] + [f"- `{e.name}` ({e.path}): {e.error}" for e in failed]
    notes = [f"- `{e.name}`: {note}" for e in ok for note in e.notes]
    notes += [f"- `{e.name}` TFLite: {e.tflite_note}" for e in ok if e.tflite_note and not e.tflite]
    if notes:
        lines += ["", "## Notes", ""] + notes
    lines += ["", "## Figures", ""]
    for name, caption in figures.items():
        lines += [f"![{caption}]({name}.png)", "", f"*{caption}*", ""]
    return "\n".join(lines).rstrip() + "\n"


def _pareto_front(points):
    """The points (x, y) that no other point beats on both (lower x and lower y), sorted by x."""
    front, best = [], math.inf
    for x, y in sorted(points):
        if y < best:
            front.append((x, y))
            best = y
    return front


def pareto_plot(comparison, cost_of, xlabel, path=None):
    """FID (mean, ± std bars) against a cost per entry, marked by role, the teacher's FID a dashed line.

    Args:
      comparison: the `compare.Comparison`.
      cost_of: entry → its cost (the x axis, drawn on a log scale).
      xlabel: the x axis label, unit included.
      path: where to write the PNG, if anywhere.

    Returns:
      The plot as uint8 RGB [H, W, 3].
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=100)
    points, labelled = [], set()
    for e in comparison.entries:
        if not e.ok or "fid" not in e.quality:
            continue
        summary = compare.summary(e.quality["fid"])
        x, y = cost_of(e), summary["mean"]
        marker, color = _MARKERS[e.role]
        ax.errorbar(
            x,
            y,
            yerr=summary["std"] or 0.0,
            fmt=marker,
            color=color,
            markersize=9 if e.role == "teacher" else 6,
            capsize=3,
            label=None if e.role in labelled else e.role,
        )
        labelled.add(e.role)
        ax.annotate(e.name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
        points.append((x, y))
    if len(points) > 1:
        front = list(zip(*_pareto_front(points)))
        ax.step(*front, where="post", color="0.5", linestyle=":", linewidth=1)
        ax.scatter(*front, s=160, facecolors="none", edgecolors="0.5", label="Pareto-optimal")
    if comparison.teacher is not None:
        fid = np.mean(comparison.teacher.quality["fid"])
        ax.axhline(fid, color=_MARKERS["teacher"][1], linestyle="--", linewidth=1, label=f"teacher FID {fid:.2f}")
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("FID (lower is better)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return image_utils.figure_rgb(fig, path)


def curves_plot(entries, path=None):
    """One panel per training scalar (tag), with a line per run that logged it; None without any curve."""
    tags = sorted({tag for e in entries for tag in e.curves})
    if not tags:
        return None
    cols = min(3, len(tags))
    rows = -(-len(tags) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), dpi=100, squeeze=False)
    for ax, tag in zip(axes.flat, tags):
        for i, e in enumerate(entries):
            if tag in e.curves:
                steps, values = e.curves[tag]
                # A lone point (a scalar logged once) needs a marker to be seen.
                ax.plot(
                    steps,
                    values,
                    color=f"C{i % 10}",
                    linewidth=1,
                    marker="o" if len(steps) == 1 else None,
                    label=e.name,
                )
        ax.set_title(tag, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    for ax in axes.flat[len(tags) :]:
        ax.axis("off")
    fig.tight_layout()
    return image_utils.figure_rgb(fig, path)


def class_rows(generators, seed, num=CLASS_GRID_LATENTS):
    """(label, images) rows of class-conditional `generators` ([(name, model)]): each class of each, same z."""
    rows = []
    for name, generator in generators:
        z = contract.latents(num, contract.z_dim(generator), seed)
        for c in range(contract.num_classes(generator)):
            inputs = contract.generator_inputs(generator, z, np.full(num, c))
            rows.append((f"{name}, class {c}", np.asarray(generator(inputs, training=False))))
    return rows


def _figures(comparison, output_dir):
    """Writes the PNG figures; returns {name: (caption, RGB array)}."""
    ok = [e for e in comparison.entries if e.ok and e.grid is not None]
    key = _latency_key(comparison)
    figures = {}

    def add(name, caption, rgb):
        if rgb is not None:
            figures[name] = (caption, rgb)

    if ok:
        seed = comparison.settings["seeds"][0]
        ordered = sorted(ok, key=lambda e: e is not comparison.teacher)  # Teacher on top.
        rows = [(e.name, e.grid) for e in ordered]
        add(
            "samples",
            f"The same latents (seed {seed}) through the teacher and every other generator, one row each",
            image_utils.rows_plot(rows, os.path.join(output_dir, "samples.png")),
        )
        conditional = [(e.name, e.generator) for e in ordered if contract.num_classes(e.generator)]
        if conditional:
            add(
                "classes",
                f"Class-conditional generators: one row per class, the same latents (seed {seed}) in every row",
                image_utils.rows_plot(class_rows(conditional, seed), os.path.join(output_dir, "classes.png")),
            )
        add(
            "pareto_size",
            "FID against parameters",
            pareto_plot(
                comparison, lambda e: e.cost["params"], "parameters", os.path.join(output_dir, "pareto_size.png")
            ),
        )
        batch = key.replace("_", " ")
        add(
            "pareto_latency",
            f"FID against Keras latency per image, {batch}",
            pareto_plot(
                comparison,
                lambda e: e.cost["keras_latency_ms_per_image"][key],
                f"ms per image, {batch} (Keras)",
                os.path.join(output_dir, "pareto_latency.png"),
            ),
        )
    add(
        "training_curves",
        "Training curves (the runs' TensorBoard train/* scalars)",
        curves_plot(ok, os.path.join(output_dir, "training_curves.png")),
    )
    return figures


def _write_tensorboard(result, figures, logdir):
    """Every entry's scalars as `<group>/<metric>/<entry>` at step 0, and the figures as images."""
    writer = tf.summary.create_file_writer(logdir)
    with writer.as_default(step=0):
        for entry in result["entries"]:
            for group in ("quality", "fidelity"):
                for metric, values in (entry[group] or {}).items():
                    tf.summary.scalar(f"{group}/{metric}/{entry['name']}", values["mean"])
            for metric in ("params", "macs", "keras_bytes"):
                tf.summary.scalar(f"cost/{metric}/{entry['name']}", entry["cost"][metric]["value"])
            for batch, ms in entry["cost"]["keras_latency"].items():
                tf.summary.scalar(f"cost/latency_ms_{batch}/{entry['name']}", ms["value"])
        for name, (caption, rgb) in figures.items():
            tf.summary.image(name, rgb[None], description=caption)
    writer.close()


def hparams_of(entries):
    """{entry name: {hparam: value}}: each entry's role and the options of its run that differ between entries.

    Options every entry shares tell nothing apart, so they are left out; values
    are what TensorBoard's HParams plugin takes (bool, number, string).
    """
    configs = {e["name"]: e["config"] or {} for e in entries}
    keys = sorted({key for config in configs.values() for key in config})
    differing = [k for k in keys if len({json.dumps(c.get(k), sort_keys=True) for c in configs.values()}) > 1]

    def value(v):
        return v if isinstance(v, (bool, int, float, str)) else json.dumps(v)

    return {e["name"]: {"role": e["role"], **{k: value(configs[e["name"]].get(k)) for k in differing}} for e in entries}


def _write_hparams(result, logdir):
    """TensorBoard's HParams view of the entries: one trial each (its recipe as hparams, its scores as metrics)."""
    entries = result["entries"]
    metrics = {}  # Tag: value, per entry.
    for e in entries:
        values = {f"{group}/{k}": v["mean"] for group in ("quality", "fidelity") for k, v in (e[group] or {}).items()}
        values["cost/params"] = e["cost"]["params"]["value"]
        values.update({f"cost/latency_ms_{b}": v["value"] for b, v in e["cost"]["keras_latency"].items()})
        metrics[e["name"]] = values
    tags = sorted({tag for values in metrics.values() for tag in values})
    hparams = hparams_of(entries)
    with tf.summary.create_file_writer(logdir).as_default():
        hp.hparams_config(
            hparams=[hp.HParam(k) for k in sorted({k for h in hparams.values() for k in h})],
            metrics=[hp.Metric(tag) for tag in tags],
        )
    for name, values in metrics.items():
        with tf.summary.create_file_writer(os.path.join(logdir, name)).as_default():
            hp.hparams(hparams[name], trial_id=name)
            for tag, v in values.items():
                tf.summary.scalar(tag, v, step=0)


def write(comparison, output_dir):
    """Writes metrics.json, report.md, the PNG figures and the TensorBoard events into `output_dir`.

    Returns:
      The metrics.json content, as a dict.
    """
    os.makedirs(output_dir, exist_ok=True)
    result = to_json(comparison)
    figures = _figures(comparison, output_dir)
    _write_tensorboard(result, figures, os.path.join(output_dir, TENSORBOARD_DIR))
    _write_hparams(result, os.path.join(output_dir, TENSORBOARD_DIR, HPARAMS_DIR))
    files.write_text(json.dumps(result, indent=2), os.path.join(output_dir, METRICS_FILE))
    markdown = to_markdown(comparison, {name: caption for name, (caption, _) in figures.items()})
    files.write_text(markdown, os.path.join(output_dir, REPORT_FILE))
    return result
