"""gkd-train: train a teacher (a GAN or a VAE) in a run directory.

    gkd-train --model=gan --workdir=runs/teacher --flagfile=flags/gan_quickstart.cfg
    gkd-train --model=vae --workdir=runs/vae --flagfile=flags/fashion_mnist_vae.cfg

Re-running on the same --workdir resumes from its last checkpoint. Every
training option is a field of `tf_gkd.runs.config.TrainConfig`, which gives
the flags below their help and bounds (docs/flags.md lists them all).
"""

from absl import app, flags

from tf_gkd import errors
from tf_gkd.bin import common

flags.DEFINE_string("workdir", None, "Run directory: config, checkpoints, TensorBoard, samples, models.")
common.define_config_flags()
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    common.train(common.config_from_flags(), FLAGS.workdir)


def run():
    flags.mark_flag_as_required("workdir")
    common.help_from(__name__)
    app.run(errors.with_messages(main))


if __name__ == "__main__":
    run()
