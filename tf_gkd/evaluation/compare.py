"""A teacher and its students side by side: quality, fidelity to the teacher and cost, on the same latents.

Every entry (a generator file or a run directory) is scored by one
`Evaluator` on the same latents for each seed: FID, KID, classifier score,
precision and recall against the real split; PSNR and SSIM against the
teacher's images of the same z; parameters, multiply-accumulates, file size
and latency (`cost`). A run directory's `config.json` gives its role: a
gkd-train GAN or VAE run is a `teacher`, a gkd-distill run a `student`, a
gkd-distill `--baseline` run (a GAN run that names a teacher) a `baseline`; a
bare `.keras` file is a `generator`. An entry that cannot be loaded or scored
is kept with its error, and the others are still scored.
`tf_gkd.evaluation.report` writes the result out.
"""

import dataclasses
import datetime
import glob
import importlib.metadata
import json
import os

import keras
import numpy as np
import tensorflow as tf
import tqdm
from absl import logging

from tf_gkd import contract, rundir
from tf_gkd.evaluation import cost, evaluate, metrics
from tf_gkd.networks import io as model_io

# What a class-conditional generator has besides (`evaluate.Evaluator.score_images`).
CLASS_QUALITY = ("label_accuracy", "fid_class_mean", "fid_class_worst")
QUALITY = ("fid", "kid", "classifier_score", "precision", "recall") + CLASS_QUALITY
FIDELITY = ("psnr", "ssim")
UNITS = {
    "fid": "Fréchet distance of domain-classifier features (lower is better)",
    "kid": "MMD² of domain-classifier features, kernel (x·y/d + 1)³ (lower is better)",
    "classifier_score": "exp(E KL(p(y|x) ‖ p(y))), from 1 to the number of classes (higher is better)",
    "precision": "fraction of generated samples inside the real k-NN manifold (higher is better)",
    "recall": "fraction of real samples inside the generated k-NN manifold (higher is better)",
    "label_accuracy": "class-conditional: fraction of samples the domain classifier sees as the class asked for",
    "fid_class_mean": "class-conditional: FID of each class's samples against its real images, mean over classes",
    "fid_class_worst": "class-conditional: the largest of the per-class FIDs",
    "psnr": "dB, against the teacher's image of the same z (higher is closer)",
    "ssim": "structural similarity to the teacher's image of the same z, 1 = identical",
    "params": "parameters",
    "macs": "multiply-accumulates per image",
    "keras_bytes": "bytes (the .keras file)",
    "latency": "milliseconds per image",
}
# Latents per row of the side-by-side sample grid (the first ones of the first seed).
GRID_LATENTS = 12
TRAINING_CURVE_PREFIX = "train/"


@dataclasses.dataclass
class Entry:
    """One generator of the comparison and everything measured on it.

    `quality` and `fidelity` map each metric to its values, one per seed (run
    by run, for an entry of several training runs); `cost` holds `params`,
    `macs`, `keras_bytes` and `keras_latency_ms_per_image` ({`batch_<b>`: ms})
    of its first run; `tflite` is read from its gkd-export directory, if any.
    `runs` lists the paths of the training runs merged into it (`merge_runs`);
    `config` is its run's `config.json` (None for a bare generator file).
    `error` is set when it could not be loaded or scored.
    """

    name: str
    path: str
    role: str = "generator"
    file: str | None = None
    run_dir: str | None = None
    generator: keras.Model | None = None
    error: str | None = None
    quality: dict = dataclasses.field(default_factory=dict)
    fidelity: dict = dataclasses.field(default_factory=dict)
    cost: dict = dataclasses.field(default_factory=dict)
    tflite: dict | None = None
    tflite_note: str | None = None
    notes: list = dataclasses.field(default_factory=list)
    grid: np.ndarray | None = None
    curves: dict = dataclasses.field(default_factory=dict)
    runs: list = dataclasses.field(default_factory=list)
    config: dict | None = None

    @property
    def ok(self):
        return self.error is None


@dataclasses.dataclass
class Comparison:
    """The entries (in the order given), the teacher among them (or None) and the measurement settings."""

    entries: list
    teacher: Entry | None
    settings: dict


