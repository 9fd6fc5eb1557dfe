"""Uncertainty measures over a model's dev-set outputs (§6.3.2 and §7): pure numpy,
no model, no torch.

Two families:

* **Per-row measures of one softmax output** `probs [N, C]` (QLS state, §6.3.2): the margin
  ζ = 1 − p(1) + p(2), least confidence 1 − p(1), normalised entropy H(p)/log C, and the
  normalised histogram of such values (`histogram`, `histogram_state`).
* **Epistemic measures over M MC-dropout passes** `mc_probs [N, C, M]` (Fang & Alqatari, §7):
  per-row BALD, exact BatchBALD of a small set, a greedy BatchBALD selection over a dev
  minibatch scored two ways, and the task score u_k (`task_uncertainty`):
  - `batchbald` (the default u_k): the true BatchBALD of each selected set, the mutual
    information I(y_1..y_n; ω) that Fang & Alqatari defines u_k as, exact by enumeration while the
    history's C**h configurations are no more than the reference's M·S draws;
  - `batchbald_ref`: the scores of FANG-CODE's estimator, which leave the history's conditional
    entropies in (BatchBALD + Σ aleatoric entropy; not a mutual information).

A row is one example (classification) or one token (tagging). Entropies use the natural log,
with 0·log 0 = 0. Every random draw comes from the `numpy.random.Generator` passed in (§1.4.1).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

ROW_MEASURES = ("margin", "least_conf", "entropy")
ESTIMATORS = ("batchbald", "batchbald_ref", "bald_mean", "batchbald_exact")
# which dropout samples in the MC passes (SignalRequest.mc_dropout; training/signals.py)
MC_DROPOUT_SCOPES = ("all", "heads")

MAX_EXACT_CONFIGS = 2**16  # batchbald_exact refuses C**n above this
EXACT_CHUNK = 8  # §7: exact BatchBALD on chunks of n <= 8 rows
NO_SPREAD = 1e-6  # MC passes that all agree within this carry no epistemic signal (§7(d))
HISTORY_PENALTY = -1000.0  # [R] score given to rows already in the BatchBALD history
_TINY32 = np.finfo(np.float32).tiny


# --- per-row measures of one softmax output (§6.3.2) ------------------------------------------
def _array(values: np.ndarray, shape: str) -> np.ndarray:
    """float64 array with as many axes as `shape` names (e.g. "[N, C]"), else ValueError."""
    p = np.asarray(values, dtype=np.float64)
    if p.ndim != shape.count(",") + 1:
        raise ValueError(f"expected {shape} (got shape {p.shape})")
    return p


def _check_probs(probs: np.ndarray) -> np.ndarray:
    return _array(probs, "probs [N, C]")


def margin(probs: np.ndarray) -> np.ndarray:
    """§6.3.2 eq. 4 [P, QLS]: ζ = 1 − p(1) + p(2) per row, with p(1) ≥ p(2) the two largest
    class probabilities. 0 = confident, 1 = a tie for the top class. Clipped to [0, 1] against
    float rounding. One-class heads (C == 1) have no margin: ValueError (§6.3.9)."""
    p = _check_probs(probs)
    C = p.shape[1]
    if C < 2:
        raise ValueError(f"the margin needs at least two classes (got C = {C})")
    top2 = np.partition(p, (C - 2, C - 1), axis=1)[:, C - 2 :]  # [N, 2]: second, first
    return np.clip(1.0 - top2[:, 1] + top2[:, 0], 0.0, 1.0)


def least_confidence(probs: np.ndarray) -> np.ndarray:
    """§6.3.2 option `least_conf`: 1 − p(1) per row."""
    p = _check_probs(probs)
    return np.clip(1.0 - p.max(axis=1, initial=0.0), 0.0, 1.0)


def _xlogx(p: np.ndarray) -> np.ndarray:
    """p·log p elementwise, with 0·log 0 = 0 (and no warnings)."""
    return p * np.log(p, out=np.zeros_like(p), where=p > 0)


def entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    """Shannon entropy H(q) = −Σ_c q_c log q_c (nats) along `axis`."""
    return -np.sum(_xlogx(np.asarray(p, dtype=np.float64)), axis=axis)


def normalised_entropy(probs: np.ndarray) -> np.ndarray:
    """§6.3.2 option `entropy`: H(p)/log C per row, in [0, 1]. A one-class head (C == 1) is
    certain: 0."""
    p = _check_probs(probs)
    C = p.shape[1]
    if C < 2:
        return np.zeros(len(p))
    return np.clip(entropy(p, axis=1) / math.log(C), 0.0, 1.0)


_ROW: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "margin": margin,
    "least_conf": least_confidence,
    "entropy": normalised_entropy,
}


def row_uncertainty(probs: np.ndarray, measure: str = "margin") -> np.ndarray:
    """The per-row measure named `measure` ("margin" | "least_conf" | "entropy"), §6.3.2."""
    try:
        return _ROW[measure](probs)
    except KeyError:
        raise ValueError(
            f"unknown uncertainty measure {measure!r}; one of {ROW_MEASURES}"
        ) from None


def histogram(values: np.ndarray, n_bins: int = 20) -> np.ndarray:
    """§6.3.2: h̃ = counts of `values` in `n_bins` equal bins on [0, 1] divided by the number of
    values. Bins as numpy.histogram(values, bins=n_bins, range=(0, 1)): right-open, the last bin
    closed (ζ = 1 is in the last bin). Values are clipped to [0, 1] first, so float rounding
    (1 + 1e-16) never drops a row. No values: all zeros (an empty set has no distribution; the
    state stays a fixed-length vector)."""
    v = np.clip(np.asarray(values, dtype=np.float64).ravel(), 0.0, 1.0)
    if len(v) == 0:
        return np.zeros(n_bins)
    counts, _ = np.histogram(v, bins=n_bins, range=(0.0, 1.0))
    return counts / len(v)


def histogram_state(
    probs_per_task: list[np.ndarray], measure: str = "margin", n_bins: int = 20
) -> np.ndarray:
    """§6.3.2: S = concat_k h̃_k, the QLS state (length n_bins·K)."""
    parts = [histogram(row_uncertainty(p, measure), n_bins) for p in probs_per_task]
    return np.concatenate(parts) if parts else np.zeros(0)


# --- epistemic measures over MC-dropout passes (§7) -------------------------------------------
def _check_mc(mc_probs: np.ndarray) -> np.ndarray:
    return _array(mc_probs, "mc_probs [N, C, M]")


def conditional_entropy(mc_probs: np.ndarray) -> np.ndarray:
    """(1/M) Σ_m H(P[i, :, m]) per row: the expected entropy, BALD's second term."""
    P = _check_mc(mc_probs)
    return entropy(P, axis=1).mean(axis=1)


