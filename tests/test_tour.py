"""The tour machinery, the report and the CLI's error contract."""

from __future__ import annotations

import json

import pytest

from genshop import cli, tour
from genshop.claims import CLAIMS, Verdict
from genshop.errors import UnknownNameError
from genshop.registry import Registry


def test_registry_lists_choices_on_unknown_name():
    reg: Registry[int] = Registry("widget")
    reg.add("b", 2)
    reg.add("a", 1)
    assert reg.get("a") == 1 and reg.names() == ["b", "a"]
    with pytest.raises(UnknownNameError) as info:
        reg.get("c")
    assert str(info.value) == "unknown widget 'c'; choose one of: a, b"
    with pytest.raises(ValueError, match="registered twice"):
        reg.add("a", 3)


@pytest.fixture
def fake_sections(monkeypatch):
    reg: Registry[tour.Section] = Registry("tour section")
    monkeypatch.setattr(tour, "SECTIONS", reg)
    monkeypatch.setattr(tour, "discover", lambda: [reg.get(n) for n in reg])

    def good(ctx):
        import matplotlib.pyplot as plt

        from genshop.report import save_figure

        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        return tour.SectionResult(
            summary="fine",
            tables=[tour.Table("numbers", ["x", "y"], [[1, 0.123456789], ["a", float("nan")]])],
            figures=[save_figure(fig, ctx.path("line.png"))],
            claims={"slerp": Verdict("holds", "variance 1.000")},
            metrics={"x": 1.5},
        )

    def bad(ctx):
        raise RuntimeError("boom")

    tour.section("good", "A good section", order=1)(good)
    tour.section("bad", "A bad section", order=2)(bad)
    return reg


def test_tour_reports_every_section_and_survives_a_failure(tmp_path, fake_sections):
    outcome = tour.run_tour(tmp_path, seed=0)
    assert outcome.failed == ["bad"]
    page = outcome.report.read_text(encoding="utf-8")
    assert page.count("<tr class='holds'>") == 1
    assert page.count("<tr class='untested-yet'>") == len(CLAIMS) - 1
    assert "0.1235" in page and "variance 1.000" in page and "RuntimeError: boom" in page
    assert (outcome.run_dir / "good" / "line.png").stat().st_size > 1000
    assert "src='good/line.png'" in page
    results = json.loads((outcome.run_dir / "results.json").read_text())
    assert results["good"]["ok"] and results["good"]["metrics"] == {"x": 1.5}
    assert not results["bad"]["ok"] and "boom" in results["bad"]["error"]


def test_tour_only_runs_the_named_section(tmp_path, fake_sections):
    outcome = tour.run_tour(tmp_path, only=["good"])
    assert [o.section.name for o in outcome.outcomes] == ["good"] and not outcome.failed


def test_unknown_claim_id_fails_the_section(tmp_path, fake_sections):
    tour.section("liar", "Reports a claim that does not exist")(
        lambda ctx: tour.SectionResult(claims={"no-such-claim": Verdict("holds", "")}))
    outcome = tour.run_tour(tmp_path, only=["liar"])
    assert outcome.failed == ["liar"]
    assert "no-such-claim" in outcome.outcomes[0].error


def test_cli_unknown_command_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["no-such-command"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice" in err and "tour" in err


def test_cli_unknown_tour_section_is_one_line_and_exit_2(capsys):
    assert cli.main(["tour", "--only", "no-such-section"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("genshop: error: unknown tour section 'no-such-section'")
    assert err.count("\n") == 1


def test_a_claim_reported_by_two_sections_fails_the_second(tmp_path, fake_sections):
    tour.section("copycat", "Reports the good section's claim", order=3)(
        lambda ctx: tour.SectionResult(claims={"slerp": Verdict("does not hold", "")}))
    outcome = tour.run_tour(tmp_path, only=["good", "copycat"])
    assert outcome.failed == ["copycat"]
    assert "slerp (by good)" in outcome.outcomes[1].error
    page = outcome.report.read_text(encoding="utf-8")
    assert page.count("<tr class='holds'>") == 1 and "<tr class='does-not-hold'>" not in page


def test_the_real_sections_register_in_tour_order():
    names = [s.name for s in tour.discover()]
    assert names[:3] == ["divergences", "fgan_fit", "gan_losses"]
    assert {"modes", "rsgan_speed", "linalg", "flow"} <= set(names)
    assert len(names) == len(set(names))