def parse_spec(spec):
    """(name, path) of an entry given as `NAME=PATH` or `PATH`.

    The default name is the run directory's name, also for a run's own
    generator file (`runs/s20/student.keras` → `s20`), else the file's name
    without `.keras`.
    """
    name, sep, path = spec.partition("=")
    if sep and name and os.sep not in name:
        return name, path
    path = spec
    stem = os.path.splitext(os.path.basename(os.path.normpath(path)))[0]
    if not os.path.isdir(path) and os.path.basename(path) in rundir.GENERATOR_FILES:
        stem = os.path.basename(os.path.dirname(os.path.abspath(path)))
    return stem, path


def run_role(config):
    """The role of a run from its `config.json` (a dict): teacher, student or baseline.

    gkd-distill writes `model: distill` for a student; with `--baseline` it
    trains a plain GAN (`model: gan`) but still records the `teacher` it was
    given, which no gkd-train teacher run has.
    """
    if config.get("model") == "distill":
        return "student"
    return "baseline" if config.get("teacher") else "teacher"


def _run_dir_of(path):
    """The run directory holding `path` (itself, or a generator file's directory), if it has a config.json."""
    directory = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    return directory if os.path.exists(os.path.join(directory, rundir.CONFIG_FILE)) else None


def load_entry(name, path, role=None):
    """An `Entry` for the generator at `path`; a path that is not a generator gives an entry with its `error`."""
    entry = Entry(name=name, path=path)
    try:
        entry.file = model_io.generator_file(path)
        entry.generator = model_io.load_generator(path)
    except model_io.GeneratorLoadError as e:
        entry.error = str(e)
        logging.error("Entry %r skipped, listed as failed: %s", name, e)
        return entry
    entry.run_dir = _run_dir_of(path)
    entry.role = role or "generator"
    if entry.run_dir and role is None:
        config_path = os.path.join(entry.run_dir, rundir.CONFIG_FILE)
        try:
            with open(config_path) as f:
                entry.config = json.load(f)
            entry.role = run_role(entry.config)
        except (OSError, ValueError) as e:
            entry.notes.append(f"role unknown: {config_path} cannot be read ({e})")
    if entry.run_dir:
        entry.curves = read_training_curves(os.path.join(entry.run_dir, rundir.TENSORBOARD_DIR))
    return entry


def load_entries(specs, teacher=None):
    """Entries of `specs` (`NAME=PATH` or `PATH` each) and the teacher among them.

    Args:
      specs: the generators to compare, in report order. Several paths under
        one name are training runs of one configuration (other seeds): each is
        scored, and `compare` merges them into one entry.
      teacher: `NAME=PATH`, `PATH` or the name of an entry: the reference of
        fidelity. A path that is no entry's is loaded and put first. None: the
        first entry whose run is a teacher run, if any.

    Returns:
      (entries, teacher entry or None).

    Raises:
      ValueError: several paths have one name and the name is the teacher's,
        or one path has several names.
    """
    parsed = [parse_spec(spec) for spec in specs]
    names = [name for name, _ in parsed]
    paths = [os.path.abspath(path) for _, path in parsed]
    repeated = sorted({path for path in paths if paths.count(path) > 1})
    if repeated:
        raise ValueError(f"{repeated} given more than once: pass each generator once.")
    entries = [load_entry(name, path) for name, path in parsed]
    entries, found = _find_teacher(entries, names, teacher)
    if found is not None and names.count(found.name) > 1:
        raise ValueError(f"The teacher {found.name!r} names several runs: the teacher is one generator.")
    return entries, found


def _find_teacher(entries, names, teacher):
    if teacher is None:
        return entries, next((e for e in entries if e.ok and e.role == "teacher"), None)
    name, path = parse_spec(teacher)
    for entry in entries:
        if teacher == entry.name or os.path.abspath(path) == os.path.abspath(entry.path):
            entry.role = "teacher"
            return entries, entry
    if name in names:
        raise ValueError(f"--teacher {teacher} is not the entry named {name!r}: label one of them.")
    entry = load_entry(name, path, role="teacher")
    return [entry] + entries, entry