def bald(mc_probs: np.ndarray) -> np.ndarray:
    """§7 step 2: BALD(x_i) = H((1/M) Σ_m P[i,:,m]) − (1/M) Σ_m H(P[i,:,m]) per row (nats).
    The mutual information between the label and the dropout mask; 0 when the passes agree."""
    P = _check_mc(mc_probs)
    return entropy(P.mean(axis=2), axis=1) - conditional_entropy(P)


def _joint_distribution(P: np.ndarray) -> np.ndarray:
    """p(y_1..y_n | m) = Π_i P[i, y_i, m] for every configuration: [C**n, M] (row-major, y_1
    slowest). P is [..., n, C, M]; leading axes are batched."""
    joint = P[..., 0, :, :]
    for i in range(1, P.shape[-3]):
        joint = joint[..., :, None, :] * P[..., i, None, :, :]
        joint = joint.reshape(*joint.shape[:-3], -1, joint.shape[-1])
    return joint


def joint_entropy_exact(mc_probs: np.ndarray) -> float:
    """H(y_1..y_n) with p̂(y_1..y_n) = (1/M) Σ_m Π_i P[i, y_i, m], by enumerating all C**n
    configurations (ValueError above 2**16)."""
    P = _check_mc(mc_probs)
    n, C, _ = P.shape
    if n == 0:
        return 0.0
    if C**n > MAX_EXACT_CONFIGS:
        raise ValueError(
            f"exact joint entropy of {n} rows with {C} classes needs {C}**{n} configurations "
            f"(more than {MAX_EXACT_CONFIGS}); use fewer rows"
        )
    return float(entropy(_joint_distribution(P).mean(axis=-1), axis=-1))


def batchbald_exact(mc_probs: np.ndarray) -> float:
    """§7 step 3 (Kirsch et al. 2019): BatchBALD(x_1..x_n) = H(y_1..y_n) − Σ_i (1/M) Σ_m
    H(P[i,:,m]), the joint entropy exact by enumeration (ValueError when C**n > 2**16)."""
    P = _check_mc(mc_probs)
    return joint_entropy_exact(P) - float(conditional_entropy(P).sum())


