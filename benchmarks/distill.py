"""Distilled students against their teacher and against the same students trained from scratch, over seeds.

    .venv/bin/python benchmarks/distill.py --workdir=runs/bench_distill [--teacher=runs/quickstart/teacher]
        [--sizes=10x,20x,50x,100x] [--seeds=0,1,2] [--recipe='mimicry=--adversarial_weight=0 --distribution_weight=0']

For every size S and training seed, trains `gkd-distill --flagfile=flags/distill_S.cfg --seed=SEED`
(the student, with the flagfile's recipe), the same command with `--baseline` and the teachers'
GAN recipe (its twin trained from scratch: same architecture, steps, batch and R1 penalty, no
teacher), and
the student with every other --recipe's flags added. Each run has its own directory under
--workdir; complete runs are reused, so an interrupted benchmark resumes. Without --teacher, the
quickstart teacher (flags/gan_quickstart.cfg) is trained first.

Then one gkd-evaluate scores every run on the same latents into --workdir/report (report.md,
metrics.json, figures, and TensorBoard with the HParams view of every run's recipe and scores);
the runs of one entry over seeds are merged into mean ± std. The benchmark prints, per entry, FID
and recall (mean ± std over seeds) and their ratios to the teacher's, and whether each student
beats its scratch twin on average (mean FID below the twin's) and in every seed (its worst FID
below the twin's best); then each student against the targets (`TARGETS`: its mean FID at most
a multiple of the teacher's, at 20x also its recall at least 0.95 of the teacher's, and below its
twin's FID on average). It writes the table and the targets to --workdir/distill.json and the
size-vs-FID figure (every recipe's FID against its parameters, with error bars over seeds) to
--workdir/size_vs_fid.png.
"""

import json
import os
import subprocess
import sys

import matplotlib
from absl import app, flags, logging

import runs as runs_lib  # (benchmarks/runs.py)

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after choosing the backend)

from tf_gkd import rundir

flags.DEFINE_string("workdir", "runs/bench_distill", "Directory of the benchmark's runs.")
flags.DEFINE_string("teacher", None, "Teacher run directory (default: train flags/gan_quickstart.cfg in --workdir).")
flags.DEFINE_list("sizes", ["10x", "20x", "50x", "100x"], "Student sizes: flags/distill_<size>.cfg.")
flags.DEFINE_list("seeds", ["0"], "Training seeds (--seed) of every student and scratch twin.")
flags.DEFINE_multi_string(
    "recipe", [], "NAME=FLAGS: another student recipe, its gkd-distill flags separated by spaces (repeatable)."
)
flags.DEFINE_boolean("scratch", True, "Also train every size from scratch (the twins the students must beat).")
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data directory.")
flags.DEFINE_string("classifier_dir", "saved_models/classifiers", "Cache of the domain classifiers.")
flags.DEFINE_integer("num_samples", 10_000, "Samples scored per generator and run.")
FLAGS = flags.FLAGS

# Students from scratch train with the teachers' GAN recipe (flags/gan_quickstart.cfg), not the
# mimicry one of the distill flagfiles; they keep their student flagfile's R1 penalty (--r1_weight,
# --r1_interval), unlike the pipelines' baselines (flags/baseline_gan.cfg): a twin gets the same
# stabilised adversary as its student, only no teacher.
GAN_RECIPE = ["--g_learning_rate=8e-4", "--d_learning_rate=2e-4", "--beta_1=0.5", "--lr_decay=none"]
REPORT_DIR = "report"
# The quality targets per size: (max FID / teacher's, min recall / teacher's or None).
TARGETS = {"20x": (1.05, 0.95), "50x": (1.20, None), "100x": (1.5, None)}


