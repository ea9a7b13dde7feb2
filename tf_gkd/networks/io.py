"""Saving and loading models: atomic writes, safe loads, the generator contract.

A generator, to tf_gkd, is any Keras model with one input z `[N, z_dim]` (and,
class-conditional, a second one: a one-hot label `[N, K]`) and one output,
images `[N, H, W, C]` in [-1, 1] (`tf_gkd.contract`): evaluation and distillation
accept every `.keras` file meeting that contract, whichever code built it.
`load_generator` checks the contract up front so that a wrong file fails with
a message naming it, not with a shape error deep inside a metric.
"""

import math
import os
import zipfile

import keras

from tf_gkd import contract, errors, files, rundir


class ModelLoadError(errors.Error, ValueError):
    """A path does not hold a Keras model that loads."""


class GeneratorLoadError(ModelLoadError):
    """A path does not hold a generator z [N, z_dim] (, label [N, K]) → images [N, H, W, C]."""


def save_model_atomic(model, path):
    """Saves `model` as a `.keras` file at `path` atomically (`tf_gkd.files.atomic_path`).

    A crash mid-save leaves the previous file, if any, intact.
    """
    with files.atomic_path(path) as tmp:
        model.save(tmp)


def generator_file(path):
    """The generator file that `load_generator(path)` loads: `path` itself, or a run directory's generator.

    Raises:
      GeneratorLoadError: `path` is a directory without any of `rundir.GENERATOR_FILES`.
    """
    if not os.path.isdir(path):
        return path
    found = [os.path.join(path, f) for f in rundir.GENERATOR_FILES if os.path.exists(os.path.join(path, f))]
    if not found:
        raise GeneratorLoadError(
            f"{path} is a directory without any of {', '.join(rundir.GENERATOR_FILES)}: "
            "pass a finished run directory or a generator .keras file."
        )
    return found[0]


def load_model_file(path, error=ModelLoadError, what="model"):
    """The Keras model of the `.keras` file at `path`, loaded with `safe_mode=True` and `compile=False`.

    Raises:
      ModelLoadError (or `error`, a subclass): naming the file (`what` it should
        hold) and what is wrong with it.
    """
    if not os.path.exists(path):
        raise error(f"No {what} at {path}: the file does not exist.")
    if not path.endswith(".keras"):
        raise error(f"{path} is not a .keras file: save the {what} with model.save('name.keras').")
    # Keras reports a corrupt archive as "File not found", which misleads; say it plainly.
    if not zipfile.is_zipfile(path):
        raise error(f"{path} is not a valid .keras archive (truncated or corrupt file?).")
    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as e:  # Keras raises many types for a bad or unsafe archive; all mean the same here.
        raise error(f"{path} cannot be loaded as a Keras model ({type(e).__name__}: {e}).") from None
    if not isinstance(model, keras.Model):
        raise error(f"{path} holds a {type(model).__name__}, not a Keras model.")
    return model


def load_generator(path):
    """Loads a generator saved by tf_gkd (or any Keras model meeting the contract).

    `path` is a `.keras` file, or a run directory holding one of
    `rundir.GENERATOR_FILES` (a GAN's generator, a VAE's decoder, a student).
    Loading uses `safe_mode=True` (nothing is unpickled) and `compile=False`
    (a generator is only ever called).

    Raises:
      GeneratorLoadError: naming the file and what is wrong with it.
    """
    path = generator_file(path)
    model = load_model_file(path, GeneratorLoadError, "generator")
    inputs, outputs = model.inputs or [], model.outputs or []
    if not 1 <= len(inputs) <= 2 or any(len(x.shape) != 2 or x.shape[1] is None for x in inputs):
        shapes = [tuple(x.shape) for x in inputs]
        raise GeneratorLoadError(
            f"{path}: a generator takes z [N, z_dim] (and, class-conditional, a one-hot label [N, K]); this model "
            f"takes {shapes}."
        )
    shapes = [tuple(x.shape) for x in outputs]
    try:
        if len(outputs) != 1:
            raise ValueError(f"one output expected, {len(outputs)} found")
        contract.check_image_shape(outputs[0].shape[1:])
    except ValueError as e:
        raise GeneratorLoadError(
            f"{path}: a generator returns images [N, S, S, 1 or 3]; this model returns {shapes} ({e})."
        ) from None
    return model


def image_shape(generator):
    """(H, W, C) of a generator's images, read off its output shape."""
    return tuple(int(d) for d in generator.outputs[0].shape[1:])


def count_params(model):
    """Number of scalars in `model`'s weights, trainable or not (what its file stores)."""
    return int(sum(math.prod(w.shape) for w in model.weights))
