"""`gkd_shapes`: coloured shapes on textured backgrounds, 32x32 RGB, 10 classes, made offline.

A tensorflow-datasets builder (registered when `tf_gkd.data` is imported)
whose images are drawn from a seed, not downloaded: a colour dataset that
every machine can prepare, for the colour quickstart and the tests. Each
image is one shape of a class — circle, square, triangle, ring, plus, cross,
diamond, horizontal bar, vertical bar, half disc — of random size, position,
slight rotation and a saturated colour, anti-aliased over a background of a
two-colour gradient with faint stripes and noise. Image i of a split depends
only on (split, i): the same everywhere, whatever the order of generation.

Configs: `gkd_shapes` (30,000 train and 10,000 test images, the default) and
`gkd_shapes/tiny` (512 and 128, for tests).
"""

import colorsys

import numpy as np
import tensorflow_datasets as tfds

SIZE = 32
CLASSES = (
    "circle",
    "square",
    "triangle",
    "ring",
    "plus",
    "cross",
    "diamond",
    "horizontal_bar",
    "vertical_bar",
    "half_disc",
)
_SPLIT_SEEDS = {"train": 1, "test": 2}


def _outside(kind, u, v, r):
    """Signed distance in pixels (approximately) outside shape `kind` of radius `r`, at coordinates (u, v)."""
    w = 0.3 * r  # Stroke half-width of the plus, the cross and the bars.
    if kind == "circle":
        return np.hypot(u, v) - r
    if kind == "square":
        return np.maximum(np.abs(u), np.abs(v)) - 0.8 * r
    if kind == "triangle":  # Pointing up: v grows downwards in images.
        return np.maximum.reduce([v - 0.7 * r, 0.87 * u - 0.5 * v - 0.6 * r, -0.87 * u - 0.5 * v - 0.6 * r])
    if kind == "ring":
        return np.abs(np.hypot(u, v) - 0.75 * r) - 0.25 * r
    if kind in ("plus", "cross"):
        if kind == "cross":
            u, v = (u - v) / np.sqrt(2), (u + v) / np.sqrt(2)
        return np.minimum(np.maximum(np.abs(u) - w, np.abs(v) - r), np.maximum(np.abs(v) - w, np.abs(u) - r))
    if kind == "diamond":
        return (np.abs(u) + np.abs(v)) / np.sqrt(2) - 0.75 * r
    if kind == "horizontal_bar":
        return np.maximum(np.abs(u) - r, np.abs(v) - w)
    if kind == "vertical_bar":
        return np.maximum(np.abs(v) - r, np.abs(u) - w)
    if kind == "half_disc":
        return np.maximum(np.hypot(u, v + 0.3 * r) - r, v - 0.3 * r)
    raise ValueError(f"Unknown shape {kind!r}.")


def _rgb(hue, saturation, value):
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, saturation, value))


def draw(label, rng):
    """One uint8 image [32, 32, 3] of class `label` drawn with the NumPy generator `rng`."""
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64) + 0.5
    # Background: a gradient between two muted colours, faint stripes, noise.
    hue = rng.uniform()
    angle = rng.uniform(0, 2 * np.pi)
    ramp = ((x - SIZE / 2) * np.cos(angle) + (y - SIZE / 2) * np.sin(angle)) / SIZE + 0.5
    start = _rgb(hue, rng.uniform(0.1, 0.4), rng.uniform(0.25, 0.75))
    end = _rgb(hue + rng.uniform(-0.15, 0.15), rng.uniform(0.1, 0.4), rng.uniform(0.25, 0.75))
    background = start + (end - start) * ramp[..., None]
    stripes_angle, frequency = rng.uniform(0, np.pi), rng.uniform(0.3, 1.2)
    stripes = np.sin(frequency * (x * np.cos(stripes_angle) + y * np.sin(stripes_angle)) + rng.uniform(0, 2 * np.pi))
    background = background + 0.05 * stripes[..., None] + rng.normal(0, 0.02, (SIZE, SIZE, 3))
    # The shape: its own saturated colour, lighter or darker than the background.
    r = rng.uniform(6.0, 11.0)
    cx, cy = rng.uniform(r + 1.5, SIZE - r - 1.5, size=2)
    turn = np.deg2rad(rng.uniform(-15, 15))
    u = (x - cx) * np.cos(turn) + (y - cy) * np.sin(turn)
    v = -(x - cx) * np.sin(turn) + (y - cy) * np.cos(turn)
    value = rng.uniform(0.85, 1.0) if background.mean() < 0.5 else rng.uniform(0.1, 0.3)
    colour = _rgb(hue + rng.uniform(0.25, 0.75), rng.uniform(0.6, 1.0), value)
    coverage = np.clip(0.5 - _outside(CLASSES[label], u, v, r), 0.0, 1.0)[..., None]
    image = background * (1 - coverage) + colour * coverage
    return np.clip(np.round(image * 255), 0, 255).astype(np.uint8)


def make(split, index, seed=0):
    """(image, label) number `index` of `split`: label index mod 10, drawn from (seed, split, index)."""
    label = index % len(CLASSES)
    return draw(label, np.random.default_rng([seed, _SPLIT_SEEDS[split], index])), label


class ShapesConfig(tfds.core.BuilderConfig):
    def __init__(self, *, num_train, num_test, **kwargs):
        super().__init__(version=tfds.core.Version("1.0.0"), **kwargs)
        self.num_train, self.num_test = num_train, num_test


class GkdShapes(tfds.core.GeneratorBasedBuilder):
    """Coloured shapes on textured backgrounds (see the module's docstring)."""

    name = "gkd_shapes"
    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [
        ShapesConfig(name="default", num_train=30_000, num_test=10_000, description="The full dataset."),
        ShapesConfig(name="tiny", num_train=512, num_test=128, description="A small copy for tests."),
    ]

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__.split("\n\n")[1],
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(SIZE, SIZE, 3)),
                    "label": tfds.features.ClassLabel(names=CLASSES),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download.
        sizes = {"train": self.builder_config.num_train, "test": self.builder_config.num_test}
        return {split: self._generate_examples(split, n) for split, n in sizes.items()}

    def _generate_examples(self, split, num):
        for index in range(num):
            image, label = make(split, index)
            yield index, {"image": image, "label": label}
