"""Distilled students against their teacher and against the same students trained from scratch.

    .venv/bin/python benchmarks/distill.py --workdir=runs/bench_distill [--teacher=runs/quickstart]
        [--sizes=10x,20x,50x] [--lambdas=0,0.01,0.1]

For every size S, runs `gkd-distill --flagfile=flags/distill_S.cfg` (the student) and, for the
--baseline_sizes, the same command with `--baseline` (the same architecture, steps and batch
trained as a plain GAN with the teachers' GAN recipe, no teacher), each in its own run
directory under --workdir (complete runs are reused). `--lambdas`
adds runs of the 20x student with other adversarial weights λ. Without --teacher, the quickstart
teacher is trained first (flags/gan_quickstart.cfg). Every generator is then scored by the same
evaluator (domain-classifier features, --num_samples samples against the test split: FID, KID,
classifier score) and for fidelity to the teacher (PSNR on the same 2,000 latents).
Prints a table and writes `distill.json` in --workdir.
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import runs as runs_lib  # noqa: E402  (benchmarks/runs.py)
from absl import app, flags, logging  # noqa: E402

from tf_gkd import rundir  # noqa: E402
from tf_gkd.evaluation import evaluate  # noqa: E402
from tf_gkd.losses import distill as distill_losses  # noqa: E402
from tf_gkd.networks import io as model_io  # noqa: E402

flags.DEFINE_string("workdir", "runs/bench_distill", "Directory of the benchmark's runs.")
flags.DEFINE_string("teacher", None, "Teacher run directory (default: train flags/gan_quickstart.cfg in --workdir).")
flags.DEFINE_list("sizes", ["10x", "20x", "50x"], "Student sizes: flags/distill_<size>.cfg.")
flags.DEFINE_list("lambdas", [], "Extra adversarial weights λ to try on the 20x student.")
flags.DEFINE_list("baseline_sizes", ["10x", "20x", "50x"], "Sizes whose student is also trained from scratch.")
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data directory.")
flags.DEFINE_string("classifier_dir", "saved_models/classifiers", "Cache of the domain classifiers.")
flags.DEFINE_integer("num_samples", 10_000, "Samples scored per generator.")
FLAGS = flags.FLAGS

FIDELITY_LATENTS = 2_000
# Students from scratch train with the teachers' GAN recipe (flags/gan_quickstart.cfg), not the
# mimicry one of the distill flagfiles.
GAN_RECIPE = ["--g_learning_rate=8e-4", "--d_learning_rate=2e-4", "--beta_1=0.5", "--lr_decay=none"]


def run(binary, workdir, *args):
    return runs_lib.timed_run(binary, workdir, args, rundir.GENERATOR_FILES, FLAGS.data_dir)


def main(argv):
    del argv
    os.makedirs(FLAGS.workdir, exist_ok=True)
    results_path = os.path.join(FLAGS.workdir, "distill.json")
    results = json.load(open(results_path)) if os.path.exists(results_path) else {}

    def timed(name, seconds):
        if seconds is not None:
            results.setdefault(name, {})["train_seconds"] = round(seconds, 1)

    teacher_dir = FLAGS.teacher or os.path.join(FLAGS.workdir, "teacher")
    if not FLAGS.teacher:
        timed("teacher", run("train", teacher_dir, "--flagfile=flags/gan_quickstart.cfg"))
    runs = {"teacher": teacher_dir}
    for size in FLAGS.sizes:
        common = [f"--flagfile=flags/distill_{size}.cfg", f"--teacher={os.path.abspath(teacher_dir)}"]
        runs[f"student {size}"] = os.path.join(FLAGS.workdir, f"student_{size}")
        timed(f"student {size}", run("distill", runs[f"student {size}"], *common))
        if size in FLAGS.baseline_sizes:
            runs[f"scratch {size}"] = os.path.join(FLAGS.workdir, f"scratch_{size}")
            timed(f"scratch {size}", run("distill", runs[f"scratch {size}"], *common, "--baseline", *GAN_RECIPE))
    for lam in FLAGS.lambdas:
        name = f"student 20x λ={lam}"
        runs[name] = os.path.join(FLAGS.workdir, f"student_20x_lambda_{lam}")
        args = ["--flagfile=flags/distill_20x.cfg", f"--teacher={os.path.abspath(teacher_dir)}"]
        timed(name, run("distill", runs[name], *args, f"--adversarial_weight={lam}"))

    evaluator = evaluate.load_evaluator("fashion_mnist", FLAGS.classifier_dir, FLAGS.data_dir)
    teacher = model_io.load_generator(teacher_dir)
    # The same seed and z_dim give every generator the same latents.
    teacher_images = evaluate.sample(teacher, FIDELITY_LATENTS, seed=1234, progress=False)
    for name, path in runs.items():
        generator = model_io.load_generator(path)
        with open(os.path.join(path, rundir.CONFIG_FILE)) as f:
            config = json.load(f)
        score = evaluator.evaluate(generator, FLAGS.num_samples)
        images = evaluate.sample(generator, FIDELITY_LATENTS, seed=1234, progress=False)
        score["psnr_vs_teacher_db"] = float(np.mean(distill_losses.psnr(images, teacher_images)))
        score["train_steps"] = config["train_steps"]
        score["adversarial_weight"] = config.get("adversarial_weight") if config["model"] == "distill" else None
        results.setdefault(name, {}).update(score)
    results = {name: results[name] for name in runs}
    with open(results_path, "w") as f:
        json.dump(results, f, indent=2)

    t = results["teacher"]
    print(
        f"\nFashion-MNIST, {FLAGS.num_samples} samples vs the test split, domain classifier features "
        f"(test accuracy {evaluator.classifier.info['test_accuracy']:.4f}); "
        f"PSNR vs the teacher on {FIDELITY_LATENTS} latents"
    )
    print(
        f"{'model':22s} {'params':>8s} {'smaller':>8s} {'FID':>7s} {'FID/T':>6s} {'KID':>7s} {'CS':>6s} "
        f"{'PSNR dB':>8s} {'λ':>5s} {'steps':>6s} {'train s':>8s}"
    )
    for name, r in results.items():
        lam = "" if r["adversarial_weight"] is None else f"{r['adversarial_weight']:g}"
        psnr = "—" if name == "teacher" else f"{r['psnr_vs_teacher_db']:.2f}"
        print(
            f"{name:22s} {r['params']:8d} {t['params'] / r['params']:7.1f}x {r['fid']:7.2f} "
            f"{r['fid'] / t['fid']:6.2f} {r['kid']:7.3f} {r['classifier_score']:6.2f} {psnr:>8s} {lam:>5s} "
            f"{r['train_steps']:6d} {r.get('train_seconds', float('nan')):8.1f}"
        )
    logging.info("Wrote %s", results_path)


if __name__ == "__main__":
    app.run(main)
