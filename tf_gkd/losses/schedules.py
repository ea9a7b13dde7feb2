"""Schedules of loss weights over a run: a weight is its base value times a factor of the run's progress.

A schedule is written as a string, so that it fits a flag:

- `constant`: the factor is 1 throughout;
- `ramp_up:A:B`: 0 until progress A, rising linearly to 1 at progress B, then 1;
- `ramp_down:A:B`: 1 until progress A, falling linearly to 0 at progress B, then 0;

where progress is the share of the run's steps done, in [0, 1], and
0 <= A <= B <= 1 (A = B is a step). TinyGAN-style recipes decay the pixel
weight while the adversarial weight ramps up: `--pixel_weight_schedule=ramp_down:0.5:1`
with `--adversarial_weight_schedule=ramp_up:0:0.5`.
"""

import dataclasses

import tensorflow as tf

KINDS = ("constant", "ramp_up", "ramp_down")


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A factor of progress: `kind` (one of KINDS) between progress `start` and `end`."""

    kind: str = "constant"
    start: float = 0.0
    end: float = 1.0

    def __call__(self, progress):
        """The factor at `progress` (a float32 tensor or number in [0, 1]); the number 1.0 if constant."""
        if self.kind == "constant":
            return 1.0  # Not a tensor: a constant weight adds no op to the train step.
        progress = tf.cast(progress, tf.float32)
        if self.end > self.start:
            rising = tf.clip_by_value((progress - self.start) / (self.end - self.start), 0.0, 1.0)
        else:  # A step at `start`.
            rising = tf.cast(progress >= self.start, tf.float32)
        return rising if self.kind == "ramp_up" else 1.0 - rising


def parse(spec):
    """The `Schedule` written as `spec` (see the module docstring).

    Raises:
      ValueError: naming the spec and the forms it may take.
    """
    kind, *bounds = spec.split(":")
    forms = "constant, ramp_up:A:B or ramp_down:A:B with 0 <= A <= B <= 1"
    if kind not in KINDS or (kind == "constant") != (not bounds):
        raise ValueError(f"Unknown schedule {spec!r}: use {forms}.")
    if kind == "constant":
        return Schedule()
    try:
        start, end = (float(b) for b in bounds)
    except ValueError:
        raise ValueError(f"Schedule {spec!r} needs two numbers A:B: use {forms}.") from None
    if not 0.0 <= start <= end <= 1.0:
        raise ValueError(f"Schedule {spec!r} needs 0 <= A <= B <= 1: use {forms}.")
    return Schedule(kind, start, end)
