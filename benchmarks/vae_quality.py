"""VAE teacher quality: held-out ELBO, and FID/KID/classifier score of its prior samples.

    .venv/bin/python benchmarks/vae_quality.py --workdir=runs/bench_vae [--quick] [--num_samples=N]

Trains `gkd-train --flagfile=flags/fashion_mnist_vae.cfg` (or flags/quick_vae.cfg
with --quick) in <workdir>/<recipe> as a user would, reusing a complete run, then
reports
- the held-out negative ELBO, reconstruction and KL in nats per image on the
  10,000 test images (from the run's own `vae_eval.json`);
- FID, KID and classifier score of --num_samples prior samples, z ~ N(0, I),
  with the same evaluator as benchmarks/teacher_quality.py (the domain
  classifier's features, against the test split), and of as many real
  training images (the floor of those metrics);
- the training wall time (from the run that trained it).
Prints a table and writes `vae_quality.json` in --workdir.
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

from tf_gkd import rundir  # noqa: E402
from tf_gkd.data import datasets  # noqa: E402
from tf_gkd.evaluation import evaluate  # noqa: E402
from tf_gkd.networks import io as model_io  # noqa: E402

import runs as runs_lib  # noqa: E402  (benchmarks/runs.py)

flags.DEFINE_string("workdir", "runs/bench_vae", "Directory of the benchmark's runs.")
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data directory.")
flags.DEFINE_string("classifier_dir", "saved_models/classifiers", "Cache of the domain classifiers.")
flags.DEFINE_boolean("quick", False, "Use flags/quick_vae.cfg (≈1.5 min) instead of flags/fashion_mnist_vae.cfg.")
flags.DEFINE_integer("num_samples", 10_000, "Prior samples scored.", lower_bound=2)
FLAGS = flags.FLAGS

RECIPES = {"fashion_mnist_vae": "flags/fashion_mnist_vae.cfg", "quick_vae": "flags/quick_vae.cfg"}


def train_vae(workdir, flagfile):
    """Runs gkd-train as a user would; returns the wall time (None if the run is already complete)."""
    # vae_eval.json is written last.
    return runs_lib.timed_run("train", workdir, [f"--flagfile={flagfile}"], [rundir.VAE_EVAL_FILE], FLAGS.data_dir)


def main(argv):
    del argv
    recipe = "quick_vae" if FLAGS.quick else "fashion_mnist_vae"
    workdir = os.path.join(FLAGS.workdir, recipe)
    os.makedirs(FLAGS.workdir, exist_ok=True)
    results_path = os.path.join(FLAGS.workdir, "vae_quality.json")
    results = json.load(open(results_path)) if os.path.exists(results_path) else {}
    seconds = train_vae(workdir, RECIPES[recipe])
    if seconds is not None:
        results.setdefault(recipe, {})["train_seconds"] = round(seconds, 1)
    with open(os.path.join(workdir, rundir.CONFIG_FILE)) as f:
        config = json.load(f)
    with open(os.path.join(workdir, rundir.VAE_EVAL_FILE)) as f:
        held_out = json.load(f)

    spec = datasets.DataSpec("fashion_mnist", FLAGS.data_dir)
    train_images, _ = spec.load("train")
    test_images, _ = spec.load("test")
    evaluator = evaluate.load_evaluator(spec, FLAGS.classifier_dir)
    decoder = model_io.load_generator(os.path.join(workdir, rundir.DECODER_FILE))
    results.setdefault(recipe, {}).update(
        evaluator.evaluate(decoder, FLAGS.num_samples),
        **{key: held_out[key] for key in ("negative_elbo", "reconstruction", "kl")},
        train_steps=config["train_steps"],
        z_dim=config["z_dim"],
    )
    results["real train images"] = evaluator.score_images(datasets.to_float(train_images[: FLAGS.num_samples]).numpy())
    with open(results_path, "w") as f:
        json.dump(results, f, indent=2)

    print(
        f"\nFashion-MNIST VAE ({RECIPES[recipe]}: {config['train_steps']} steps, batch {config['batch_size']}, "
        f"z_dim {config['z_dim']}, {config['likelihood']} likelihood, beta {config['beta']})."
    )
    print(
        f"Held-out negative ELBO on the {held_out['num_images']} test images: {held_out['negative_elbo']:.2f} "
        f"nats per image (reconstruction {held_out['reconstruction']:.2f}, KL {held_out['kl']:.2f})."
    )
    print(
        f"{FLAGS.num_samples} samples vs the test split, domain classifier features "
        f"(test accuracy {evaluator.classifier.info['test_accuracy']:.4f}):"
    )
    print(f"{'model':26s} {'FID':>8s} {'KID':>8s} {'class. score':>12s} {'params':>9s} {'train s':>8s}")
    for name in (recipe, "real train images"):
        r = results[name]
        print(
            f"{name:26s} {r['fid']:8.2f} {r['kid']:8.3f} {r['classifier_score']:12.3f} "
            f"{r.get('params', float('nan')):9.0f} {r.get('train_seconds', float('nan')):8.1f}"
        )
    logging.info("Wrote %s", results_path)


if __name__ == "__main__":
    app.run(main)
