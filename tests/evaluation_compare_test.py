"""The side-by-side comparison and its report, on tiny generators with a fake classifier."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from evaluation_evaluate_test import FakeClassifier, latent_echo

from tf_gkd.evaluation import compare, evaluate, report
from tf_gkd.networks import factory
from tf_gkd.networks import io as model_io


def make_run(directory, generator, config, file="generator.keras", curves=None):
    """A run directory: the generator, config.json and, optionally, train/* scalars {tag: [(step, value)]}."""
    model_io.save_model_atomic(generator, str(directory / file))
    (directory / "config.json").write_text(json.dumps(config))
    writer = tf.summary.create_file_writer(str(directory / "tb"))
    with writer.as_default():
        for tag, points in (curves or {}).items():
            for step, value in points:
                tf.summary.scalar(tag, value, step=step)
    writer.close()
    return directory


def scaled_echo(gain):
    """A generator with weights whose images are `gain` times its latents (an identity Dense layer)."""
    z = keras.Input((784,))
    x = keras.layers.Dense(784, use_bias=False, kernel_initializer=keras.initializers.Identity(gain))(z)
    return keras.Model(z, keras.layers.Reshape((28, 28, 1))(x))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A teacher, a student and a baseline run, a bare generator file, a corrupt file and a classifier file."""
    root = tmp_path_factory.mktemp("runs")
    paths = {
        "teacher": make_run(
            root / "teacher",
            scaled_echo(1.0),
            {"model": "gan", "teacher": None},
            curves={"train/g_loss": [(100, 1.0), (200, 0.8)], "train/d_loss": [(100, 1.3)]},
        ),
        "student": make_run(
            root / "student",
            scaled_echo(0.5),
            {"model": "distill", "teacher": str(root / "teacher")},
            file="student.keras",
            curves={"train/psnr": [(100, 10.0), (200, 12.0)]},
        ),
        "baseline": make_run(
            root / "scratch",
            factory.make_generator("dense", z_dim=784, width=0.1),
            {"model": "gan", "teacher": str(root / "teacher")},
        ),
    }
    model_io.save_model_atomic(factory.make_generator("dense", z_dim=16, width=0.1), str(root / "small_z.keras"))
    (root / "corrupt.keras").write_bytes(b"not a zip archive")
    images = keras.Input((28, 28, 1))
    model_io.save_model_atomic(keras.Model(images, keras.layers.Flatten()(images)), str(root / "classifier.keras"))
    return root, paths


@pytest.fixture(scope="module")
def evaluator():
    real = np.random.default_rng(0).uniform(-1, 1, (40, 28, 28, 1)).astype(np.float32)
    return evaluate.Evaluator(FakeClassifier(), real, batch_size=16, precision_recall_k=3)


def test_parse_spec():
    assert compare.parse_spec("s20=runs/student") == ("s20", "runs/student")
    assert compare.parse_spec("runs/student_20x/") == ("student_20x", "runs/student_20x/")
    assert compare.parse_spec("runs/student_20x/student.keras") == ("student_20x", "runs/student_20x/student.keras")
    assert compare.parse_spec("models/tiny.keras") == ("tiny", "models/tiny.keras")
    assert compare.parse_spec("models/a=b/tiny.keras") == ("tiny", "models/a=b/tiny.keras")


def test_roles_come_from_the_run_config(runs):
    root, paths = runs
    entries, teacher = compare.load_entries(
        [str(paths["student"]), str(paths["baseline"]), str(paths["teacher"]), str(root / "small_z.keras")]
    )
    assert [(e.name, e.role) for e in entries] == [
        ("student", "student"),
        ("scratch", "baseline"),
        ("teacher", "teacher"),
        ("small_z", "generator"),
    ]
    assert teacher is entries[2]
    assert entries[0].file == str(paths["student"] / "student.keras")
    assert entries[0].curves == {"train/psnr": ([100, 200], [10.0, 12.0])}


def test_the_teacher_flag_names_an_entry_or_adds_one(runs):
    root, paths = runs
    entries, teacher = compare.load_entries([f"s={paths['student']}", f"b={paths['baseline']}"], teacher="b")
    assert teacher.name == "b" and teacher.role == "teacher"
    entries, teacher = compare.load_entries([f"s={paths['student']}"], teacher=str(paths["teacher"]))
    assert [e.name for e in entries] == ["teacher", "s"] and teacher is entries[0]
    with pytest.raises(ValueError, match="the teacher is one generator"):
        compare.load_entries([f"x={paths['student']}", f"x={paths['teacher']}"], teacher="x")
    with pytest.raises(ValueError, match="given more than once"):
        compare.load_entries([f"x={paths['student']}", f"y={paths['student']}"])


def test_runs_under_one_name_are_merged_into_one_entry(runs, evaluator, tmp_path):
    root, paths = runs
    # Three "training runs" of one configuration: gains 0.5, 0.5 and 0.25 (another seed, another result).
    other = make_run(tmp_path / "student_seed2", scaled_echo(0.25), {"model": "distill", "teacher": "t"})
    specs = [str(paths["teacher"]), f"s={paths['student']}", f"s={other}", f"s={root / 'corrupt.keras'}"]
    entries, teacher = compare.load_entries(specs)
    comparison = compare.compare(
        entries, teacher, evaluator, seeds=(0, 1), num_samples=30, latency_batch_sizes=(1,), latency_min_seconds=0.01
    )
    names = [(e.name, e.ok) for e in comparison.entries]
    assert names == [("teacher", True), ("s", True), ("s", False)]  # The corrupt run stays a failure of its own.
    merged = comparison.entries[1]
    assert merged.runs == [str(paths["student"]), str(other)]
    z = np.concatenate([evaluate.sample(latent_echo(), 30, seed) for seed in (0, 1)])
    halving = [psnr_of_halving(z[:30]), psnr_of_halving(z[30:])]
    quartering = [psnr_of_halving(z[:30]) - 20 * np.log10(1.5), psnr_of_halving(z[30:]) - 20 * np.log10(1.5)]
    np.testing.assert_allclose(merged.fidelity["psnr"], halving + quartering, rtol=1e-5)  # Run by run, seed by seed.
    assert len(merged.quality["fid"]) == 4
    assert any("failed" in note and "corrupt.keras" in note for note in merged.notes)
    result = report.to_json(comparison)
    assert result["entries"][1]["runs"] == [str(paths["student"]), str(other)]
    assert "`s` (2 runs)" in report.to_markdown(comparison, {})


def test_training_curves_keep_the_last_value_of_a_step(tmp_path):
    for values in ([(1, 5.0), (2, 4.0)], [(2, 3.0), (3, 2.0)]):  # A resumed run logs step 2 again.
        writer = tf.summary.create_file_writer(str(tmp_path))
        with writer.as_default():
            for step, value in values:
                tf.summary.scalar("train/loss", value, step=step)
                tf.summary.scalar("speed/steps_per_sec", 1.0, step=step)
        writer.close()
    assert compare.read_training_curves(str(tmp_path)) == {"train/loss": ([1, 2, 3], [5.0, 3.0, 2.0])}


@pytest.fixture(scope="module")
def written(runs, evaluator, tmp_path_factory):
    """A report on the teacher, student and baseline runs plus a corrupt file and a non-generator."""
    root, paths = runs
    specs = [
        str(paths["teacher"]),
        str(paths["student"]),
        str(paths["baseline"]),
        str(root / "corrupt.keras"),
        str(root / "classifier.keras"),
        str(root / "small_z.keras"),
    ]
    entries, teacher = compare.load_entries(specs)
    comparison = compare.compare(
        entries, teacher, evaluator, seeds=(0, 1), num_samples=30, latency_batch_sizes=(1, 4), latency_min_seconds=0.01
    )
    output_dir = tmp_path_factory.mktemp("report")
    return comparison, report.write(comparison, str(output_dir)), output_dir


def test_bad_entries_are_listed_as_failed_and_the_others_scored(written, runs):
    root, _ = runs
    _, result, output_dir = written
    assert [e["name"] for e in result["entries"]] == ["teacher", "student", "scratch", "small_z"]
    failed = {f["name"]: f["error"] for f in result["failed"]}
    assert set(failed) == {"corrupt", "classifier"}
    assert f"{root / 'corrupt.keras'} is not a valid .keras archive" in failed["corrupt"]
    assert f"{root / 'classifier.keras'}: a generator takes z [N, z_dim]" in failed["classifier"]
    markdown = (output_dir / "report.md").read_text()
    assert "## Failed" in markdown and str(root / "corrupt.keras") in markdown


def test_metrics_json_has_every_number_with_its_unit_and_settings(written):
    _, result, _ = written
    settings = result["settings"]
    assert settings["seeds"] == [0, 1] and settings["num_samples"] == 30 and settings["num_real"] == 40
    assert settings["precision_recall_k"] == 3 and settings["fidelity"]["teacher"] == "teacher"
    assert settings["latency"]["batch_sizes"] == [1, 4]
    teacher, student, baseline, small_z = result["entries"]
    for entry in result["entries"]:
        for name in compare.QUALITY:
            if name in compare.CLASS_QUALITY:  # Of class-conditional generators only.
                assert name not in entry["quality"]
                continue
            stats = entry["quality"][name]
            assert len(stats["values"]) == 2 and stats["std"] is not None and stats["unit"]
        for name in ("params", "macs", "keras_bytes"):
            assert entry["cost"][name]["value"] > 0 and entry["cost"][name]["unit"]
        assert set(entry["cost"]["keras_latency"]) == {"batch_1", "batch_4"}
    assert teacher["cost"]["macs"]["value"] == 784 * 784 and teacher["vs_teacher"] is None
    assert student["vs_teacher"]["params"]["value"] == 1.0  # Same layer, another gain.
    assert (teacher["role"], student["role"], baseline["role"], small_z["role"]) == (
        "teacher",
        "student",
        "baseline",
        "generator",
    )


def test_fidelity_is_measured_on_the_same_latents(written):
    comparison, result, _ = written
    teacher, student, baseline, small_z = result["entries"]
    # The student's images are exactly half the teacher's on the same z: MSE = mean(z²)/4.
    z = np.concatenate([evaluate.sample(latent_echo(), 30, seed) for seed in (0, 1)])
    expected = [psnr_of_halving(z[:30]), psnr_of_halving(z[30:])]
    np.testing.assert_allclose(student["fidelity"]["psnr"]["values"], expected, rtol=1e-6)
    assert student["fidelity"]["ssim"]["mean"] < 1.0
    assert teacher["fidelity"] is None  # Not against itself.
    assert small_z["fidelity"] is None  # Another z_dim never sees the same z.
    assert any("z_dim or its classes differ" in note for note in small_z["notes"])
    grids = {e.name: e.grid for e in comparison.entries if e.ok}
    np.testing.assert_allclose(grids["student"], grids["teacher"] * 0.5, rtol=1e-6)


def psnr_of_halving(z):
    """Mean PSNR (range 2) of images 0.5·z against z, by hand: MSE = mean((z/2)²) per image."""
    mse = np.mean((z.reshape(len(z), -1).astype(np.float64) * 0.5) ** 2, axis=1)
    return float(np.mean(10 * np.log10(4.0 / mse)))


def test_figures_are_valid_pngs_of_the_expected_size(written):
    comparison, _, output_dir = written
    for name in ("samples", "pareto_size", "pareto_latency", "training_curves"):
        png = tf.io.decode_png(tf.io.read_file(str(output_dir / f"{name}.png"))).numpy()
        assert png.ndim == 3 and png.shape[2] in (3, 4), name
        assert f"({name}.png)" in (output_dir / "report.md").read_text()
    # samples.png: one row of GRID_LATENTS images per scored entry, 28 + 1 pixels each plus a 1-pixel border,
    # drawn at 40 pixels per inch and 100 dpi, with 1.5 inches for the labels.
    png = tf.io.decode_png(tf.io.read_file(str(output_dir / "samples.png"))).numpy()
    assert png.shape[1] == pytest.approx((compare.GRID_LATENTS * 29 + 1) / 40 * 100 + 150, abs=1)
    assert png.shape[0] == pytest.approx(4 * (29 + 1) / 40 * 100 + 10, abs=1)
    assert len(np.unique(png)) > 10  # Not blank.


def test_tensorboard_gets_the_scalars_and_figures(written):
    _, result, output_dir = written
    logdir = str(output_dir / report.TENSORBOARD_DIR)
    fid = compare.read_training_curves(logdir, prefix="quality/fid/")
    assert fid == {
        f"quality/fid/{e['name']}": ([0], [pytest.approx(e["quality"]["fid"]["mean"])]) for e in result["entries"]
    }
    tags = set()
    for path in os.listdir(logdir):
        if os.path.isfile(os.path.join(logdir, path)):
            for event in tf.compat.v1.train.summary_iterator(os.path.join(logdir, path)):
                tags.update(v.tag for v in event.summary.value)
    assert {"samples", "pareto_size", "pareto_latency", "training_curves"} <= tags


def events(directory):
    """{tag: (plugin name, value)} of the summaries in the event files of `directory`."""
    found = {}
    for path in os.listdir(directory):
        if os.path.isfile(os.path.join(directory, path)):
            for event in tf.compat.v1.train.summary_iterator(os.path.join(directory, path)):
                for v in event.summary.value:
                    found[v.tag] = (v.metadata.plugin_data.plugin_name, tf.make_ndarray(v.tensor))
    return found


def test_tensorboard_hparams_hold_each_entrys_recipe_and_scores(written):
    _, result, output_dir = written
    logdir = output_dir / report.TENSORBOARD_DIR / report.HPARAMS_DIR
    assert events(logdir)["_hparams_/experiment"][0] == "hparams"
    for entry in result["entries"]:
        trial = events(logdir / entry["name"])
        assert trial["_hparams_/session_start_info"][0] == "hparams"
        assert float(trial["quality/fid"][1]) == pytest.approx(entry["quality"]["fid"]["mean"])
        assert float(trial["cost/params"][1]) == entry["cost"]["params"]["value"]


def test_hparams_are_the_role_and_the_options_that_differ():
    entries = [
        {"name": "a", "role": "teacher", "config": {"model": "gan", "seed": 0, "generator_depth": None}},
        {"name": "b", "role": "student", "config": {"model": "distill", "seed": 0, "generator_depth": 2}},
        {"name": "c", "role": "generator", "config": None},
    ]
    assert report.hparams_of(entries) == {
        "a": {"role": "teacher", "model": "gan", "seed": 0, "generator_depth": "null"},
        "b": {"role": "student", "model": "distill", "seed": 0, "generator_depth": 2},
        "c": {"role": "generator", "model": "null", "seed": "null", "generator_depth": "null"},
    }


def test_the_pareto_front_keeps_the_undominated_points():
    points = [(10, 5.0), (20, 3.0), (30, 4.0), (40, 1.0), (5, 9.0)]
    assert report._pareto_front(points) == [(5, 9.0), (10, 5.0), (20, 3.0), (40, 1.0)]
