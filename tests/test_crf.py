"""Linear-chain CRF against brute-force enumeration of all C^L paths on tiny cases, gradients,
learning, stability and determinism."""

import itertools

import pytest
import torch
from torch.func import functional_call

from mtlrun.models.crf import CRF

C = 3
LENGTHS = [4, 1, 3, 2]  # batch with different lengths, including 1


def random_case(seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    crf = CRF(C).to(dtype)
    with torch.no_grad():
        for p in (crf.transitions, crf.start, crf.end):
            p.copy_(torch.randn(p.shape, generator=g, dtype=dtype))
    emissions = torch.randn(len(LENGTHS), max(LENGTHS), C, generator=g, dtype=dtype)
    mask = torch.arange(max(LENGTHS)) < torch.tensor(LENGTHS)[:, None]
    tags = torch.randint(0, C, mask.shape, generator=g).masked_fill(~mask, -100)
    return crf, emissions, tags, mask


def path_score(crf, emissions_row, path):
    s = crf.start[path[0]] + crf.end[path[-1]]
    s = s + sum(emissions_row[t, y] for t, y in enumerate(path))
    return s + sum(crf.transitions[a, b] for a, b in itertools.pairwise(path))


def brute_force(crf, emissions_row, length):
    """All paths of `length` with their scores, log Z and the marginals [length, C]."""
    paths = list(itertools.product(range(C), repeat=length))
    scores = torch.stack([path_score(crf, emissions_row, p) for p in paths])
    log_z = torch.logsumexp(scores, 0)
    probs = torch.exp(scores - log_z)
    marginals = torch.zeros(length, C, dtype=emissions_row.dtype)
    for p, prob in zip(paths, probs, strict=True):
        for t, y in enumerate(p):
            marginals[t, y] += prob
    return paths, scores, log_z, marginals


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force(seed):
    crf, emissions, tags, mask = random_case(seed)
    with torch.no_grad():
        log_z = crf.log_partition(emissions, mask)
        nll = crf.nll(emissions, tags, mask)
        best = crf.decode(emissions, mask)
        best_score = crf.score(emissions, best, mask)
        marginals = crf.marginals(emissions, mask)
        for b, length in enumerate(LENGTHS):
            paths, scores, bf_log_z, bf_marginals = brute_force(crf, emissions[b], length)
            gold = tuple(tags[b, :length].tolist())
            torch.testing.assert_close(log_z[b], bf_log_z, atol=1e-8, rtol=0)
            torch.testing.assert_close(nll[b], bf_log_z - scores[paths.index(gold)])
            assert tuple(best[b, :length].tolist()) == paths[int(scores.argmax())]
            torch.testing.assert_close(best_score[b], scores.max(), atol=1e-8, rtol=0)
            torch.testing.assert_close(marginals[b, :length], bf_marginals, atol=1e-5, rtol=0)
    assert (best[~mask] == 0).all() and (marginals[~mask] == 0).all()
    assert (nll > 0).all()


def test_gradcheck_emissions_and_transitions():
    crf, emissions, tags, mask = random_case(3)
    emissions.requires_grad_(True)
    transitions = crf.transitions.detach().clone().requires_grad_(True)

    def nll(em, trans):
        return functional_call(crf, {"transitions": trans}, (em, tags, mask))

    assert torch.autograd.gradcheck(nll, (emissions, transitions))


def test_training_learns_transitions():
    """Word "x" copies the previous token's tag: its emission alone cannot tell tag 0 from 1
    (it has both), so decoding the training tags needs the learned transitions."""
    a, b, y, x = range(4)  # a -> tag 0, b -> tag 1, y -> tag 2
    data = [([a, x, x], [0, 0, 0]), ([b, x], [1, 1]), ([b, x, x, x], [1, 1, 1, 1]),
            ([a, x, y, x], [0, 0, 2, 2]), ([b, x, y, x], [1, 1, 2, 2]), ([y, x], [2, 2]),
            ([b], [1])]  # fmt: skip
    length = max(len(w) for w, _ in data)
    words = torch.tensor([w + [0] * (length - len(w)) for w, _ in data])
    tags = torch.tensor([t + [-100] * (length - len(t)) for _, t in data])
    mask = tags != -100
    torch.manual_seed(0)
    emit, crf = torch.nn.Embedding(4, C), CRF(C)
    optimizer = torch.optim.Adam([*emit.parameters(), *crf.parameters()], lr=0.1)
    for _ in range(200):
        optimizer.zero_grad()
        crf.nll(emit(words), tags, mask).mean().backward()
        optimizer.step()
    with torch.no_grad():
        decoded = crf.decode(emit(words), mask)
        assert torch.equal(torch.where(mask, decoded, -100), tags)
        assert crf.nll(emit(words), tags, mask).max() < 0.1
        # the emission argmax alone gets some "x" wrong: the transitions did the work
        assert not torch.equal(torch.where(mask, emit(words).argmax(-1), -100), tags)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_huge_emissions_stay_finite(dtype):
    crf, _, tags, mask = random_case(4, dtype)
    g = torch.Generator().manual_seed(5)
    emissions = (torch.randn(len(LENGTHS), max(LENGTHS), C, generator=g) * 1e4).to(dtype)
    emissions.requires_grad_(True)
    nll = crf.nll(emissions, tags, mask)
    nll.sum().backward()
    assert torch.isfinite(nll).all() and (nll > -0.1).all()  # >= 0 up to float32 rounding
    assert torch.isfinite(emissions.grad).all()
    with torch.no_grad():
        assert torch.isfinite(crf.log_partition(emissions, mask)).all()
        marginals = crf.marginals(emissions, mask)
        assert torch.isfinite(marginals).all()
        torch.testing.assert_close(marginals.sum(-1)[mask], torch.ones(sum(LENGTHS), dtype=dtype))
        # emissions this large dominate: the best path is the per-token argmax
        best = crf.decode(emissions, mask)
        assert torch.equal(best[mask], emissions.argmax(-1)[mask])


def test_decode_is_deterministic():
    crf, emissions, _, mask = random_case(6)
    first = crf.decode(emissions, mask)
    assert all(torch.equal(first, crf.decode(emissions, mask)) for _ in range(3))
    tied = CRF(C)  # all-zero scores: every path ties, the lowest tags win
    with torch.no_grad():
        for p in tied.parameters():
            p.zero_()
    zeros = torch.zeros(len(LENGTHS), max(LENGTHS), C)
    assert torch.equal(tied.decode(zeros, mask), torch.zeros_like(mask, dtype=torch.long))


def test_uniform_marginals_and_shape_errors():
    crf, _, _, mask = random_case(7)
    with torch.no_grad():
        for p in crf.parameters():
            p.zero_()
    marginals = crf.marginals(torch.zeros(len(LENGTHS), max(LENGTHS), C, dtype=torch.float64), mask)
    torch.testing.assert_close(marginals[mask], torch.full((sum(LENGTHS), C), 1 / C).double())
    with pytest.raises(ValueError, match=r"emissions must be \[B, T, 3\]"):
        crf.decode(torch.zeros(2, 4, 5, dtype=torch.float64), mask[:2])
