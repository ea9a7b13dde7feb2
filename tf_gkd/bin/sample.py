"""gkd-sample: a PNG grid of samples from a `.tflite` generator, with LiteRT alone.

    gkd-sample --tflite=saved_models/quickstart/model_int8.tflite --out=grid.png [--num=64 --seed=0]

A class-conditional file draws the class `--label=K`, or with `--label=all`
(the default) a grid with one row per class.

The example client of an export: it imports NumPy, `ai_edge_litert` and
matplotlib (through `tf_gkd.export.runtime` and `tf_gkd.images`), never
TensorFlow, so an app developer can copy it as is. A file beside its
`export_report.json` is checked against the SHA-256 recorded there first.
"""

import numpy as np
from absl import app, flags

from tf_gkd import contract, errors, images
from tf_gkd.export import runtime

flags.DEFINE_string("tflite", None, "A .tflite generator written by gkd-export.")
flags.DEFINE_string("out", None, "PNG file to write the grid to.")
flags.DEFINE_integer("num", 64, "Number of samples in the grid.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of the latents z ~ N(0, I).")
flags.DEFINE_string(
    "label",
    "all",
    "Class-conditional files: the class to draw (an integer K in [0, classes)), or all: one row per class, --num "
    "samples each.",
)
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.out.lower().endswith(".png"):
        raise app.UsageError(f"--out must be a .png file. Received: --out={FLAGS.out}")
    model = runtime.TFLiteGenerator(FLAGS.tflite)
    k = model.num_classes
    z = contract.latents(FLAGS.num, model.z_dim, FLAGS.seed)
    if not k:
        if FLAGS["label"].present:
            raise app.UsageError(f"{FLAGS.tflite} is unconditional: drop --label.")
        samples, cols, what = model.generate(z), None, ""
    else:
        if FLAGS.label == "all":
            classes, cols = list(range(k)), FLAGS.num
        elif FLAGS.label.isdigit() and int(FLAGS.label) < k:
            classes, cols = [int(FLAGS.label)], None
        else:
            raise app.UsageError(
                f"--label must be all or a class in [0, {k}) ({FLAGS.tflite} has {k} classes). "
                f"Received: --label={FLAGS.label}"
            )
        # Each row (class) draws the same latents: the same z, asked for another class.
        samples = model.generate(np.tile(z, (len(classes), 1)), np.repeat(classes, FLAGS.num))
        what = f" (classes {', '.join(map(str, classes))})"
    images.save_grid_png(samples, FLAGS.out, cols=cols)
    print(f"Wrote {len(samples)} samples of {FLAGS.tflite}{what} to {FLAGS.out}")


def run():
    flags.mark_flags_as_required(["tflite", "out"])
    app.run(errors.with_messages(main))


if __name__ == "__main__":
    run()
