"""gkd-pipeline: dataset → teacher → students and from-scratch baselines → TFLite export → report.

    gkd-pipeline --flagfile=flags/quickstart.cfg --workdir=runs/quickstart
    gkd-pipeline --flagfile=flags/quickstart.cfg --workdir=runs/quickstart --dry_run

Runs gkd-train (teacher), gkd-distill (each student, and with --baseline each
student's architecture from scratch), gkd-export (the --export student) and
gkd-evaluate (all of them, into <workdir>/report), each as a child process
whose command is printed. Stages whose outputs exist are skipped; an
interrupted training stage resumes from its last checkpoint, so re-running the
same command after a crash or a kill finishes the job. --dry_run prints the
stages, their outputs and whether each is done. Exits non-zero when a stage
fails, keeping every finished stage.
"""

import os

from absl import app, flags, logging

from tf_gkd import errors, files, pipeline
from tf_gkd.bin import common, evaluator_flags

flags.DEFINE_string("workdir", None, "Directory of the pipeline: one subdirectory per stage.")
flags.DEFINE_string("teacher_flagfile", "flags/gan_quickstart.cfg", "gkd-train flagfile of the teacher.")
flags.DEFINE_list(
    "students",
    ["20x=flags/distill_20x.cfg"],
    "gkd-distill flagfiles of the students, as NAME=FLAGFILE (a bare FLAGFILE is named after its file).",
)
flags.DEFINE_string(
    "baseline_flagfile",
    "flags/baseline_gan.cfg",
    "gkd-distill --baseline flagfile (the from-scratch recipe), read after each student's own; empty: no baselines.",
)
flags.DEFINE_string("export", "20x", "Name of the student to export for mobile; empty: no export.")
flags.DEFINE_list(
    "train_seeds",
    [],
    "Train every student and baseline once per seed (--seed); the report gives mean ± std over the runs. "
    "Empty: one run each, with the flagfiles' seed.",
)
flags.DEFINE_multi_string(
    "train_args", [], "A flag for every training stage (repeatable), e.g. --train_args=--mixed_precision=off."
)
flags.DEFINE_multi_string("evaluate_args", [], "A gkd-evaluate flag (repeatable), e.g. --evaluate_args=--seeds=0,1,2.")
flags.DEFINE_multi_string("export_args", [], "A gkd-export flag (repeatable), e.g. --export_args=--skip_fid.")
common.define_data_flags("The dataset of every stage (overriding the stage flagfiles').")
evaluator_flags.define_classifier_dir_flag()
flags.DEFINE_boolean("dry_run", False, "Print the stages, their outputs and whether each is done; run nothing.")
FLAGS = flags.FLAGS


def _stages():
    data_args = [f"--dataset={FLAGS.dataset}"]
    names = ("image_size", "data_dir", "raw_data_dir")
    data_args += [f"--{name}={FLAGS[name].value}" for name in names if FLAGS[name].value is not None]
    data_args += [f"--{name}" for name in ("grayscale", "download") if FLAGS[name].value]
    try:
        students = pipeline.parse_named(FLAGS.students, "students")
        flagfiles = [("teacher", FLAGS.teacher_flagfile), *students]
        if FLAGS.baseline_flagfile:
            flagfiles.append(("baseline", FLAGS.baseline_flagfile))
        for name, flagfile in flagfiles:
            if not os.path.isfile(flagfile):
                raise ValueError(
                    f"The flagfile of {name}, {flagfile!r}, does not exist (paths are relative to {os.getcwd()})."
                )
        return pipeline.plan(
            FLAGS.workdir,
            FLAGS.teacher_flagfile,
            students,
            baseline_flagfile=FLAGS.baseline_flagfile or None,
            export=FLAGS.export or None,
            train_args=FLAGS.train_args,
            data_args=data_args,
            classifier_args=[f"--classifier_dir={FLAGS.classifier_dir}"],
            evaluate_args=FLAGS.evaluate_args,
            export_args=FLAGS.export_args,
            train_seeds=common.int_list("train_seeds", 0, allow_empty=True),
        )
    except ValueError as e:
        raise app.UsageError(str(e)) from None


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    stages = _stages()
    if FLAGS.dry_run:
        for i, stage in enumerate(stages, 1):
            print(f"{i}. {stage.name:16s} {'done' if stage.done() else 'to do'}")
            print(f"   outputs: {stage.describe_outputs()}")
            print(f"   command: {' '.join(stage.command())}")
        return
    times = {}
    with files.locked(files.directory_lock(FLAGS.workdir), f"Pipeline directory {FLAGS.workdir}"):
        for i, stage in enumerate(stages, 1):
            if stage.done():
                logging.info("Stage %d/%d %s: done, skipped.", i, len(stages), stage.name)
                continue
            logging.info("Stage %d/%d %s.", i, len(stages), stage.name)
            times[stage.name] = pipeline.run_stage(stage, log=lambda line: print(line, flush=True))
    print("\nStage wall times (this invocation):")
    for name, seconds in times.items():
        print(f"  {name:16s} {seconds / 60:6.1f} min")
    print(f"  {'total':16s} {sum(times.values()) / 60:6.1f} min")
    report = os.path.join(FLAGS.workdir, pipeline.REPORT_DIR, "report.md")
    print(f"\nReport: {report}")
    if FLAGS.export:
        print(f"Exported student: {os.path.join(FLAGS.workdir, pipeline.EXPORT_DIR, FLAGS.export)}")


def run():
    flags.mark_flag_as_required("workdir")
    common.help_from(__name__)
    app.run(errors.with_messages(main))


if __name__ == "__main__":
    run()
