"""Finding and checking a teacher: the run directory of a finished `gkd-train` run.

Everything that can be wrong with a teacher (a missing or unfinished run, a
file that is not a generator, another dataset) is found here, before any
training starts, and reported with the path and what to do.
"""

import dataclasses
import os

import keras

from tf_gkd import contract, errors, files, rundir
from tf_gkd.networks import io as model_io


class TeacherError(errors.Error, ValueError):
    """The --teacher path is not a usable teacher run."""


@dataclasses.dataclass(frozen=True)
class Teacher:
    """A teacher run: its configuration, generator and (when it has them) encoder and discriminator."""

    run_dir: str
    config: dict
    generator: keras.Model
    encoder: keras.Model | None
    discriminator_path: str | None

    @property
    def z_dim(self):
        return contract.z_dim(self.generator)


def read_config(run_dir):
    """The `config.json` of the run at `run_dir`, as a dict."""
    if not os.path.isdir(run_dir):
        raise TeacherError(
            f"Teacher {run_dir} is not a directory: pass --teacher=RUN_DIR, the --workdir of a gkd-train run."
        )
    path = os.path.join(run_dir, rundir.CONFIG_FILE)
    if not os.path.exists(path):
        raise TeacherError(f"Teacher {run_dir} has no {rundir.CONFIG_FILE}: it is not a gkd-train run directory.")
    return files.read_json_object(
        path, lambda message: TeacherError(f"Teacher {message}"), "restore it, or train the teacher again"
    )


def load_teacher(run_dir, dataset):
    """Loads the teacher of `run_dir` for a student trained on `dataset`.

    Raises:
      TeacherError: naming the path and what is wrong, for a missing directory,
        an unfinished run, a file that breaks the generator contract, or a
        teacher of another dataset.
    """
    config = read_config(run_dir)
    if config.get("dataset") != dataset:
        raise TeacherError(
            f"Teacher {run_dir} was trained on {config.get('dataset')!r}, not {dataset!r}: "
            f"distil on the teacher's dataset (--dataset={config.get('dataset')})."
        )
    try:
        generator = model_io.load_generator(run_dir)
    except model_io.GeneratorLoadError as e:
        raise TeacherError(f"{e} If its training is unfinished, finish it first (re-run gkd-train on it).") from None
    generator.trainable = False
    encoder = None
    encoder_path = os.path.join(run_dir, rundir.ENCODER_FILE)
    if os.path.exists(encoder_path):
        encoder = _load_network(encoder_path)
        encoder.trainable = False
    discriminator_path = os.path.join(run_dir, rundir.DISCRIMINATOR_FILE)
    if os.path.exists(discriminator_path):
        _load_network(discriminator_path)  # Checked now; a student that starts from it loads it again.
    return Teacher(
        run_dir=run_dir,
        config=config,
        generator=generator,
        encoder=encoder,
        discriminator_path=discriminator_path if os.path.exists(discriminator_path) else None,
    )


def check_image_shape(teacher, image_shape, dataset):
    """Raises TeacherError unless the teacher makes images of the data's `image_shape`."""
    teacher_shape = model_io.image_shape(teacher.generator)
    if tuple(teacher_shape) != tuple(image_shape):
        raise TeacherError(
            f"Teacher {teacher.run_dir} makes {contract.describe(teacher_shape)} images, the {dataset} data here "
            f"is {contract.describe(image_shape)}: a student learns the teacher's images from the same data, so "
            "distil with the teacher's --image_size and --grayscale."
        )


def check_conditioning(teacher, num_classes):
    """Raises TeacherError unless the teacher is conditioned as the student will be (`num_classes`; 0: unconditional).

    A conditional teacher and an unconditional student (or the reverse) would
    not see the same inputs: the student's (z, label) pairs are the teacher's.
    """
    teacher_classes = contract.num_classes(teacher.generator)
    if teacher_classes == num_classes:
        return
    what = contract.describe_conditioning(teacher.generator)
    if not teacher_classes:
        fix = "drop --conditional (a conditional student needs a conditional teacher: train one with --conditional)"
    elif not num_classes:
        fix = "pass --conditional: the student takes the teacher's (z, label) pairs"
    else:
        fix = f"the data here has {num_classes} classes: distil on the teacher's dataset"
    raise TeacherError(f"Teacher {teacher.run_dir} is {what}: {fix}.")


def _load_network(path):
    """The Keras model at `path`; a file that does not load is a `TeacherError` naming it."""
    try:
        return model_io.load_model_file(path)
    except model_io.ModelLoadError as e:
        raise TeacherError(f"Teacher file {e} Restore it, or train the teacher again.") from None
