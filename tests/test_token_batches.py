"""Batching by token count: `max_tokens` caps each batch's padded tokens (fairseq-style)."""

import numpy as np
import pytest

from mtlrun.training.batches import BatchStream, bucketed_epoch, count_batches

LENGTHS = np.random.default_rng(0).integers(1, 120, size=1000)


def _padded(batch, lengths=LENGTHS) -> int:
    return len(batch) * int(lengths[batch].max())


@pytest.mark.parametrize("max_tokens", [1, 50, 256, 1000])
def test_cap_respected_and_every_example_once(max_tokens):
    batches = bucketed_epoch(LENGTHS, 32, 8, np.random.default_rng(1), max_tokens=max_tokens)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(LENGTHS)))
    for b in batches:
        assert 1 <= len(b) <= 32
        assert len(b) == 1 or _padded(b) <= max_tokens  # a lone long example still gets a batch


def test_batches_are_filled_greedily_in_a_pool():
    lengths = np.array([10, 10, 10, 10, 30, 30, 5])
    batches = bucketed_epoch(lengths, 3, 10, np.random.default_rng(0), max_tokens=60)
    assert sorted(sorted(lengths[b].tolist()) for b in batches) == [[5, 10, 10], [10, 10], [30, 30]]


def test_batch_size_still_caps_examples():
    lengths = np.full(100, 2)
    batches = bucketed_epoch(lengths, 8, 4, np.random.default_rng(1), max_tokens=10_000)
    assert sorted(len(b) for b in batches) == [4] + [8] * 12


def test_a_loose_cap_gives_the_plain_batches():
    plain = bucketed_epoch(LENGTHS, 16, 4, np.random.default_rng(3))
    loose = bucketed_epoch(LENGTHS, 16, 4, np.random.default_rng(3), max_tokens=10**9)
    assert [b.tolist() for b in plain] == [b.tolist() for b in loose]


def test_deterministic_for_a_seed():
    a = bucketed_epoch(LENGTHS, 32, 8, np.random.default_rng(7), max_tokens=300)
    b = bucketed_epoch(LENGTHS, 32, 8, np.random.default_rng(7), max_tokens=300)
    assert [x.tolist() for x in a] == [x.tolist() for x in b]


def test_token_batches_hold_less_padding_than_fixed_ones():
    fixed = bucketed_epoch(LENGTHS, 32, 8, np.random.default_rng(1))
    capped = bucketed_epoch(LENGTHS, 32, 8, np.random.default_rng(1), max_tokens=500)
    assert max(_padded(b) for b in capped) <= 500 < max(_padded(b) for b in fixed)


def test_stream_resumes_mid_epoch_in_token_mode():
    a = BatchStream(LENGTHS, 32, 4, np.random.default_rng(5), max_tokens=400)
    per_epoch = a.n_batches
    for _ in range(per_epoch + 7):  # into the second epoch
        a.next()
    state = a.state_dict()
    tail = [a.next().tolist() for _ in range(2 * per_epoch)]  # across the next epoch boundary
    b = BatchStream(LENGTHS, 32, 4, np.random.default_rng(123), max_tokens=400)
    b.load_state_dict(state)
    assert [b.next().tolist() for _ in range(2 * per_epoch)] == tail


def test_stream_epochs_cover_every_example_once_under_the_cap():
    s = BatchStream(LENGTHS, 32, 4, np.random.default_rng(2), max_tokens=400)
    for epoch in range(2):
        first = s.next()
        batches = [first] + [s.next() for _ in range(s.epoch_batches - 1)]
        assert s.epoch == epoch
        assert sorted(np.concatenate(batches).tolist()) == list(range(len(LENGTHS)))
        assert all(len(b) == 1 or _padded(b) <= 400 for b in batches)


def test_two_streams_with_one_seed_agree():
    a = BatchStream(LENGTHS, 32, 4, np.random.default_rng(9), max_tokens=300)
    b = BatchStream(LENGTHS, 32, 4, np.random.default_rng(9), max_tokens=300)
    assert [a.next().tolist() for _ in range(80)] == [b.next().tolist() for _ in range(80)]


def test_n_batches_is_a_stable_estimate():
    s = BatchStream(LENGTHS, 32, 4, np.random.default_rng(4), max_tokens=400)
    estimate = s.n_batches
    assert estimate == count_batches(LENGTHS, 32, 4, max_tokens=400)
    assert estimate > count_batches(LENGTHS, 32, 4)  # ceil(1000 / 32) = 32: the cap cuts more
    counts = []
    for _ in range(3):
        s.next()
        counts.append(s.epoch_batches)
        for _ in range(s.epoch_batches - 1):
            s.next()
        assert s.n_batches == estimate  # does not drift with the epochs
    assert all(abs(c - estimate) <= 0.1 * estimate for c in counts)
    assert BatchStream(LENGTHS, 32, 4, np.random.default_rng(0)).n_batches == 32


def test_mixed_take_resumes_in_token_mode():
    a = BatchStream(LENGTHS, 32, 4, np.random.default_rng(5), max_tokens=400)
    a.take(1500)  # into the second epoch
    state = a.state_dict()
    tail = a.take(900).tolist()
    b = BatchStream(LENGTHS, 32, 4, np.random.default_rng(0), max_tokens=400)
    b.load_state_dict(state)
    assert b.take(900).tolist() == tail


def test_rejects_a_cap_below_one():
    with pytest.raises(ValueError, match="max_tokens"):
        BatchStream(LENGTHS, 32, 4, np.random.default_rng(0), max_tokens=0)
