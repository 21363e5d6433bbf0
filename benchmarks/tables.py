"""Printing of benchmark results: each row as soon as it is measured (a killed run still tells something),
then the whole table as markdown for the docs."""

from __future__ import annotations

import pandas as pd


def show_row(rows: list[dict], float_format: str = "%.2f") -> None:
    """Print the last row of ``rows``."""
    print(pd.DataFrame(rows[-1:]).to_string(index=False, float_format=float_format), flush=True)


def show_table(rows: list[dict], caption: str, floatfmt: str = ".2f") -> None:
    """Print a caption line and every row as a markdown table."""
    print(f"\n{caption}")
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=floatfmt))