def plan(teacher_dir):
    """[(entry name, run directory, gkd-distill flags)] of every run, and {student name: its twin's name}."""
    recipes = {"student": []}
    for spec in FLAGS.recipe:
        name, sep, args = spec.partition("=")
        if not sep or not name or name in recipes or name == "scratch":
            raise app.UsageError(f"--recipe must be NAME=FLAGS with a new NAME. Received: --recipe={spec!r}")
        recipes[name] = args.split()
    planned, twins = [], {}
    for size in FLAGS.sizes:
        common = [f"--flagfile=flags/distill_{size}.cfg", f"--teacher={os.path.abspath(teacher_dir)}"]
        kinds = {f"{recipe} {size}": args for recipe, args in recipes.items()}
        if FLAGS.scratch:
            kinds[f"scratch {size}"] = ["--baseline", *GAN_RECIPE]
            twins.update({name: f"scratch {size}" for name in kinds if not name.startswith("scratch")})
        for name, args in kinds.items():
            for seed in FLAGS.seeds:
                run_dir = os.path.join(FLAGS.workdir, f"{name.replace(' ', '_')}_seed{seed}")
                planned.append((name, run_dir, [*common, *args, f"--seed={seed}"]))
    return planned, twins


def summarize(metrics, twins):
    """{entry: FID and recall (mean, std, values), their ratios to the teacher's, params, beats its twin}."""
    entries = {e["name"]: e for e in metrics["entries"]}
    teacher = entries["teacher"]["quality"]
    table = {}
    for name, e in entries.items():
        fid, recall = e["quality"]["fid"], e["quality"]["recall"]
        row = {
            "params": e["cost"]["params"]["value"],
            "fid": {k: fid[k] for k in ("mean", "std", "values")},
            "recall": {k: recall[k] for k in ("mean", "std", "values")},
            "fid_vs_teacher": fid["mean"] / teacher["fid"]["mean"],
            "recall_vs_teacher": recall["mean"] / teacher["recall"]["mean"],
        }
        if name in twins and twins[name] in entries:
            twin = entries[twins[name]]["quality"]["fid"]
            row["beats_scratch_twin_on_average"] = fid["mean"] < twin["mean"]
            row["beats_scratch_twin_in_every_seed"] = max(fid["values"]) < min(twin["values"])
        table[name] = row
    return table


def targets_met(table):
    """{student entry: {target: met}}: FID and recall for the sizes in `TARGETS`, the twin for every size."""
    met = {}
    for name, r in table.items():
        recipe, _, size = name.rpartition(" ")
        if recipe != "student":
            continue
        checks = {}
        max_fid, min_recall = TARGETS.get(size, (None, None))
        if max_fid is not None:
            checks[f"FID at most {max_fid:g}x the teacher's"] = r["fid_vs_teacher"] <= max_fid
        if min_recall is not None:
            checks[f"recall at least {min_recall:g}x the teacher's"] = r["recall_vs_teacher"] >= min_recall
        if "beats_scratch_twin_on_average" in r:
            checks["FID below its scratch twin's on average"] = r["beats_scratch_twin_on_average"]
        if checks:
            met[name] = checks
    return met


def plot(table, path):
    """Writes the size-vs-FID figure: each recipe's FID (mean ± std over seeds, and each seed) against parameters."""
    series = {}
    for name, r in table.items():
        if name != "teacher":
            recipe, _, size = name.rpartition(" ")
            point = (r["params"], r["fid"]["mean"], r["fid"]["std"] or 0.0, size, tuple(r["fid"]["values"]))
            series.setdefault(recipe, []).append(point)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for recipe, points in sorted(series.items()):
        params, fid, std, sizes, values = zip(*sorted(points))
        label = {"student": "distilled (the flagfile's recipe)", "scratch": "from scratch (GAN, same steps)"}
        line = ax.errorbar(params, fid, yerr=std, marker="o", capsize=3, label=label.get(recipe, recipe))
        seeds = [(x, v) for x, run_values in zip(params, values) for v in run_values]  # Each seed: a bimodal
        ax.scatter(*zip(*seeds), s=10, color=line.lines[0].get_color(), alpha=0.5, zorder=3)  # outcome shows.
        for x, y, size in zip(params, fid, sizes):
            ax.annotate(size, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    teacher = table["teacher"]
    ax.axhline(
        teacher["fid"]["mean"],
        color="black",
        linestyle="--",
        label=f"teacher (FID {teacher['fid']['mean']:.2f}, {teacher['params']:,} params)",
    )
    ax.set_xscale("log")
    ax.set_yscale("log")  # Collapsed twins score far above the students.
    plain = matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    # Log scale's own ticks leave 10 to 20 unlabelled, where the teacher and the small students are.
    ax.yaxis.set_minor_locator(matplotlib.ticker.LogLocator(subs=(1.2, 1.4, 1.6, 2, 3, 4, 5, 6, 7, 8, 9)))
    ax.set_xticks(sorted({point[0] for points in series.values() for point in points}))
    ax.set_xticks([], minor=True)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:,.0f}"))
    ax.set_xlabel("student parameters")
    ax.set_ylabel("FID (domain classifier; lower is better)")
    seeds = max(len(r["fid"]["values"]) for r in table.values())
    spread = f"mean ± std over {seeds} training seeds" if seeds > 1 else "one training seed"
    ax.set_title(f"Students of the quickstart teacher: {spread}")
    ax.legend()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def _mean_std(summary, decimals):
    text = f"{summary['mean']:.{decimals}f}"
    return text + (f" ± {summary['std']:.{decimals}f}" if summary["std"] is not None else "")


