"""gkd-sample: a PNG grid of samples from a `.tflite` generator, with LiteRT alone.

    gkd-sample --tflite=saved_models/quickstart/model_int8.tflite --out=grid.png [--num=64 --seed=0]

The example client of an export: it imports NumPy, `ai_edge_litert` and
matplotlib (through `tf_gkd.export.runtime` and `tf_gkd.images`), never
TensorFlow, so an app developer can copy it as is. A file beside its
`export_report.json` is checked against the SHA-256 recorded there first.
"""

from absl import app, flags

from tf_gkd import contract, errors, images
from tf_gkd.export import runtime

flags.DEFINE_string("tflite", None, "A .tflite generator written by gkd-export.")
flags.DEFINE_string("out", None, "PNG file to write the grid to.")
flags.DEFINE_integer("num", 64, "Number of samples in the grid.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of the latents z ~ N(0, I).")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.out.lower().endswith(".png"):
        raise app.UsageError(f"--out must be a .png file. Received: --out={FLAGS.out}")
    model = runtime.TFLiteGenerator(FLAGS.tflite)
    samples = model(contract.latents(FLAGS.num, model.z_dim, FLAGS.seed))
    images.save_grid_png(samples, FLAGS.out)
    print(f"Wrote {FLAGS.num} samples of {FLAGS.tflite} to {FLAGS.out}")


def run():
    flags.mark_flags_as_required(["tflite", "out"])
    app.run(errors.with_messages(main))


if __name__ == "__main__":
    run()
