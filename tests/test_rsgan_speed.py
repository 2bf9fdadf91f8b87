"""The rsgan_speed section's bookkeeping: time to quality and the paired verdict."""

import math

import pytest

from genshop.claims import paired_verdict, sign_test
from genshop.sections import rsgan_speed as rs


def test_steps_to_quality_needs_every_mode_and_the_hq_bar():
    curve = [(100, 8, 10.0), (200, 7, 90.0), (300, 8, rs.QUALITY_HQ), (400, 8, 99.0)]
    assert rs.steps_to_quality(curve) == 300
    assert rs.steps_to_quality(curve[:2]) == math.inf


def test_sign_test_is_the_binomial_tail():
    assert sign_test(5, 0) == pytest.approx(1 / 32)
    assert sign_test(4, 1) == pytest.approx(6 / 32)  # C(5,4) + C(5,5)
    assert sign_test(0, 0) == 1.0  # no untied pair: no evidence
    assert sign_test(8, 2) == pytest.approx(56 / 1024)


@pytest.mark.parametrize(("better", "worse", "status"), [
    (5, 0, "holds"), (0, 5, "does not hold"), (4, 1, "inconclusive"), (2, 2, "inconclusive"),
    (9, 1, "holds"), (1, 9, "does not hold"), (0, 0, "inconclusive")])
def test_paired_verdict_is_two_sided_with_an_inconclusive_middle(better, worse, status):
    assert paired_verdict(better, worse) == status


def test_verdict_counts_paired_seeds_and_drops_ties():
    five = {"nsgan": [500, 900, 700, 800, 1000], "rsgan": [300, 800, 400, 700, 900]}
    assert rs.verdict(five).status == "holds"
    assert rs.verdict({"nsgan": five["rsgan"], "rsgan": five["nsgan"]}).status == "does not hold"
    tie = rs.verdict({"nsgan": [500, 900, 700], "rsgan": [500, 900, 700]})
    assert tie.status == "inconclusive" and "faster in 0, slower in 0 of 3" in tie.measurement
    mixed = rs.verdict({"nsgan": [500, 900, math.inf, 700], "rsgan": [300, 1000, 800, 900]})
    assert mixed.status == "inconclusive" and "faster in 2, slower in 2 of 4" in mixed.measurement
