"""Model cards: a markdown file next to each shipped model with its numbers and recipe.

Kept deliberately dumb (data in, markdown out) so that every number in a card comes from the
command that measured it, and the writer itself is easy to test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Card:
    """Content of one model card."""

    title: str
    summary: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    sections: list[tuple[str, str]] = field(default_factory=list)

    def add(self, heading: str, body: str) -> None:
        """Append a section (markdown body)."""
        self.sections.append((heading, body.strip()))


def _cell(value: object) -> str:
    """One table cell: pipes escaped, newlines flattened (a table row must stay on one line)."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = [
        "| " + " | ".join(_cell(h) for h in headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render(card: Card) -> str:
    """The card as markdown text."""
    parts = [f"# {card.title}", "", card.summary.strip(), ""]
    if card.facts:
        parts += [table(("", ""), card.facts), ""]
    for heading, body in card.sections:
        parts += [f"## {heading}", "", body, ""]
    return "\n".join(parts).rstrip() + "\n"


def write_card(card: Card, path: Path) -> Path:
    """Write the card (creating the folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(card), encoding="utf-8")
    return path


def pct(x: float, digits: int = 2) -> str:
    """0.9512 -> '95.12 %'."""
    return f"{100.0 * x:.{digits}f} %"


def mb(n_bytes: int) -> str:
    """Bytes -> 'x.xx MB' (10^6, as file sizes are usually quoted)."""
    return f"{n_bytes / 1e6:.2f} MB"
