"""CSV cells a spreadsheet will not run: text starting like a formula gets a leading quote, and loses it when read."""
from __future__ import annotations

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # spreadsheets run a cell that starts with one of these


def text_cell(text: str) -> str:
    """`text` made inert for spreadsheets: a leading quote before =, +, -, @ (OWASP's CSV injection rule)."""
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def cell_text(cell: str) -> str:
    """The text a cell written by `text_cell` stands for."""
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(FORMULA_STARTS) else cell
