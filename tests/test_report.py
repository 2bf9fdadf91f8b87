"""The markdown rendering of a report table (benchmark folders' tables.md)."""

from genshop.report import Table, table_markdown


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
