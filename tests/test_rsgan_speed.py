"""The rsgan_speed section's bookkeeping: time to quality and the paired verdict."""

import math

from genshop.sections import rsgan_speed as rs


def test_steps_to_quality_needs_every_mode_and_the_hq_bar():
    curve = [(100, 8, 10.0), (200, 7, 90.0), (300, 8, rs.QUALITY_HQ), (400, 8, 99.0)]
    assert rs.steps_to_quality(curve) == 300
    assert rs.steps_to_quality(curve[:2]) == math.inf


def test_verdict_needs_a_lower_median_and_more_paired_wins():
    assert rs.verdict({"nsgan": [500, 900, 700], "rsgan": [300, 1000, 400]}).status == "holds"
    tie = rs.verdict({"nsgan": [500, 900, 700], "rsgan": [500, 900, 700]})
    assert tie.status == "does not hold" and "faster in 0, slower in 0 of 3" in tie.measurement
    never = rs.verdict({"nsgan": [math.inf] * 3, "rsgan": [800, math.inf, math.inf]})
    assert never.status == "does not hold"  # median inf vs inf: no evidence of speed
