"""Test set-up shared by every test module."""

import os
import signal

# A script that starts the tests in the background (`pytest &`) hands them SIGINT ignored, and
# every child process would inherit that; the Ctrl-C tests need it delivered.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Quiet TensorFlow's C++ start-up chatter; keep tests on the CPU.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import tensorflow as tf  # noqa: E402
from absl import flags  # noqa: E402

# Two logical CPU devices, so that tf.distribute.MirroredStrategy has two replicas to
# split batches over on a CPU-only machine (tests/distribute_test.py); unused otherwise.
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2
)


def pytest_configure(config):
    del config
    # Library code never reads FLAGS, but absl-based binaries imported by tests
    # do; without this, touching FLAGS raises UnparsedFlagAccessError.
    flags.FLAGS.mark_as_parsed()


import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def short_quantization_aware_tuning():
    """gkd-export's int8_qat tunes for qat.STEPS steps; on tiny test generators a few show the same path."""
    from tf_gkd.export import qat

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(qat, "STEPS", 50)
        yield


@pytest.fixture(autouse=True)
def float32_after_each_test():
    """Training sets Keras's global dtype policy (`--mixed_precision=auto` may pick bfloat16): no test leaks it."""
    yield
    keras.mixed_precision.set_global_policy("float32")


def write_tiny_raw_dir(path, num_train=256, num_test=64, seed=0):
    """Writes the four IDX files of a tiny MNIST-style dataset: class k is a bright bar at row 2k+4."""
    from tf_gkd.data import idx

    rng = np.random.default_rng(seed)
    for split, n in (("train", num_train), ("test", num_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(labels):
            images[i, 2 * label + 4 : 2 * label + 7, 4:24] = 220
        idx.write_idx(path / idx.RAW_FILES[f"{split}_images"], images)
        idx.write_idx(path / idx.RAW_FILES[f"{split}_labels"], labels)
    return path


@pytest.fixture(scope="session")
def tiny_raw_dir(tmp_path_factory):
    """Raw IDX files of a tiny dataset (256 train, 64 test images)."""
    return write_tiny_raw_dir(tmp_path_factory.mktemp("raw"))


@pytest.fixture(scope="session")
def tiny_data_dir(tiny_raw_dir, tmp_path_factory):
    """A tfds data directory with `fashion_mnist` prepared from `tiny_raw_dir`."""
    from tf_gkd.data import datasets

    data_dir = str(tmp_path_factory.mktemp("tfds"))
    datasets.prepare("fashion_mnist", data_dir=data_dir, raw_dir=str(tiny_raw_dir))
    return data_dir


@pytest.fixture(scope="session")
def shapes_data_dir(tmp_path_factory):
    """A tfds data directory with `gkd_shapes/tiny` (512 + 128 coloured 32x32 images) prepared."""
    from tf_gkd.data import datasets

    data_dir = str(tmp_path_factory.mktemp("tfds_shapes"))
    datasets.prepare("gkd_shapes/tiny", data_dir=data_dir)
    return data_dir


@pytest.fixture
def tiny_gan_config(tiny_data_dir):
    """A function of overrides → the `TrainConfig` of a tiny dense GAN on the tiny dataset (10 steps)."""
    from tf_gkd.runs import config as config_lib

    def make(**overrides):
        values = dict(
            data_dir=tiny_data_dir,
            generator_kind="dense",
            discriminator_kind="dense",
            generator_width=0.25,
            discriminator_width=0.25,
            batch_size=8,
            train_steps=10,
            steps_per_execution=5,
            log_every=5,
            sample_every=10,
            checkpoint_every=5,
            num_samples=4,
        )
        return config_lib.TrainConfig(**(values | overrides))

    return make