def print_table(table):
    """Prints every entry's FID and recall, whether each student beats its twin, and the targets."""
    header = f"{'model':24s} {'params':>8s} {'FID':>15s} {'FID/T':>6s} {'recall':>15s} {'rec/T':>6s}"
    print(f"{header} {'beats twin: mean, every seed':>29s}")
    yes_no = {True: "yes", False: "NO"}
    for name, r in table.items():
        twin = ""
        if "beats_scratch_twin_on_average" in r:
            twin = f"{yes_no[r['beats_scratch_twin_on_average']]}, {yes_no[r['beats_scratch_twin_in_every_seed']]}"
        print(
            f"{name:24s} {r['params']:8d} {_mean_std(r['fid'], 2):>15s} {r['fid_vs_teacher']:6.2f} "
            f"{_mean_std(r['recall'], 3):>15s} {r['recall_vs_teacher']:6.2f} {twin:>29s}"
        )
    for name, checks in targets_met(table).items():
        for target, met in checks.items():
            print(f"{name}: {target}: {'met' if met else 'NOT met'}")


def main(argv):
    del argv
    os.makedirs(FLAGS.workdir, exist_ok=True)
    teacher_dir = FLAGS.teacher or os.path.join(FLAGS.workdir, "teacher")
    if not FLAGS.teacher:
        runs_lib.timed_run(
            "train", teacher_dir, ["--flagfile=flags/gan_quickstart.cfg"], rundir.GENERATOR_FILES, FLAGS.data_dir
        )
    planned, twins = plan(teacher_dir)
    for i, (name, run_dir, args) in enumerate(planned, 1):
        logging.info("Run %d/%d: %s in %s", i, len(planned), name, run_dir)
        runs_lib.timed_run("distill", run_dir, args, rundir.GENERATOR_FILES, FLAGS.data_dir)

    report_dir = os.path.join(FLAGS.workdir, REPORT_DIR)
    command = [
        sys.executable, "-c", "from tf_gkd.bin.evaluate import run; run()",
        f"--generator=teacher={teacher_dir}", *(f"--generator={name}={run_dir}" for name, run_dir, _ in planned),
        "--teacher=teacher", f"--output_dir={report_dir}", f"--classifier_dir={FLAGS.classifier_dir}",
        f"--num_samples={FLAGS.num_samples}", "--latency_batch_sizes=1",
    ]  # fmt: skip
    if FLAGS.data_dir:
        command.append(f"--data_dir={FLAGS.data_dir}")
    subprocess.run(command, check=True, cwd=runs_lib.REPO)
    with open(os.path.join(report_dir, "metrics.json")) as f:
        table = summarize(json.load(f), twins)
    with open(os.path.join(FLAGS.workdir, "distill.json"), "w") as f:
        json.dump({"entries": table, "targets_met": targets_met(table)}, f, indent=2)
    plot(table, os.path.join(FLAGS.workdir, "size_vs_fid.png"))

    print(f"\n{len(FLAGS.seeds)} training seed(s) per student and twin; report: {report_dir}/report.md")
    print_table(table)


if __name__ == "__main__":
    app.run(main)