def _batchbald_exact_chunks(P: np.ndarray, n: int) -> np.ndarray:
    """batchbald_exact of consecutive chunks of n rows (the last may be shorter), vectorised
    over groups of equal-sized chunks."""
    N, C, M = P.shape
    cond = conditional_entropy(P)
    full = N // n
    values = []
    group = max(1, (1 << 22) // (C**n * M))  # chunks per group: ~4M floats of joint at a time
    for start in range(0, full, group):
        stop = min(full, start + group)
        chunk = P[start * n : stop * n].reshape(stop - start, n, C, M)
        values.append(entropy(_joint_distribution(chunk).mean(axis=-1), axis=-1))
    if N % n:
        values.append(np.array([joint_entropy_exact(P[full * n :])]))
    joint = np.concatenate(values) if values else np.zeros(0)
    bounds = np.arange(0, N, n)
    return joint - np.add.reduceat(cond, bounds)


def _sample_labels(P: np.ndarray, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """For every row i and pass m of P [h, C, M], `num_samples` labels drawn from P[i,:,m] by
    inverse CDF: [h, M, S]. Each row's CDF is normalised to end at exactly 1 and offset by its
    row number, so one sorted searchsorted serves all rows."""
    h, C, M = P.shape
    cdf = np.cumsum(P.transpose(0, 2, 1), axis=2).reshape(h * M, C)  # [R, C]
    cdf /= np.where(cdf[:, -1:] > 0, cdf[:, -1:], 1.0)
    offset = np.arange(h * M, dtype=np.float64)[:, None]
    u = rng.random((h * M, num_samples))  # in [0, 1)
    index = np.searchsorted((cdf + offset).ravel(), (u + offset).ravel(), side="right")
    labels = index.reshape(h * M, num_samples) - np.arange(h * M)[:, None] * C
    return np.clip(labels, 0, C - 1).reshape(h, M, num_samples)


def _unique_configs(configs: np.ndarray, C: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct rows of `configs` [Ns, h] (labels < C), their counts, and for every row of
    `configs` the index of its distinct row."""
    h = configs.shape[1]
    if h * math.log2(C) < 62:  # one int64 code per configuration: a 1-D unique is fast
        codes = configs @ (C ** np.arange(h, dtype=np.int64))
        _, first, inverse, counts = np.unique(
            codes, return_index=True, return_inverse=True, return_counts=True
        )
        return configs[first], counts, inverse.ravel()
    unique, inverse, counts = np.unique(configs, axis=0, return_inverse=True, return_counts=True)
    return unique, counts, inverse.ravel()


def _summed_predictive_entropy(
    posterior: np.ndarray, by_pass: np.ndarray, counts: np.ndarray
) -> np.ndarray:
    """−Σ_u counts_u · q_u log q_u with q_u = posterior_u @ by_pass, per column [B·C]; in float32
    blocks of ~1 MB (cache-resident; einsum, not BLAS: a GEMM with an inner size of M = 8 gains
    nothing from BLAS, whose worker threads then compete with the elementwise work)."""
    rows = max(16, (1 << 18) // by_pass.shape[1])
    weights = counts.astype(np.float32)
    total = np.zeros(by_pass.shape[1], dtype=np.float64)
    for s in range(0, len(posterior), rows):
        q = np.einsum("um,mk->uk", posterior[s : s + rows], by_pass)
        np.maximum(q, _TINY32, out=q)  # q·log q → 0 as q → 0
        q *= np.log(q)
        total -= np.einsum("u,uk->k", weights[s : s + rows], q)
    return total


def _all_configs(h: int, C: int) -> np.ndarray:
    """Every label configuration of h rows with C classes: [C**h, h] (row-major, y_1 slowest)."""
    return np.indices((C,) * h, dtype=np.int64).reshape(h, -1).T


def _greedy_batchbald(
    P: np.ndarray,
    rng: np.random.Generator | None,
    num_samples: int,
    max_iter: int,
    min_spread: float,
    max_low: int,
    exact_configs: int,
    information: bool = False,
) -> tuple[list[float], list[int], list[float]]:
    """The greedy BatchBALD selection shared by `batchbald_ref` and `batchbald` over the rows of
    P [B, C, M] (B ≥ 1). Returns (gains, history, infos): history[k] is the k-th selected row;
    gains[0] = BALD(history[0]) and gains[k] (k ≥ 1) the estimate of
    H(y_history[:k], y_history[k]) − cond_history[k] that selects it (the reference's score);
    with `information`, infos[k] estimates I(y_history[:k+1]; ω) (else infos is empty).

    Selection. The joint entropy Ĥ_b = H(y_hist, y_b) of every candidate b is computed one way
    whatever the configurations u of the history labels are: with p̂(u) = (1/M) Σ_m L_u(m),
    L_u(m) = Π_i P[i, u_i, m], and the posterior over passes π_u(m) = L_u(m) / Σ_m' L_u(m'),
        H(y_hist, y_b) = E_u[−log p̂(u)] + E_u[H(Σ_m π_u(m) P[b,:,m])],   u ~ p̂.
    When C**h ≤ `exact_configs` the expectation is a sum over all C**h configurations weighted
    by p̂(u) (exact up to float32 rounding, ~1e-6; no draws); otherwise it is the reference's
    Monte-Carlo average over M·S configurations drawn from the M passes (S = `num_samples` per
    pass), identical configurations pooled with their counts. `exact_configs=0` is the
    reference code (always sampled).

    Information of the selected set S = history + winner w, from the same configurations:
        I(y_S; ω) = E_{m, u, c}[log(M π_u(m)) + log P[w, c, m] − log q_u(c)],
        q_u(c) = Σ_m π_u(m) P[w, c, m],   m uniform, u ~ L_·(m), c ~ P[w, :, m],
    the sum over c exact, (m, u) weighted by L_u(m)/M (enumerated) or by the draws (each
    pass's S configurations were drawn from that pass). Every term vanishes when the passes
    agree, so the Monte-Carlo error scales with the information itself, not with the
    aleatoric entropy of the history that subtracting Σ cond from Ĥ would leave in (≈ 1e-3 at
    M·S = 4000, more than the whole signal near chance). float64."""
    B, C, M = P.shape
    cond = conditional_entropy(P)
    first = bald(P)
    history = [int(np.argmax(first))]
    gains = [float(first[history[0]])]
    infos = [gains[0]] if information else []
    log_P = np.log(np.maximum(P, 1e-300))
    by_pass = np.ascontiguousarray(P.reshape(B * C, M).T, dtype=np.float32)  # [M, B·C]
    low = 0
    for _ in range(max_iter):
        h = len(history)
        if C**h <= exact_configs:
            configs, counts, n_configs = _all_configs(h, C), None, 1
        else:
            if rng is None:
                raise ValueError("the Monte-Carlo BatchBALD estimate samples: pass rng")
            labels = _sample_labels(P[history], num_samples, rng)  # [h, M, S]
            n_configs = M * num_samples
            configs, counts, inverse = _unique_configs(labels.reshape(h, n_configs).T, C)
        log_lik = log_P[np.asarray(history)[None, :], configs].sum(axis=1)  # [U, M]
        top = log_lik.max(axis=1, keepdims=True)
        lik = np.exp(log_lik - top)
        mass = lik.sum(axis=1, keepdims=True)
        log_marginal = np.log(mass[:, 0] / M) + top[:, 0]  # log p̂(y_hist^u)
        if counts is None:  # exact: every configuration, weighted by its probability
            counts = np.exp(log_marginal)
            weights = np.exp(log_lik) / M if information else None  # L_u(m) / M
        elif information:  # draws per (configuration, pass); draw j came from pass j // S
            passes = np.arange(n_configs) // num_samples
            weights = np.bincount(inverse * M + passes, minlength=len(configs) * M)
            weights = weights.reshape(len(configs), M) / n_configs
        posterior = (lik / mass).astype(np.float32)  # π_u(m)
        conditional = _summed_predictive_entropy(posterior, by_pass, counts).reshape(B, C)
        score = (conditional.sum(axis=1) - counts @ log_marginal) / n_configs - cond
        score[history] = HISTORY_PENALTY
        winner = int(np.argmax(score))
        if information:
            infos.append(_information(lik / mass, weights, P[winner], cond[winner]))
        history.append(winner)
        gains.append(float(score[winner]))
        if score[winner] < min_spread:
            low += 1
            if low > max_low or len(history) >= B:
                break
    return gains, history, infos


def _information(posterior: np.ndarray, weights: np.ndarray, row: np.ndarray, cond: float):
    """I(y_hist, y_w; ω) (see `_greedy_batchbald`) from the history configurations' posterior
    over passes π [U, M] (float64), their weights [U, M] (summing to 1) and the row w's
    passes P[w] [C, M] with conditional entropy `cond`."""
    M = posterior.shape[1]
    used = weights > 0
    history_part = float(np.sum(weights[used] * np.log(np.maximum(M * posterior[used], 1e-300))))
    q = np.maximum(posterior @ row.T, 1e-300)  # [U, C] q_u(c)
    cross = float(np.sum((weights @ row.T) * np.log(q)))
    return history_part - cond - cross


def batchbald_ref(
    mc_probs: np.ndarray,
    rng: np.random.Generator,
    num_samples: int = 500,
    max_iter: int = 10,
    min_spread: float = 0.1,
    max_low: int = 50,
    return_history: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """§7 `batchbald_ref` [R, FANG-CODE `common/uncertainty.py`, after BaaL]: the scores of a
    greedy BatchBALD selection over the rows of one dev minibatch `mc_probs [B, C, M]`, as
    Fang's code computes them. NOT a mutual information: see the last paragraph.

    1. cond_b = (1/M) Σ_m H(P[b,:,m]) and BALD_b for every row.
    2. history = [argmax_b BALD_b] (ties: lowest index, §1.4.3); scores = [BALD_history0].
    3. Up to `max_iter` times:
       - from each pass m draw `num_samples` (S) label configurations y_hist of the history
         rows, y_i ~ P[i,:,m] independently: M·S configurations j, distributed as p̂;
       - for every row b, estimate H(y_hist, y_b) by importance weighting,
         Ĥ_b = (1/(M·S)) Σ_j Σ_c −p̂(y_hist^j, c) log p̂(y_hist^j, c) / p̂(y_hist^j),
         p̂(y_hist, y_b = c) = (1/M) Σ_m Π_{i∈hist} P[i, y_i, m] · P[b, c, m];
       - score_b = Ĥ_b − cond_b; history rows get −1000; append the argmax and its score;
       - if the best score is below `min_spread` (0.1): count it, and stop once that happened
         more than `max_low` (50) times or the history covers the batch.
    4. Return the scores without the last element.

    Score k (k ≥ 1) estimates BatchBALD(history[:k+1]) + Σ_{i<k} cond_history[i]: the history's
    conditional (aleatoric) entropies are not subtracted. Near chance every score is about
    ln 2 · k for binary tasks whatever the epistemic uncertainty, so u_k is ≈ 3.1 for every
    task and p stays near uniform; `batchbald` returns the mutual information instead.

    Computation (the same sum, reorganised; rows of P sum to 1): identical configurations are
    pooled with their counts, and with the posterior over passes π_j(m) ∝ Π_i P[i, y_i^j, m],
    Ĥ_b = (1/(M·S)) Σ_j [−log p̂(y_hist^j) + H(Σ_m π_j(m) P[b,:,m])]. Likelihoods are summed in
    log space (no underflow on long histories); the [configurations × B·C] block is float32
    (rounding ~1e-6, far below the Monte-Carlo error of the estimate).
    `return_history=True` also returns the selected row indices (one more than the scores).
    """
    P = _check_mc(mc_probs)
    if len(P) == 0:
        empty = np.zeros(0)
        return (empty, np.zeros(0, dtype=np.int64)) if return_history else empty
    gains, history, _ = _greedy_batchbald(
        P, rng, num_samples, max_iter, min_spread, max_low, exact_configs=0
    )
    result = np.asarray(gains[:-1])
    return (result, np.asarray(history)) if return_history else result


def batchbald(
    mc_probs: np.ndarray,
    rng: np.random.Generator | None,
    num_samples: int = 500,
    max_iter: int = 10,
    min_spread: float = 0.1,
    max_low: int = 50,
    exact_configs: int | None = None,
    return_history: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """§7 `batchbald` [P: u_k is the mutual information I(y_1:n; ω), Fang & Alqatari §3.2; greedy
    selection and aggregation R]: the true BatchBALD of each greedily selected set of one dev
    minibatch `mc_probs [B, C, M]`.

    The selection is `batchbald_ref`'s (the same greedy argmax of H(y_hist, y_b) − cond_b, the
    same stopping rule, the same number of scores; sampled, it makes the same draws); score k is
        BatchBALD(history[:k+1]) = H(y_history[:k+1]) − Σ_{i≤k} cond_history[i]
                                 = I(y_history[:k+1]; ω),
    the reference score minus the history's conditional entropies: the mutual information
    between the labels of the k+1 selected rows and the dropout mask, ≥ 0 up to estimation
    error, 0 when the passes agree however uncertain each pass is, and at most log M.

    While the history's C**k label configurations are no more than `exact_configs` (default
    M·num_samples, the reference's number of draws, so enumerating costs no more than sampling:
    all 10 steps of a binary task), everything is exact (no draws, `rng` unused). Beyond, the
    reference's M·S draws are made and the information is estimated from them in its
    low-variance form, E[log(M π_u(m)) + log P[w,c,m] − log q_u(c)] (`_greedy_batchbald`),
    not as Ĥ − Σ cond: the error then vanishes with the information instead of carrying the
    aleatoric entropy's. Returned: the first len(history) − 1 scores, as the reference;
    `return_history=True` also returns the selected rows.
    """
    P = _check_mc(mc_probs)
    if len(P) == 0:
        empty = np.zeros(0)
        return (empty, np.zeros(0, dtype=np.int64)) if return_history else empty
    B, C, M = P.shape
    limit = M * num_samples if exact_configs is None else exact_configs
    _, history, infos = _greedy_batchbald(
        P, rng, num_samples, max_iter, min_spread, max_low, exact_configs=limit, information=True
    )
    result = np.asarray(infos[:-1])
    return (result, np.asarray(history)) if return_history else result


def exact_chunk_size(num_classes: int) -> int:
    """Rows per chunk for `batchbald_exact` in `task_uncertainty`: the largest n ≤ 8 with
    C**n ≤ 2**16 (8 for binary tasks, 4 for C = 10, 1 for C > 256)."""
    if num_classes > MAX_EXACT_CONFIGS:
        raise ValueError(f"batchbald_exact cannot enumerate {num_classes} classes")
    n = 1
    while n < EXACT_CHUNK and num_classes ** (n + 1) <= MAX_EXACT_CONFIGS:
        n += 1
    return n


def task_uncertainty(
    mc_probs: np.ndarray,
    estimator: str = "batchbald",
    rng: np.random.Generator | None = None,
    batch_size: int = 128,
    num_samples: int = 500,
    max_iter: int = 10,
) -> float:
    """§7 step 3: the task score u_k from the MC-dropout outputs of its dev rows [N, C, M].

    - `batchbald` [P definition, R selection and aggregation; the default]: split the rows into
      consecutive minibatches of `batch_size`, run `batchbald` on each, u_k = the mean of all
      returned scores together: the mean true BatchBALD (mutual information) of the greedily
      selected sets. `rng` is needed when a history's configurations are sampled (C**h above
      M·num_samples: tasks with more than two classes, late steps).
    - `batchbald_ref` [R]: the same split, aggregation and selection with FANG-CODE's scores,
      which keep the history's conditional entropies (not a mutual information; needs `rng`).
    - `bald_mean` [D]: u_k = the mean per-row BALD.
    - `batchbald_exact` [D]: exact BatchBALD on consecutive chunks of `exact_chunk_size(C)`
      rows (8 for binary tasks), u_k = the mean over chunks.

    u_k is clamped at 0 (§7(d): MC error can make it slightly negative). When all M passes agree
    on every row (within 1e-6, e.g. a model without dropout) there is no epistemic signal and
    u_k = 0 for every estimator [D], so that Σ v = 0 falls back to uniform (§7(d));
    batchbald_ref would otherwise return the history's conditional (aleatoric) entropies.
    No rows: NaN (the caller keeps its previous state, §1.4.5).
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; one of {ESTIMATORS}")
    P = _check_mc(mc_probs)
    N, C, _ = P.shape
    if N == 0:
        return math.nan
    if np.all(np.abs(P - P[..., :1]) <= NO_SPREAD):
        return 0.0
    if estimator == "bald_mean":
        u = float(bald(P).mean())
    elif estimator == "batchbald_exact":
        u = float(_batchbald_exact_chunks(P, exact_chunk_size(C)).mean())
    else:
        if estimator == "batchbald_ref" and rng is None:
            raise ValueError("batchbald_ref samples label configurations: pass rng")
        greedy = batchbald if estimator == "batchbald" else batchbald_ref
        scores = [
            greedy(P[i : i + batch_size], rng, num_samples=num_samples, max_iter=max_iter)
            for i in range(0, N, batch_size)
        ]
        u = float(np.concatenate(scores).mean())
    return max(u, 0.0) if math.isfinite(u) else u
