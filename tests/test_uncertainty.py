"""Uncertainty measures against SCHEDULERS.md §6.3.10 (margin, bins, histogram) and §7(f) (BALD,
exact BatchBALD), the properties of the reference BatchBALD estimator (§7 steps 1–5), and the
true BatchBALD of its greedy selection (`batchbald`, the default u_k) against exact
enumeration."""

import math

import numpy as np
import pytest

from mtlrun.schedulers.uncertainty import (
    bald,
    batchbald,
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
BALD_ROW = 0.368064  # §7(f): its BALD
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


# --- §7 batchbald: the true BatchBALD of the greedy selection ------------------------------
def near_chance(rng, N, M=8, spread=1e-3):
    """Binary rows whose M passes all sit within `spread` of [0.5, 0.5]: maximal aleatoric
    entropy, almost no epistemic uncertainty (still above the 1e-6 no-spread shortcut)."""
    p1 = 0.5 + spread * rng.uniform(-1, 1, size=(N, 1, M))
    return np.concatenate([p1, 1 - p1], axis=1)


def test_batchbald_on_the_redundant_pair_is_the_exact_oracle():
    scores = batchbald(mc(INFORMATIVE, INFORMATIVE), np.random.default_rng(0))
    np.testing.assert_allclose(scores, [0.368064, 0.514375], atol=1e-5)  # §7(f)
    assert scores[1] < bald(mc(INFORMATIVE, INFORMATIVE)).sum()
    scores = batchbald(mc(INFORMATIVE, UNINFORMATIVE), np.random.default_rng(0))
    np.testing.assert_allclose(scores, [0.368064, 0.368064], atol=1e-5)  # additive


@pytest.mark.parametrize("seed, C, steps", [(20, 2, 10), (21, 2, 10), (22, 3, 7)])
def test_batchbald_equals_exact_batchbald_on_every_selected_prefix(seed, C, steps):
    """Histories whose C**h label configurations are at most M·S = 4000 are enumerated: all 10
    steps of a binary task, 7 of a 3-class one (3**7 = 2187)."""
    P = random_mc(np.random.default_rng(seed), 40, C, 8, concentration=0.7)
    scores, history = batchbald(P, None, max_iter=steps, return_history=True)  # no draws
    assert len(scores) == steps
    for k, score in enumerate(scores):
        assert score == pytest.approx(batchbald_exact(P[history[: k + 1]]), abs=2e-5), k


def test_monte_carlo_batchbald_matches_exact_batchbald_within_sampling_error():
    P = random_mc(np.random.default_rng(23), 30, 3, 8, concentration=0.7)
    scores, history = batchbald(
        P, np.random.default_rng(0), num_samples=4000, max_iter=6, exact_configs=0,
        return_history=True,
    )  # fmt: skip
    exact = [batchbald_exact(P[history[: k + 1]]) for k in range(len(scores))]
    np.testing.assert_allclose(scores, exact, atol=0.02)
    assert np.ptp(exact) > 0.5  # the comparison covers sets of very different values


def test_batchbald_mixes_enumeration_and_sampling_by_the_configuration_count():
    """3 classes, M·S = 8·40 = 320 draws: steps with 3**h ≤ 320 (h ≤ 5) enumerate, later ones
    sample, and still agree with exact enumeration within the sampling error."""
    P = random_mc(np.random.default_rng(24), 30, 3, 8, concentration=0.5)
    with pytest.raises(ValueError, match="rng"):
        batchbald(P, None, num_samples=40, max_iter=7)  # step 6 samples: needs a generator
    scores, history = batchbald(P, np.random.default_rng(1), num_samples=40, max_iter=7,
                                return_history=True)  # fmt: skip
    exact = [batchbald_exact(P[history[: k + 1]]) for k in range(len(scores))]
    np.testing.assert_allclose(scores[:6], exact[:6], atol=2e-5)  # enumerated
    np.testing.assert_allclose(scores[6:], exact[6:], atol=0.15)  # 320 draws


@pytest.mark.parametrize("seed", [3, 4])
def test_sampled_batchbald_selects_like_the_reference_and_estimates_the_information(seed):
    """Sampled (exact_configs=0) with the same generator, both make the same draws: the same
    rows in the same order. The true scores agree with exact enumeration of each selected set
    within the sampling error, and so does the reference minus the history's conditionals."""
    P = random_mc(np.random.default_rng(25), 64, 2, 8)
    ref, ref_history = batchbald_ref(P, np.random.default_rng(seed), return_history=True)
    true, history = batchbald(P, np.random.default_rng(seed), exact_configs=0, return_history=True)
    np.testing.assert_array_equal(history, ref_history)
    exact = np.array([batchbald_exact(P[history[: k + 1]]) for k in range(len(true))])
    np.testing.assert_allclose(true, exact, atol=0.03)
    history_cond = np.concatenate([[0.0], np.cumsum(conditional_entropy(P)[history])])
    np.testing.assert_allclose(ref - history_cond[: len(ref)], exact, atol=0.05)
    assert np.all(ref[1:] - exact[1:] > 0.3)  # the reference counts aleatoric entropy on top


def test_sampled_batchbald_error_vanishes_with_the_information():
    """7 classes, passes that agree within 0.1 %: the information is ~1e-6. Estimated from the
    same M·S draws as the reference, the low-variance form stays within 1e-4 of it, where the
    reference's joint entropy minus the conditionals is off by 1e-2."""
    rng = np.random.default_rng(26)
    P = rng.dirichlet(np.ones(7), size=128)[:, :, None] * (
        1 + 1e-3 * rng.uniform(-1, 1, (128, 7, 8))
    )
    P /= P.sum(axis=1, keepdims=True)
    assert bald(P).max() < 1e-6
    true = batchbald(P, np.random.default_rng(0), exact_configs=0)
    ref, history = batchbald_ref(P, np.random.default_rng(0), return_history=True)
    history_cond = np.concatenate([[0.0], np.cumsum(conditional_entropy(P)[history])])
    assert np.abs(true).max() < 1e-4
    assert np.abs(ref - history_cond[: len(ref)]).max() > 1e-2


def test_agreeing_passes_at_chance_give_zero_where_the_reference_gives_about_3():
    """No epistemic uncertainty but maximal aleatoric entropy (every pass ≈ [0.5, 0.5]): the
    mutual information is ≈ 0, the reference scores ≈ ln 2 · mean(0..9) = 3.12 (the issue)."""
    P = near_chance(np.random.default_rng(26), 200)
    assert np.abs(P - P[..., :1]).max() > 1e-6  # not the no-spread shortcut: the estimators run
    u_true = task_uncertainty(P, "batchbald", np.random.default_rng(0))
    u_ref = task_uncertainty(P, "batchbald_ref", np.random.default_rng(0))
    assert 0 <= u_true < 1e-4
    assert u_ref == pytest.approx(math.log(2) * 4.5, abs=0.01)
    assert np.all(np.abs(batchbald(P[:128], np.random.default_rng(0))) < 1e-4)


def test_identical_rows_are_worth_less_than_the_sum_of_their_balds():
    P = mc(*[INFORMATIVE] * 6)
    scores = batchbald(P, None)
    assert len(scores) == 6
    k = np.arange(1, 7)
    np.testing.assert_allclose(scores, [batchbald_exact(P[:n]) for n in k], atol=1e-5)
    assert np.all(scores[1:] < k[1:] * BALD_ROW - 0.1)  # redundancy is not counted again
    assert np.all(scores <= math.log(2) + 1e-6)  # I(y; ω) ≤ H(ω) = log M with M = 2 passes


def test_batchbald_grows_with_the_set_and_is_bounded_by_log_m():
    """I(y_S; ω) never decreases when rows are added, and ω takes M values."""
    P = random_mc(np.random.default_rng(27), 128, 2, 8, concentration=0.3)
    scores = batchbald(P, None)
    assert np.all(np.diff(scores) >= -1e-6)
    assert scores[-1] <= math.log(8) + 1e-6 and scores[0] == pytest.approx(bald(P).max())


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
    # batchbald (the default): the same minibatches and the same average of the true scores
    scores = [batchbald(P[i : i + 128], None) for i in range(0, 300, 128)]
    u_true = task_uncertainty(P, rng=np.random.default_rng(5), batch_size=128)
    assert u_true == pytest.approx(np.concatenate(scores).mean(), abs=1e-12)
    assert 0 < u_true < u


def test_task_uncertainty_exact_chunks_adapt_to_many_classes():
    P = random_mc(np.random.default_rng(8), 10, 10, 4)
    chunks = [batchbald_exact(P[i : i + 4]) for i in range(0, 10, 4)]
    assert task_uncertainty(P, "batchbald_exact") == pytest.approx(np.mean(chunks), abs=1e-9)


@pytest.mark.parametrize(
    "estimator", ["batchbald", "batchbald_ref", "bald_mean", "batchbald_exact"]
)
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
