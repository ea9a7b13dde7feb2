"""gkd-distill: distil a teacher run into a small student generator, or train that student from scratch.

    gkd-distill --teacher=runs/teacher --workdir=runs/student --flagfile=flags/distill_20x.cfg
    gkd-distill --teacher=runs/teacher --workdir=runs/baseline --flagfile=flags/distill_20x.cfg --baseline

The student is sized by --student_kind, --student_width and --student_depth
(the generator_* options of `TrainConfig`; default: the 20x student of the
default teacher, flags/distill_20x.cfg) and takes the teacher's latent size;
the dataset is the teacher's unless --dataset says otherwise. --baseline
trains the same student from scratch as a plain GAN instead, the reference
distillation must beat. Re-running on the same --workdir resumes from its
last checkpoint. docs/flags.md lists every flag.
"""

from absl import app, flags

from tf_gkd import errors
from tf_gkd.bin import common
from tf_gkd.runs import teacher as teacher_lib

flags.DEFINE_string("workdir", None, "Run directory: config, checkpoints, TensorBoard, samples, models.")
common.define_config_flags(
    names=[name for name in common.CONFIG_FIELDS if name != "model"],
    defaults={"generator_kind": "conv4", "generator_width": 0.25},
)
for _role in ("kind", "width", "depth"):
    flags.DEFINE_alias(f"student_{_role}", f"generator_{_role}")
flags.DEFINE_boolean(
    "baseline", False, "Train the student architecture from scratch as a plain GAN (no teacher), for comparison."
)
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    overrides = {"model": "gan" if FLAGS.baseline else "distill"}
    if not FLAGS["dataset"].present:
        overrides["dataset"] = teacher_lib.read_config(FLAGS.teacher).get("dataset")
    common.train(common.config_from_flags(**overrides), FLAGS.workdir)


def run():
    flags.mark_flags_as_required(["workdir", "teacher"])
    common.help_from(__name__)
    app.run(errors.with_messages(main))


if __name__ == "__main__":
    run()