def read_training_curves(logdir, prefix=TRAINING_CURVE_PREFIX):
    """{tag: ([steps], [values])} of the scalars under `prefix` in the TensorBoard events of `logdir`.

    Event files are read in name (= creation) order, so after a resumed run
    re-logs a step, its later value wins. A truncated last record (a run
    killed mid-write) ends that file's reading.
    """
    points = {}
    for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
        try:
            for record in tf.data.TFRecordDataset(path):
                event = tf.compat.v1.Event.FromString(record.numpy())
                for value in event.summary.value:
                    if not value.tag.startswith(prefix):
                        continue
                    if value.HasField("tensor"):
                        number = float(tf.make_ndarray(value.tensor))
                    elif value.HasField("simple_value"):
                        number = value.simple_value
                    else:
                        continue
                    points.setdefault(value.tag, {})[int(event.step)] = number
        except tf.errors.DataLossError:
            logging.warning("%s ends with a truncated record: read up to it.", path)
    return {tag: (sorted(steps), [steps[s] for s in sorted(steps)]) for tag, steps in sorted(points.items())}


def _measure_cost(entry, latency_batch_sizes, latency_min_seconds, exports_dir):
    entry.cost = {
        "params": model_io.count_params(entry.generator),
        "macs": cost.count_macs(entry.generator),
        "keras_bytes": os.path.getsize(entry.file),
        "keras_latency_ms_per_image": cost.keras_latency_ms_per_image(
            entry.generator, latency_batch_sizes, latency_min_seconds
        ),
    }
    if exports_dir:
        entry.tflite, entry.tflite_note = cost.read_export(os.path.join(exports_dir, entry.name), entry.generator)


def _score(entry, evaluator, seed, num_samples, teacher_images):
    images = evaluate.sample(entry.generator, num_samples, seed, evaluator.batch_size, progress=False)
    scores = evaluator.score_images(images, evaluate.sample_labels(entry.generator, num_samples))
    for key in QUALITY:
        if key in scores:
            entry.quality.setdefault(key, []).append(scores[key])
    if teacher_images is not None:
        entry.fidelity.setdefault("psnr", []).append(metrics.psnr(images, teacher_images))
        entry.fidelity.setdefault("ssim", []).append(metrics.ssim(images, teacher_images))
    if entry.grid is None:
        entry.grid = images[:GRID_LATENTS]
    return images


def compare(
    entries,
    teacher,
    evaluator,
    seeds=(0,),
    num_samples=10_000,
    latency_batch_sizes=(1, 256),
    latency_min_seconds=0.5,
    exports_dir=None,
):
    """Measures every loadable entry; one that fails gets its `error` and the others go on.

    Args:
      entries: `Entry`s from `load_entries`.
      teacher: the entry fidelity is measured against, or None (no fidelity).
      evaluator: the `evaluate.Evaluator` scoring every entry.
      seeds: latent seeds; each gives every entry the same z, and every
        quality and fidelity number is kept per seed.
      num_samples: generated images per entry and seed.
      latency_batch_sizes: batch sizes the Keras latency is measured at.
      latency_min_seconds: least timing time per batch size (≥ 20 calls anyway).
      exports_dir: where gkd-export directories are, `<exports_dir>/<entry name>/`;
        None: no TFLite figures.

    Returns:
      A `Comparison`.
    """
    # The teacher goes first, so that its images of each seed are there for the others.
    order = sorted((e for e in entries if e.ok), key=lambda e: e is not teacher)
    for entry in order:
        try:
            _measure_cost(entry, latency_batch_sizes, latency_min_seconds, exports_dir)
        except Exception as e:  # A model that loads but cannot run: reported, the others go on.
            _fail(entry, "cannot be run", e)
    with tqdm.tqdm(total=len(order) * len(seeds), desc="scoring", unit="generator") as bar:
        for seed in seeds:
            teacher_images = None
            for entry in order:
                bar.set_postfix_str(f"{entry.name}, seed {seed}")
                if entry.ok:
                    reference = teacher_images if _same_latents(entry, teacher) else None
                    try:
                        images = _score(entry, evaluator, seed, num_samples, reference)
                    except Exception as e:  # NaN samples or a model failing at run time: the others go on.
                        _fail(entry, f"failed at seed {seed}", e)
                    else:
                        if entry is teacher:
                            teacher_images = images
                bar.update()
    for entry in order:
        if teacher is None or entry is teacher or not entry.ok:
            continue
        if not teacher.ok:  # It may have failed after some seeds: no partial fidelity.
            entry.fidelity = {}
            entry.notes.append("no PSNR/SSIM: the teacher failed")
        elif not entry.fidelity:
            entry.notes.append(
                "no PSNR/SSIM: its z_dim or its classes differ from the teacher's, so it never sees the same inputs"
            )
    settings = _settings(evaluator, teacher, seeds, num_samples, latency_batch_sizes, latency_min_seconds, exports_dir)
    scored_teacher = teacher if teacher is not None and teacher.ok else None
    return Comparison(entries=merge_runs(entries), teacher=scored_teacher, settings=settings)


