"""Saving and loading models: atomic writes, safe loads, the generator contract."""

import os
import tempfile

import keras

IMAGE_SHAPE = (28, 28, 1)


class GeneratorLoadError(ValueError):
    """A path does not hold a generator z [N, z_dim] → images [N, 28, 28, 1]."""


def save_model_atomic(model, path):
    """Saves `model` as a `.keras` file at `path` without ever leaving half a file there.

    The model is written to a temporary file in the same directory (same file
    system) and renamed over `path`, which is atomic on POSIX.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".keras", prefix=".tmp-", dir=directory)
    os.close(fd)
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_generator(path):
    """Loads a generator saved by tf_gkd (or any Keras model meeting the contract).

    `path` is a `.keras` file, or a run directory holding `generator.keras`.
    Loading uses `safe_mode=True`: nothing is unpickled.

    Raises:
      GeneratorLoadError: naming `path` and what is wrong with it.
    """
    if os.path.isdir(path):
        path = os.path.join(path, "generator.keras")
    if not os.path.exists(path):
        raise GeneratorLoadError(f"No generator at {path}: the file does not exist.")
    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as e:  # Keras raises many types for a bad file; all mean the same here.
        raise GeneratorLoadError(f"{path} is not a loadable Keras model ({type(e).__name__}: {e}).") from None
    inputs, outputs = model.inputs, model.outputs
    if len(inputs) != 1 or len(inputs[0].shape) != 2:
        shapes = [tuple(x.shape) for x in inputs]
        raise GeneratorLoadError(f"{path}: a generator takes one input z [N, z_dim]; this model takes {shapes}.")
    if len(outputs) != 1 or tuple(outputs[0].shape[1:]) != IMAGE_SHAPE:
        shapes = [tuple(x.shape) for x in outputs]
        raise GeneratorLoadError(
            f"{path}: a generator returns images [N, 28, 28, 1]; this model returns {shapes}."
        )
    return model


def z_dim(generator):
    """Latent size of a generator, read off its input shape."""
    return int(generator.inputs[0].shape[-1])
