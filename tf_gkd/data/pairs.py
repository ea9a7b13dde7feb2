"""Offline (black-box) distillation data: (z, teacher image) pairs in a TFRecord file.

`write_pairs` runs the teacher once over `num_pairs` latents and stores each z
(float32) with the teacher's image (float16: its 3 significant digits are far
below the student's error, and the file is half the size). A student then
trains from `pairs_dataset` alone; the teacher is not needed any more, which is
how a teacher that is only reachable as a service, or too slow to run in the
loop, is distilled.

The file is written atomically (`tf_gkd.files`), so an existing pairs file is
always complete.
"""

import numpy as np
import tensorflow as tf
import tqdm

from tf_gkd import contract, files


def _example(z, image):
    return tf.train.Example(
        features=tf.train.Features(
            feature={
                "z": tf.train.Feature(float_list=tf.train.FloatList(value=z)),
                "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image.astype(np.float16).tobytes()])),
            }
        )
    ).SerializeToString()


def write_pairs(teacher, path, num_pairs, seed, batch_size=500, progress=True):
    """Writes `num_pairs` (z, teacher(z)) pairs to the TFRecord file `path`.

    The latents are `contract.latents(num_pairs, z_dim, seed)`: with the run's
    seed, the first `num_samples` pairs are the run's fixed sample grid.
    """
    z_all = contract.latents(num_pairs, int(teacher.input_shape[-1]), seed)
    with files.atomic_path(path) as tmp, tf.io.TFRecordWriter(tmp) as writer:
        for start in tqdm.trange(0, num_pairs, batch_size, desc="teacher pairs", disable=not progress):
            z = z_all[start : start + batch_size]
            images = np.asarray(teacher(z, training=False), np.float32)
            for zi, image in zip(z, images):
                writer.write(_example(zi, image))


def pairs_dataset(path, z_dim, image_shape):
    """An unbatched tf.data.Dataset of {"z": float32 [z_dim], "teacher": float32 image} from `path`."""
    spec = {
        "z": tf.io.FixedLenFeature([z_dim], tf.float32),
        "image": tf.io.FixedLenFeature([], tf.string),
    }

    def parse(record):
        example = tf.io.parse_single_example(record, spec)
        image = tf.reshape(tf.io.decode_raw(example["image"], tf.float16), image_shape)
        return {"z": example["z"], "teacher": tf.cast(image, tf.float32)}

    return tf.data.TFRecordDataset(path).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
