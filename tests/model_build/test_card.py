"""Model card writer."""

from __future__ import annotations

from pathlib import Path

from model_build.card import Card, mb, pct, render, table, write_card


def test_table_escapes_pipes_and_newlines() -> None:
    text = table(("a", "b"), [("x|y", "line1\nline2")])
    lines = text.splitlines()
    assert lines[0] == "| a | b |" and lines[1] == "|---|---|"
    assert lines[2] == "| x\\|y | line1 line2 |"


def test_render_order_and_write(tmp_path: Path) -> None:
    card = Card("Model X", "What it is.", facts=[("file", "x.onnx")])
    card.add("Results", "top-1 99 %")
    card.add("Limits", "  some  \n")
    text = render(card)
    assert text.startswith("# Model X\n\nWhat it is.\n")
    assert text.index("| file | x.onnx |") < text.index("## Results") < text.index("## Limits")
    assert text.endswith("some\n")
    path = write_card(card, tmp_path / "sub" / "x.md")
    assert path.read_text() == text


def test_formatting_helpers() -> None:
    assert pct(0.95123) == "95.12 %"
    assert pct(1.0, 1) == "100.0 %"
    assert mb(2_617_725) == "2.62 MB"
