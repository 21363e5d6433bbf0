"""Paired comparison of two guidances on the same crystals: is one match rate really above the other?

Every setting of the reconstruction experiment samples the same test crystals, so two guidances are compared
crystal by crystal: only the crystals that one matches and the other does not (the discordant pairs) carry
information about which is better. Under the null hypothesis that neither is better each discordant crystal
falls to either side with probability 1/2; the two-sided exact binomial test of that (McNemar's exact test, the
sign test on the discordant pairs) gives the p-value. A difference of a few crystals in a few hundred is
noise; the README's "CBG at least equals the unguided model" claims are read off this table.
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pandas as pd
import xarray as xr
from scipy.stats import binomtest

#: The p-value column of :func:`paired_match_table` (the report prints it as text with :func:`format_p`).
P_VALUE_COLUMN = "p (McNemar exact)"
COLUMNS = ("t_start", "A", "B", "n", "A match (%)", "B match (%)", "both", "only A", "only B", P_VALUE_COLUMN)


def mcnemar_exact(first: np.ndarray, second: np.ndarray) -> dict[str, float]:
    """Compare two paired boolean outcomes (n,) (e.g. matched by guidance A / by guidance B, same crystals).

    Returns ``only_first`` and ``only_second`` (counts of discordant crystals), ``both`` and ``n``, and ``p``: the
    two-sided exact binomial p-value of the discordant counts under p = 1/2 (1.0 when there are none).
    """
    first, second = np.asarray(first, dtype=bool), np.asarray(second, dtype=bool)
    if first.shape != second.shape or first.ndim != 1:
        raise ValueError(f"paired outcomes need two 1-D arrays of one length, got shapes {first.shape} and {second.shape}")
    only_first = int(np.sum(first & ~second))
    only_second = int(np.sum(~first & second))
    discordant = only_first + only_second
    p = binomtest(only_first, discordant, 0.5).pvalue if discordant else 1.0
    return {"n": int(first.size), "both": int(np.sum(first & second)), "only_first": only_first,
            "only_second": only_second, "p": float(p)}


def paired_match_table(ds: xr.Dataset, variable: str = "matched") -> pd.DataFrame:
    """One row per t_start and pair of guidances of an experiment's results (dims guidance, t_start, structure):
    both match rates (%), the crystals matched by both and by only one of them, and McNemar's exact p-value.

    ``variable``: the 0/1 outcome compared, ``"matched"`` (default) or ``"matched_cdvae"`` (CDVAE's protocol).
    Settings with missing outcomes (NaN: a crystal not sampled) are refused rather than silently dropped.
    """
    if variable not in ds:
        raise KeyError(f"the results have no {variable!r} variable (have: {sorted(ds.data_vars)})")
    rows = []
    for t in ds.t_start.values:
        for a, b in combinations([str(g) for g in ds.guidance.values], 2):
            first, second = (ds[variable].sel(guidance=g, t_start=t).values for g in (a, b))
            if np.isnan(first).any() or np.isnan(second).any():
                raise ValueError(f"{variable} has missing values for t_start = {int(t)} ({a} or {b}): compare finished settings only")
            test = mcnemar_exact(first == 1, second == 1)
            rate = lambda only: 100 * (test["both"] + only) / test["n"]  # noqa: E731 - a match rate from the counts
            rows.append(dict(zip(COLUMNS, (int(t), a, b, test["n"], rate(test["only_first"]), rate(test["only_second"]),
                                           test["both"], test["only_first"], test["only_second"], test["p"]))))
    return pd.DataFrame(rows, columns=list(COLUMNS))


def format_p(p: float) -> str:
    """A p-value as text: two significant digits, '< 1e-12' below that (binomtest's precision)."""
    if math.isnan(p):
        return "nan"
    return "< 1e-12" if p < 1e-12 else f"{p:.2g}"
