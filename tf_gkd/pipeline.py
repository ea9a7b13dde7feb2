"""The whole chain as resumable stages: teacher → students and baselines → export → report.

A pipeline directory holds one directory per stage:
    teacher/            gkd-train run of the teacher
    students/<name>/    gkd-distill run of each student (students/<name>_seed<s>/: its other training seeds)
    baselines/<name>/   gkd-distill --baseline run: the student's architecture trained from scratch
    export/<name>/      gkd-export of the chosen student (SavedModel, TFLite, export_report.json)
    report/             gkd-evaluate of all of them (metrics.json, report.md, figures)
Each stage runs its binary in a child process, exactly the command it prints,
so any stage can be re-run by hand. A stage is done when its final outputs
exist: every binary writes those last and atomically, so a killed stage is
never mistaken for a done one. The export and the report are also redone when
their arguments change (say, more students or training seeds): the pipeline
stamps each with the arguments it ran with (`STAMP_FILE`). Re-running the
pipeline skips done stages and resumes an interrupted training stage from its
last checkpoint.
"""

import dataclasses
import os
import subprocess
import sys
import time

from tf_gkd import children, errors, files, rundir

TEACHER_DIR = "teacher"
STUDENTS_DIR = "students"
BASELINES_DIR = "baselines"
EXPORT_DIR = "export"
REPORT_DIR = "report"
REPORT_FILES = ("metrics.json", "report.md")
EXPORT_REPORT = "export_report.json"
STAMP_FILE = "pipeline_args.txt"  # In an export or report directory: the arguments it was made with.

# The console script of each binary, and where its entry point lives.
BINARIES = {
    "gkd-train": "tf_gkd.bin.train:run",
    "gkd-distill": "tf_gkd.bin.distill:run",
    "gkd-export": "tf_gkd.bin.export:run",
    "gkd-evaluate": "tf_gkd.bin.evaluate:run",
}


class StageError(errors.Error, RuntimeError):
    """A stage's binary failed; the message names the stage and its command."""


@dataclasses.dataclass(frozen=True)
class Stage:
    """One step of the pipeline: a binary, its arguments, and what it leaves behind when done."""

    name: str
    binary: str
    args: tuple
    outputs: tuple  # Paths; the stage is done when all exist.
    run_dir: str | None = None  # A training stage's run directory (generator file: see `done`).
    stamp: str | None = None  # Where a successful run records its arguments; done only if they match.

    def done(self):
        if self.run_dir is not None:
            # gkd-train itself refuses a run directory whose config.json differs from its flags.
            return any(os.path.exists(os.path.join(self.run_dir, f)) for f in rundir.GENERATOR_FILES)
        if not all(os.path.exists(p) for p in self.outputs):
            return False
        if self.stamp is None:
            return True
        try:
            with open(self.stamp) as f:
                return f.read() == self._stamp_text()
        except OSError:
            return False

    def _stamp_text(self):
        return "\n".join(self.args) + "\n"

    def write_stamp(self):
        """Records the arguments of a successful run (nothing for a training stage)."""
        if self.stamp is not None:
            files.write_text(self._stamp_text(), self.stamp)

    def describe_outputs(self):
        if self.run_dir is not None:
            return f"{self.run_dir}/{{{','.join(rundir.GENERATOR_FILES)}}} (one of)"
        return ", ".join(self.outputs)

    def command(self):
        """The command line: the console script beside this Python if installed, else `python -c`."""
        script = os.path.join(os.path.dirname(sys.executable), self.binary)
        if os.path.exists(script):
            return [script, *self.args]
        module, function = BINARIES[self.binary].split(":")
        return [sys.executable, "-c", f"from {module} import {function}; {function}()", *self.args]


def parse_named(specs, what):
    """[(name, path)] of `NAME=PATH` entries; a bare PATH is named after its file without the extension.

    Raises:
      ValueError: two entries share a name.
    """
    named = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            path = spec
            name = os.path.splitext(os.path.basename(spec))[0]
        named.append((name, path))
    names = [n for n, _ in named]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"Two {what} are named {duplicates}: label them NAME=PATH.")
    return named