def merge_runs(entries):
    """Entries with one entry per name: the scored training runs of a name merged into its first one.

    The merged entry keeps the first run's cost, samples and curves, and the
    quality and fidelity values of every run (run by run); `runs` lists their
    paths. A run that failed stays a failed entry of its own (and is noted).
    """
    merged, by_name, failed = [], {}, {}
    for entry in entries:
        base = by_name.get(entry.name)
        if entry.ok and base is not None:
            if not base.runs:
                base.runs = [base.path]
            base.runs.append(entry.path)
            for mine, theirs in ((base.quality, entry.quality), (base.fidelity, entry.fidelity)):
                for key, values in theirs.items():
                    mine.setdefault(key, []).extend(values)
            continue
        if entry.ok:
            by_name[entry.name] = entry
        else:
            failed.setdefault(entry.name, []).append(entry.path)
        merged.append(entry)
    for name, paths in failed.items():
        if name in by_name:
            by_name[name].notes.append(f"training runs that failed, not in its numbers: {', '.join(paths)}")
    return merged


def _same_latents(entry, teacher):
    return (
        teacher is not None
        and entry is not teacher
        and teacher.ok
        and contract.z_dim(entry.generator) == contract.z_dim(teacher.generator)
        and contract.num_classes(entry.generator) == contract.num_classes(teacher.generator)
    )


def _fail(entry, what, error):
    entry.error = f"{entry.path} {what}: {type(error).__name__}: {error}"
    logging.error("%s", entry.error)


def _settings(evaluator, teacher, seeds, num_samples, latency_batch_sizes, latency_min_seconds, exports_dir):
    info = evaluator.classifier.info
    return {
        "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "versions": {p: importlib.metadata.version(p) for p in ("tensorflow", "keras")},
        "dataset": info.get("dataset"),
        "extractor": evaluator.classifier.describe(),
        "classifier_test_accuracy": info.get("test_accuracy"),
        "real_split": evaluator.real_split,
        "num_real": evaluator.num_real,
        "num_samples": num_samples,
        "seeds": list(seeds),
        "latents": "z ~ N(0, I) from numpy.random.default_rng(seed): every entry sees the same z for a seed",
        "precision_recall_k": evaluator.precision_recall_k,
        "fidelity": {
            "teacher": teacher.name if teacher is not None else None,
            "images": "the same num_samples latents per seed as the quality metrics",
            "psnr_data_range": 2.0,
            "ssim": "tf.image.ssim, 11×11 Gaussian window (σ 1.5), k1 0.01, k2 0.03, images in [-1, 1] (range 2)",
        },
        "tflite": os.path.join(exports_dir, "<entry name>", "export_report.json") + " (gkd-export), when present"
        if exports_dir
        else None,
        "macs": "TensorFlow profiler float operations of the MatMul and convolution ops of one image, halved",
        "latency": {
            "batch_sizes": list(latency_batch_sizes),
            "statistic": f"median of ≥ 20 timed calls and ≥ {latency_min_seconds} s, after 3 warm-up calls",
            "runtime": "the Keras model as one tf.function, TensorFlow's default thread pools",
            "cpu_count": os.cpu_count(),
        },
        "std": "sample standard deviation (n - 1) over seeds, and over training runs for an entry of several; "
        "null with one value",
    }


def summary(values):
    """{mean, std, values} of per-seed (and per-run) values; std is the sample standard deviation, None for one."""
    values = [float(v) for v in values]
    std = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return {"mean": float(np.mean(values)), "std": std, "values": values}
