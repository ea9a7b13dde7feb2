"""Offline (black-box) distillation data: (z, teacher image) pairs in a TFRecord file.

`write_pairs` runs the teacher once over `num_pairs` latents (and, for a
class-conditional teacher, labels: `contract.class_labels`) and stores each z
(float32) and label with the teacher's image (float16: its 3 significant digits are far
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


def _example(z, image, label=None):
    feature = {
        "z": tf.train.Feature(float_list=tf.train.FloatList(value=z)),
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image.astype(np.float16).tobytes()])),
    }
    if label is not None:
        feature["label"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_pairs(teacher, path, num_pairs, seed, batch_size=500, progress=True):
    """Writes `num_pairs` (z, teacher(z)) pairs to the TFRecord file `path`.

    The latents are `contract.latents(num_pairs, z_dim, seed)`: with the run's
    seed, the first `num_samples` pairs are the run's fixed sample grid.
    """
    z_all = contract.latents(num_pairs, contract.z_dim(teacher), seed)
    classes = contract.num_classes(teacher)
    labels_all = contract.class_labels(num_pairs, classes) if classes else [None] * num_pairs
    with files.atomic_path(path) as tmp, tf.io.TFRecordWriter(tmp) as writer:
        for start in tqdm.trange(0, num_pairs, batch_size, desc="teacher pairs", disable=not progress):
            z, labels = z_all[start : start + batch_size], labels_all[start : start + batch_size]
            inputs = contract.generator_inputs(teacher, z, labels if classes else None)
            images = np.asarray(teacher(inputs, training=False), np.float32)
            for zi, image, label in zip(z, images, labels):
                writer.write(_example(zi, image, label))


def pairs_dataset(path, z_dim, image_shape, num_classes=0):
    """An unbatched tf.data.Dataset of {"z": float32 [z_dim], "teacher": float32 image} from `path`.

    With `num_classes` > 0 (a conditional teacher's pairs) each element has its int64 "label" too.
    """
    spec = {
        "z": tf.io.FixedLenFeature([z_dim], tf.float32),
        "image": tf.io.FixedLenFeature([], tf.string),
    }
    if num_classes:
        spec["label"] = tf.io.FixedLenFeature([], tf.int64)

    def parse(record):
        example = tf.io.parse_single_example(record, spec)
        image = tf.reshape(tf.io.decode_raw(example["image"], tf.float16), image_shape)
        pair = {"z": example["z"], "teacher": tf.cast(image, tf.float32)}
        if num_classes:
            pair["label"] = example["label"]
        return pair

    return tf.data.TFRecordDataset(path).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
