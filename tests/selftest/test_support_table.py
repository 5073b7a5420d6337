"""The README's support table is the one the support matrix generates, and the command that writes it."""

from __future__ import annotations

from pathlib import Path

from harness.problems.zoo import MODELS
from harness.tools.supporttable import BEGIN, END, main, readme_block, support_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_table_is_generated_from_the_support_matrix():
    block = readme_block(README.read_text())
    assert block is not None, f"README.md has no {BEGIN} ... {END} block"
    assert block == f"{BEGIN}\n{support_table()}\n{END}", (
        "README.md's support table is stale: run python -m harness support-table --write README.md"
    )


def test_table_marks_failures_with_their_reasons():
    table = support_table()
    row = next(line for line in table.splitlines() if line.startswith("| `backpack` |"))
    assert "| grads, norms, (clipped) |" in row
    assert "✗ norms [" in row, "BackPACK's BatchL2Grad is wrong on the grouped conv1d in every precision"
    assert "✗ float64 [" in row, "BackPACK mixes float32 into float64 on lstm_text: every quantity, float64 only"
    assert "BatchL2Grad returns wrong per-sample squared norms" in table
    assert next(line for line in table.splitlines() if line.startswith("| `loop` |")).count("✓") == len(MODELS)


def test_write_replaces_only_the_block(tmp_path, capsys):
    target = tmp_path / "README.md"
    target.write_text(f"# title\n\n{BEGIN}\nSTALE-TABLE\n{END}\n\nafter\n")
    assert main(["--write", str(target)]) == 0
    text = target.read_text()
    assert text.startswith("# title\n\n") and text.endswith("\n\nafter\n") and "STALE-TABLE" not in text
    assert readme_block(text) == f"{BEGIN}\n{support_table()}\n{END}"
    target.write_text("no markers here\n")
    assert main(["--write", str(target)]) == 2
    assert "has no <!-- support-table --> ... <!-- /support-table --> block" in capsys.readouterr().err


def test_what_depends_on_the_machine_is_marked_and_explained():
    """A model holding a layer with a hardware limit carries its mark, and the note says what is skipped where."""
    table = support_table()
    header = next(line for line in table.splitlines() if line.startswith("| method |"))
    assert "| lstm_text (hw1) |" in header and "| mlp |" in header, header
    assert "hw1. Depends on the machine: the bfloat16 cases of lstm_text (an `nn.LSTM`) are skipped, never failed" in table