def plan(
    workdir,
    teacher_flagfile,
    students,
    baseline_flagfile=None,
    export=None,
    train_args=(),
    data_args=(),
    classifier_args=(),
    evaluate_args=(),
    export_args=(),
    train_seeds=(),
):
    """The stages of a pipeline in `workdir`, in order.

    Args:
      teacher_flagfile: gkd-train flagfile of the teacher.
      students: [(name, gkd-distill flagfile)].
      baseline_flagfile: gkd-distill --baseline flagfile, read after each
        student's own; None trains no baselines.
      export: name of the student to export, or None.
      train_args: extra flags of every training stage (e.g. --strategy).
      data_args, classifier_args: data and classifier-cache flags of the stages that take them.
      evaluate_args, export_args: extra flags of gkd-evaluate and gkd-export.
      train_seeds: seeds to train every student and baseline with (`--seed`),
        one run each, reported as one entry (mean ± std over the runs); the
        first seed's runs are `<name>`, the others' `<name>_seed<s>`. Empty:
        one run each, with the flagfiles' seed.

    Raises:
      ValueError: `export` names no student, or a seed is repeated.
    """
    names = [name for name, _ in students]
    if export is not None and export not in names:
        raise ValueError(f"--export={export!r} names no student; the students are {names}.")
    if len(set(train_seeds)) != len(train_seeds):
        raise ValueError(f"A training seed is repeated: {list(train_seeds)}.")
    # (run directory suffix, seed flags) of each training run of a student or baseline.
    replicas = (
        [("", ())]
        if not train_seeds
        else [("" if i == 0 else f"_seed{seed}", (f"--seed={seed}",)) for i, seed in enumerate(train_seeds)]
    )
    teacher_dir = os.path.join(workdir, TEACHER_DIR)
    stages = [
        Stage(
            "teacher",
            "gkd-train",
            (f"--flagfile={teacher_flagfile}", f"--workdir={teacher_dir}", *data_args, *train_args),
            (),
            run_dir=teacher_dir,
        )
    ]
    runs = [("teacher", teacher_dir)]
    # (stage kind, directory, report suffix, gkd-distill flags before / after the student's flagfile).
    kinds = [("student", STUDENTS_DIR, "", (), ())]
    if baseline_flagfile:
        kinds.append(("baseline", BASELINES_DIR, "_scratch", ("--baseline",), (f"--flagfile={baseline_flagfile}",)))
    for kind, directory, report_suffix, before, after in kinds:
        for name, flagfile in students:
            for suffix, seed_args in replicas:
                run_dir = os.path.join(workdir, directory, name + suffix)
                args = (
                    f"--teacher={teacher_dir}",
                    *before,
                    f"--flagfile={flagfile}",
                    *after,
                    *seed_args,
                    f"--workdir={run_dir}",
                    *data_args,
                    *train_args,
                )
                stages.append(Stage(f"{kind} {name + suffix}", "gkd-distill", args, (), run_dir=run_dir))
                runs.append((name + report_suffix, run_dir))
    exports_dir = os.path.join(workdir, EXPORT_DIR)
    if export is not None:
        export_dir = os.path.join(exports_dir, export)
        args = (
            f"--generator={os.path.join(workdir, STUDENTS_DIR, export)}",
            f"--name={export}",
            f"--export_dir={export_dir}",
            "--overwrite",
            *data_args,
            *classifier_args,
            *export_args,
        )  # --overwrite: the stage only runs when its export is missing or was made with other arguments.
        stages.append(
            Stage(
                f"export {export}",
                "gkd-export",
                args,
                (os.path.join(export_dir, EXPORT_REPORT),),
                stamp=os.path.join(export_dir, STAMP_FILE),
            )
        )
    report_dir = os.path.join(workdir, REPORT_DIR)
    args = (
        *(f"--generator={name}={run_dir}" for name, run_dir in runs),
        "--teacher=teacher",
        f"--output_dir={report_dir}",
        f"--exports_dir={exports_dir}",
        *data_args,
        *classifier_args,
        *evaluate_args,
    )
    outputs = tuple(os.path.join(report_dir, f) for f in REPORT_FILES)
    stages.append(Stage("report", "gkd-evaluate", args, outputs, stamp=os.path.join(report_dir, STAMP_FILE)))
    return stages


def run_stage(stage, log=print):
    """Runs `stage`'s command and stamps it; returns its wall time in seconds.

    Raises:
      StageError: the command exited non-zero (its own error is above, on stderr).
    """
    command = stage.command()
    log(f"[{stage.name}] {' '.join(command)}")
    start = time.perf_counter()
    result = subprocess.run(command, preexec_fn=children.DIE_WITH_PARENT)
    if result.returncode != 0:
        raise StageError(
            f"Stage {stage.name!r} failed (exit status {result.returncode}); its error is above. "
            f"Fix it and re-run the pipeline: finished stages are kept. Command: {' '.join(command)}"
        )
    stage.write_stamp()
    return time.perf_counter() - start
