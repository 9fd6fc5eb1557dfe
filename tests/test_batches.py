import numpy as np

from mtlrun.training.batches import BatchStream, bucketed_epoch, length_sorted_batches


def test_epoch_covers_every_example_once_in_ceil_n_over_b_batches():
    lengths = np.random.default_rng(0).integers(1, 50, size=103)
    batches = bucketed_epoch(lengths, 8, 4, np.random.default_rng(1))
    assert len(batches) == 13
    assert sorted(np.concatenate(batches).tolist()) == list(range(103))


def test_bucketing_reduces_padding():
    lengths = np.random.default_rng(0).integers(1, 200, size=2000)

    def padding(bucket_batches):
        batches = bucketed_epoch(lengths, 16, bucket_batches, np.random.default_rng(1))
        return sum(int(lengths[b].max()) * len(b) - int(lengths[b].sum()) for b in batches)

    assert padding(50) < 0.2 * padding(1)  # bucket_batches=1 is plain shuffling


def test_stream_resumes_mid_epoch():
    lengths = np.arange(1, 40)
    a = BatchStream(lengths, 4, 2, np.random.default_rng(5))
    for _ in range(17):  # into the second epoch (10 batches per epoch)
        a.next()
    state = a.state_dict()
    tail = [a.next().tolist() for _ in range(25)]
    b = BatchStream(lengths, 4, 2, np.random.default_rng(123))
    b.load_state_dict(state)
    assert [b.next().tolist() for _ in range(25)] == tail


def test_fresh_stream_state_round_trips():
    a = BatchStream(np.arange(1, 10), 2, 2, np.random.default_rng(5))
    b = BatchStream(np.arange(1, 10), 2, 2, np.random.default_rng(6))
    b.load_state_dict(a.state_dict())
    assert [a.next().tolist() for _ in range(12)] == [b.next().tolist() for _ in range(12)]


def test_eval_batches_cover_everything_longest_first():
    lengths = np.array([3, 9, 1, 9, 4])
    batches = length_sorted_batches(lengths, 2)
    assert [b.tolist() for b in batches] == [[1, 3], [4, 0], [2]]
