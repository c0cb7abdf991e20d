"""Per-metric summaries against numpy's statistics and the analytical normal confidence interval."""

import numpy as np
import pytest
from scipy import stats

from unetjax.evaluation.statistics import bootstrap_ci, summarize


def test_the_bootstrap_ci_of_a_large_normal_sample_matches_the_analytical_interval():
    values = np.random.default_rng(0).normal(3.0, 2.0, 4000)
    half_width = stats.norm.ppf(0.975) * values.std(ddof=1) / np.sqrt(values.size)
    low, high = bootstrap_ci(values, resamples=4000)
    assert low == pytest.approx(values.mean() - half_width, abs=0.1 * half_width)
    assert high == pytest.approx(values.mean() + half_width, abs=0.1 * half_width)


def test_the_95_percent_ci_covers_the_true_mean_about_95_percent_of_the_time():
    # 400 samples of 40: binomial sd of the coverage is about 1.1 points; the percentile
    # bootstrap runs slightly under 95% at this n. A 90% interval would land near 0.89.
    rng = np.random.default_rng(1)
    covered = 0
    trials = 400
    for trial in range(trials):
        low, high = bootstrap_ci(rng.normal(3.0, 2.0, 40), resamples=1000, seed=trial)
        covered += low <= 3.0 <= high
    assert 0.91 <= covered / trials <= 0.98


def test_a_wider_confidence_gives_a_wider_interval():
    values = np.random.default_rng(2).normal(0.0, 1.0, 200)
    low_90, high_90 = bootstrap_ci(values, confidence=0.9)
    low_99, high_99 = bootstrap_ci(values, confidence=0.99)
    assert low_99 < low_90 < values.mean() < high_90 < high_99


def test_nan_values_are_left_out_of_every_statistic_and_counted():
    summary = summarize([1.0, 2.0, float("nan"), 3.0, 10.0, float("nan")])
    kept = np.array([1.0, 2.0, 3.0, 10.0])
    assert (summary.n, summary.n_nan) == (4, 2)
    assert summary.mean == pytest.approx(kept.mean())
    assert summary.sd == pytest.approx(np.std(kept, ddof=1))
    assert summary.median == pytest.approx(2.5)
    assert summary.ci_low <= summary.mean <= summary.ci_high
    assert kept.min() <= summary.ci_low and summary.ci_high <= kept.max()


def test_the_seed_fixes_the_interval():
    values = np.random.default_rng(3).exponential(1.0, 50)
    assert bootstrap_ci(values, seed=5) == bootstrap_ci(values, seed=5)
    assert bootstrap_ci(values, seed=5) != bootstrap_ci(values, seed=6)


def test_too_few_values_give_nan_where_undefined():
    single = summarize([4.0, float("nan")])
    assert (single.mean, single.median, single.n, single.n_nan) == (4.0, 4.0, 1, 1)
    assert np.isnan([single.sd, single.ci_low, single.ci_high]).all()
    nothing = summarize([float("nan")])
    assert (nothing.n, nothing.n_nan) == (0, 1)
    assert np.isnan([nothing.mean, nothing.sd, nothing.median, nothing.ci_low]).all()


def test_large_inputs_are_resampled_in_blocks_with_the_same_statistics():
    values = np.random.default_rng(4).normal(1.0, 1.0, 30_000)
    low, high = bootstrap_ci(values, resamples=300)
    half_width = stats.norm.ppf(0.975) * values.std(ddof=1) / np.sqrt(values.size)
    assert low == pytest.approx(values.mean() - half_width, abs=0.25 * half_width)
    assert high == pytest.approx(values.mean() + half_width, abs=0.25 * half_width)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci([1.0, 2.0], confidence=95)
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_ci([1.0, 2.0], resamples=0)
