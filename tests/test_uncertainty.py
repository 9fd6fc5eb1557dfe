"""Uncertainty measures against SCHEDULERS.md §6.3.10 (margin, bins, histogram) and §7(f) (BALD,
exact BatchBALD), plus the properties of the reference BatchBALD estimator (§7 steps 1–5)."""

import math

import numpy as np
import pytest

from mtlrun.schedulers.uncertainty import (
    bald,
    batchbald_exact,
    batchbald_ref,
    conditional_entropy,
    entropy,
    exact_chunk_size,
    histogram,
    histogram_state,
    joint_entropy_exact,
    least_confidence,
    margin,
    normalised_entropy,
    row_uncertainty,
    task_uncertainty,
)

TOL = 1e-6


def mc(*rows_by_pass):
    """[N, C, M] from per-row lists of MC passes (each pass a class distribution)."""
    return np.array(rows_by_pass, dtype=np.float64).transpose(0, 2, 1)


INFORMATIVE = [[0.9, 0.1], [0.1, 0.9]]  # §7(f): M = 2 passes that disagree
UNINFORMATIVE = [[0.5, 0.5], [0.5, 0.5]]  # §7(f): all passes [0.5, 0.5]


def random_mc(rng, N, C, M, concentration=1.0):
    return rng.dirichlet(np.full(C, concentration), size=(N, M)).transpose(0, 2, 1)


