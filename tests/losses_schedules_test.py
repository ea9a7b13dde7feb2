"""Loss-weight schedules: their factors by hand, and their errors."""

import numpy as np
import pytest

from tf_gkd.losses import schedules

PROGRESS = np.linspace(0.0, 1.0, 5, dtype=np.float32)  # 0, 0.25, 0.5, 0.75, 1.


@pytest.mark.parametrize(
    "spec, factors",
    [
        ("ramp_up:0:0.5", [0.0, 0.5, 1.0, 1.0, 1.0]),
        ("ramp_down:0.5:1", [1.0, 1.0, 1.0, 0.5, 0.0]),
        ("ramp_up:0.5:0.5", [0.0, 0.0, 1.0, 1.0, 1.0]),  # A step.
        ("ramp_down:0:1", [1.0, 0.75, 0.5, 0.25, 0.0]),
    ],
)
def test_factors_by_hand(spec, factors):
    np.testing.assert_allclose(schedules.parse(spec)(PROGRESS), factors, atol=1e-6)


def test_constant_is_the_number_one():
    assert schedules.parse("constant")(PROGRESS) == 1.0  # No op added to a train step.


@pytest.mark.parametrize(
    "spec, message",
    [
        ("linear", "Unknown schedule 'linear'"),
        ("ramp_up", "Unknown schedule 'ramp_up'"),
        ("constant:0:1", "Unknown schedule"),
        ("ramp_up:a:b", "needs two numbers"),
        ("ramp_down:0.9:0.1", "needs 0 <= A <= B <= 1"),
        ("ramp_down:0:2", "needs 0 <= A <= B <= 1"),
    ],
)
def test_bad_specs_say_what_is_allowed(spec, message):
    with pytest.raises(ValueError, match=message):
        schedules.parse(spec)
