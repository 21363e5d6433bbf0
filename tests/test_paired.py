"""Paired comparison of guidances (McNemar's exact test) on known cases."""

import math

import numpy as np
import pytest
import xarray as xr
from scipy.stats import binom

from crystaldos.paired import format_p, mcnemar_exact, paired_match_table


def test_mcnemar_counts_discordant_pairs_and_gives_the_exact_two_sided_p():
    first = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 0], dtype=bool)
    second = np.array([0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 1, 0], dtype=bool)
    test = mcnemar_exact(first, second)
    assert (test["n"], test["both"], test["only_first"], test["only_second"]) == (12, 2, 7, 1)
    # 7 of 8 discordant crystals on one side: P(X <= 1) + P(X >= 7) for X ~ Bin(8, 1/2) = 18 / 256.
    assert test["p"] == pytest.approx(2 * binom.cdf(1, 8, 0.5)) == pytest.approx(18 / 256)
    # Swapping the two guidances swaps the counts and keeps p.
    swapped = mcnemar_exact(second, first)
    assert (swapped["only_first"], swapped["only_second"], swapped["p"]) == (1, 7, test["p"])


def test_identical_outcomes_are_no_evidence_either_way():
    same = np.array([True, False, True])
    assert mcnemar_exact(same, same) == {"n": 3, "both": 2, "only_first": 0, "only_second": 0, "p": 1.0}


def test_unpaired_outcomes_are_refused():
    with pytest.raises(ValueError, match="one length"):
        mcnemar_exact(np.ones(3, bool), np.ones(4, bool))


def _results(matched: np.ndarray) -> xr.Dataset:
    """Results shaped like an experiment's: matched (guidance, t_start, structure)."""
    return xr.Dataset({"matched": (("guidance", "t_start", "structure"), matched.astype(float))},
                      coords={"guidance": ["cbg", "cfg", "none"], "t_start": [1000, 200], "structure": ["a", "b", "c", "d"]})


def test_the_table_has_one_row_per_t_start_and_pair_of_guidances():
    matched = np.zeros((3, 2, 4))
    matched[1, 1] = [1, 1, 1, 0]  # CFG from 200 matches three crystals
    matched[2, 1] = [1, 0, 0, 0]  # the unguided model one of them
    table = paired_match_table(_results(matched))
    assert len(table) == 6 and list(table.t_start) == [1000] * 3 + [200] * 3
    row = table[(table.t_start == 200) & (table.A == "cfg") & (table.B == "none")].iloc[0]
    assert (row["A match (%)"], row["B match (%)"], row["both"], row["only A"], row["only B"]) == (75.0, 25.0, 1, 2, 0)
    assert row["p (McNemar exact)"] == pytest.approx(0.5)  # 2 of 2 discordant on one side: 2 * 1/4


def test_unfinished_settings_are_refused_not_dropped():
    matched = np.zeros((3, 2, 4))
    matched[0, 0, 2] = np.nan
    with pytest.raises(ValueError, match="t_start = 1000"):
        paired_match_table(_results(matched))
    with pytest.raises(KeyError, match="matched_cdvae"):
        paired_match_table(_results(np.zeros((3, 2, 4))), variable="matched_cdvae")


def test_p_values_print_to_the_precision_they_have():
    assert format_p(0.1512) == "0.15" and format_p(3e-13) == "< 1e-12" and format_p(math.nan) == "nan"
