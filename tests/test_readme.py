"""The README's Python example runs as written (in a fresh folder: it writes runs/x)."""

import re
from pathlib import Path

README = Path(__file__).parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert blocks, "the README has a Python example"
    monkeypatch.chdir(tmp_path)
    for code in blocks:
        exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})
    assert (tmp_path / "runs" / "x" / "checkpoint.pt").is_file()
    assert capsys.readouterr().out.strip()  # it prints what it shows


def test_block_finder_reads_only_python_blocks():
    text = "```\nmake run\n```\n```python\nx = 1\n```\n```python\ny = 2\n```"
    assert python_blocks(text) == ["x = 1\n", "y = 2\n"]