# --- §6.3.10: margin, bins, histogram ---------------------------------------------------------
def test_margin_and_bins_oracle():
    probs = np.array([[0.62, 0.25, 0.13], [0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    zeta = margin(probs)
    np.testing.assert_allclose(zeta, [0.63, 1.0, 0.0], atol=TOL)
    for z, expected_bin in zip(zeta, (12, 19, 0), strict=True):
        h = histogram([z], 20)
        assert h[expected_bin] == 1.0 and h.sum() == 1.0


def test_margin_ignores_class_order():
    np.testing.assert_allclose(margin(np.array([[0.13, 0.25, 0.62]])), [0.63], atol=TOL)


def test_histogram_oracle_counts_and_normalised_vector():
    values = [0.0, 0.049, 0.05, 0.5, 0.52, 0.97, 1.0]
    h = histogram(values, 20)
    assert h.shape == (20,)
    np.testing.assert_allclose(h * 7, np.bincount([0, 1, 10, 19], [2, 1, 2, 2], minlength=20))
    expected = np.zeros(20)
    expected[[0, 1, 10, 19]] = [0.285714, 0.142857, 0.285714, 0.285714]
    np.testing.assert_allclose(h, expected, atol=TOL)


def test_histogram_matches_numpy_semantics_and_edge_cases():
    rng = np.random.default_rng(0)
    values = rng.random(1000)
    counts, _ = np.histogram(values, bins=20, range=(0, 1))
    np.testing.assert_allclose(histogram(values, 20), counts / 1000)
    np.testing.assert_array_equal(histogram([], 20), np.zeros(20))  # empty: zeros
    assert histogram([1.0 + 1e-16, -1e-17], 20)[[0, 19]].tolist() == [0.5, 0.5]  # clipped


def test_state_for_two_tasks_is_the_concatenation_of_length_40():
    task0 = np.array([[0.62, 0.25, 0.13], [0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    task1 = np.array([[0.5, 0.5]])
    state = histogram_state([task0, task1], "margin", 20)
    assert state.shape == (40,)
    expected = np.zeros(40)
    expected[[0, 12, 19]] = 1 / 3
    expected[20 + 19] = 1.0
    np.testing.assert_allclose(state, expected, atol=TOL)


def test_one_class_margin_raises():
    with pytest.raises(ValueError, match="two classes"):
        margin(np.ones((4, 1)))


def test_other_row_measures():
    probs = np.array([[0.62, 0.25, 0.13], [1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(least_confidence(probs), [0.38, 2 / 3, 0.0], atol=TOL)
    h0 = -(0.62 * math.log(0.62) + 0.25 * math.log(0.25) + 0.13 * math.log(0.13)) / math.log(3)
    np.testing.assert_allclose(normalised_entropy(probs), [h0, 1.0, 0.0], atol=TOL)
    np.testing.assert_array_equal(normalised_entropy(np.ones((2, 1))), [0.0, 0.0])
    for name, fn in (("margin", margin), ("least_conf", least_confidence)):
        np.testing.assert_array_equal(row_uncertainty(probs, name), fn(probs))
    np.testing.assert_array_equal(row_uncertainty(probs, "entropy"), normalised_entropy(probs))
    with pytest.raises(ValueError, match="unknown uncertainty measure"):
        row_uncertainty(probs, "variance")
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        margin(np.ones(3))


# --- §7(f): BALD and exact BatchBALD ----------------------------------------------------------
def test_bald_oracle():
    P = mc(INFORMATIVE)
    assert entropy(P.mean(axis=2), axis=1)[0] == pytest.approx(0.693147, abs=TOL)
    assert conditional_entropy(P)[0] == pytest.approx(0.325083, abs=TOL)
    assert bald(P)[0] == pytest.approx(0.368064, abs=TOL)
    assert bald(mc(UNINFORMATIVE))[0] == 0.0


def test_exact_batchbald_of_a_redundant_pair():
    pair = mc(INFORMATIVE, INFORMATIVE)
    assert joint_entropy_exact(pair) == pytest.approx(1.164541, abs=TOL)
    assert conditional_entropy(pair).sum() == pytest.approx(0.650166, abs=TOL)
    assert batchbald_exact(pair) == pytest.approx(0.514375, abs=TOL)
    assert bald(pair).sum() == pytest.approx(0.736128, abs=TOL)
    assert batchbald_exact(pair) < bald(pair).sum()  # redundancy is not counted twice


def test_exact_batchbald_is_additive_with_an_uninformative_example():
    assert batchbald_exact(mc(INFORMATIVE, UNINFORMATIVE)) == pytest.approx(0.368064, abs=TOL)


def test_exact_batchbald_of_one_row_is_its_bald():
    rng = np.random.default_rng(3)
    P = random_mc(rng, 1, 4, 8)
    assert batchbald_exact(P) == pytest.approx(bald(P)[0], abs=1e-12)


def test_exact_joint_entropy_refuses_too_many_configurations():
    with pytest.raises(ValueError, match="configurations"):
        joint_entropy_exact(np.full((17, 2, 2), 0.5))
    assert exact_chunk_size(2) == 8 and exact_chunk_size(10) == 4 and exact_chunk_size(300) == 1


# --- §7 batchbald_ref -------------------------------------------------------------------------
def test_ref_first_score_is_the_largest_bald():
    P = random_mc(np.random.default_rng(1), 40, 3, 8)
    scores, history = batchbald_ref(P, np.random.default_rng(0), return_history=True)
    assert history[0] == np.argmax(bald(P))
    assert scores[0] == pytest.approx(bald(P).max(), abs=1e-12)
    assert len(history) == len(scores) + 1


def test_ref_on_a_redundant_pair_counts_less_than_the_sum_of_balds():
    pair = mc(INFORMATIVE, INFORMATIVE)
    scores = batchbald_ref(pair, np.random.default_rng(0))
    # the estimate is exact here: both label configurations of the history weigh the same
    np.testing.assert_allclose(scores, [0.368064, 1.164541 - 0.325083], atol=1e-5)
    batch_bald = scores[1] - conditional_entropy(pair)[0]  # remove the history's cond. entropy
    assert batch_bald == pytest.approx(0.514375, abs=1e-5)
    assert batch_bald < bald(pair).sum()


def test_ref_on_independent_and_uninformative_partners_is_additive():
    independent = mc([[0.9, 0.1], [0.9, 0.1], [0.1, 0.9], [0.1, 0.9]],
                     [[0.9, 0.1], [0.1, 0.9], [0.9, 0.1], [0.1, 0.9]])  # fmt: skip
    scores = batchbald_ref(independent, np.random.default_rng(0))
    cond = conditional_entropy(independent)
    assert scores[1] - cond[0] == pytest.approx(bald(independent).sum(), abs=1e-5)
    scores = batchbald_ref(mc(INFORMATIVE, UNINFORMATIVE), np.random.default_rng(0))
    np.testing.assert_allclose(scores, [0.368064, math.log(2)], atol=1e-5)


def test_ref_scores_converge_to_exact_batchbald_plus_history_conditionals():
    P = random_mc(np.random.default_rng(2), 6, 2, 8)
    scores, history = batchbald_ref(
        P, np.random.default_rng(0), num_samples=20_000, return_history=True
    )
    cond = conditional_entropy(P)
    assert len(scores) == 6  # the history covers the batch
    for k in range(1, len(scores)):
        expected = batchbald_exact(P[history[: k + 1]]) + cond[history[:k]].sum()
        assert scores[k] == pytest.approx(expected, abs=0.01)


def test_ref_stops_when_the_history_covers_the_batch():
    P = random_mc(np.random.default_rng(4), 3, 2, 8, concentration=0.5)
    scores, history = batchbald_ref(P, np.random.default_rng(0), return_history=True)
    assert len(scores) == 3 and np.all(scores > -1000)
    assert sorted(history[:3]) == [0, 1, 2]
    assert batchbald_ref(P[:1], np.random.default_rng(0)).tolist() == [bald(P[:1])[0]]
    assert batchbald_ref(P[:0], np.random.default_rng(0)).shape == (0,)


def test_ref_runs_at_most_max_iter_iterations():
    P = random_mc(np.random.default_rng(5), 30, 2, 8, concentration=0.5)
    assert len(batchbald_ref(P, np.random.default_rng(0))) == 10
    assert len(batchbald_ref(P, np.random.default_rng(0), max_iter=3)) == 3


def test_ref_stops_after_more_than_50_low_scores():
    confident = np.zeros((128, 2, 8))
    confident[:, 0, :] = 1.0  # every pass certain of class 0: every score is 0 < 0.1
    scores = batchbald_ref(confident, np.random.default_rng(0), max_iter=100)
    assert len(scores) == 51
    np.testing.assert_allclose(scores, 0.0, atol=1e-6)


def test_ref_is_deterministic_given_the_generator():
    P = random_mc(np.random.default_rng(6), 50, 3, 8)
    a = batchbald_ref(P, np.random.default_rng(11))
    b = batchbald_ref(P, np.random.default_rng(11))
    c = batchbald_ref(P, np.random.default_rng(12))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


# --- task score u_k ---------------------------------------------------------------------------
def test_task_uncertainty_estimators():
    P = random_mc(np.random.default_rng(7), 300, 2, 8)
    assert task_uncertainty(P, "bald_mean") == pytest.approx(bald(P).mean(), abs=1e-12)
    # exact: consecutive chunks of 8 binary rows, the last one shorter, averaged over chunks
    chunks = [batchbald_exact(P[i : i + 8]) for i in range(0, 300, 8)]
    assert task_uncertainty(P, "batchbald_exact") == pytest.approx(np.mean(chunks), abs=1e-9)
    # ref: every returned score of every minibatch of 128 rows, averaged together
    rng = np.random.default_rng(5)
    scores = [batchbald_ref(P[i : i + 128], rng) for i in range(0, 300, 128)]
    u = task_uncertainty(P, "batchbald_ref", np.random.default_rng(5), batch_size=128)
    assert u == pytest.approx(np.concatenate(scores).mean(), abs=1e-12)
    assert u > 0


def test_task_uncertainty_exact_chunks_adapt_to_many_classes():
    P = random_mc(np.random.default_rng(8), 10, 10, 4)
    chunks = [batchbald_exact(P[i : i + 4]) for i in range(0, 10, 4)]
    assert task_uncertainty(P, "batchbald_exact") == pytest.approx(np.mean(chunks), abs=1e-9)


@pytest.mark.parametrize("estimator", ["batchbald_ref", "bald_mean", "batchbald_exact"])
def test_agreeing_passes_carry_no_uncertainty(estimator):
    rng = np.random.default_rng(9)
    one_pass = rng.dirichlet(np.ones(3), size=40)[:, :, None]
    P = np.repeat(one_pass, 8, axis=2)  # a model without dropout: M identical passes
    assert task_uncertainty(P, estimator, np.random.default_rng(0)) == 0.0


def test_task_uncertainty_edge_cases():
    assert math.isnan(task_uncertainty(np.zeros((0, 2, 8)), "bald_mean"))
    P = random_mc(np.random.default_rng(10), 5, 2, 8)
    with pytest.raises(ValueError, match="rng"):
        task_uncertainty(P, "batchbald_ref")
    with pytest.raises(ValueError, match="unknown estimator"):
        task_uncertainty(P, "bald_max")
    with pytest.raises(ValueError, match=r"\[N, C, M\]"):
        task_uncertainty(P[0], "bald_mean")
