"""The markdown rendering of a report table (benchmark folders' tables.md) and a run's page."""

from genshop.config import save_config
from genshop.families.gan import GanConfig
from genshop.report import Table, table_markdown, write_run_page


def test_table_markdown_escapes_pipes_and_formats_values_as_the_page_does():
    table = Table("Measured", ["loss", "FID", "note"],
                  [["nsgan", 2.3849, "a|b"], ["wgan", float("nan"), None]], "mean ± s.e.")
    assert table_markdown(table) == (
        "### Measured\n\n"
        "| loss | FID | note |\n"
        "|---|---|---|\n"
        "| nsgan | 2.385 | a\\|b |\n"
        "| wgan | nan | None |\n\n"
        "mean ± s.e.\n")


def test_table_markdown_without_note_ends_after_the_last_row():
    assert table_markdown(Table("T", ["a"], [[1]])) == "### T\n\n| a |\n|---|\n| 1 |\n"


def test_a_run_page_shows_the_pictures_its_family_wrote(tmp_path):
    save_config(GanConfig(out=str(tmp_path)), "gan", tmp_path)
    (tmp_path / "reconstructions.png").write_bytes(b"png")
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
    page = write_run_page(tmp_path).read_text()
    assert page.count("<img src='reconstructions.png'") == 1
    assert page.count("<img src='curves.png'") == 1  # drawn from the metrics, shown once
