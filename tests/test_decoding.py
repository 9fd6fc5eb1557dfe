"""Seq2seq decoders (models/decoders.py) and their greedy / beam-search decoding
(models/decoding.py): incremental steps equal teacher forcing, beam 1 is greedy, wider beams
find likelier outputs (an exhaustive beam finds the most likely one), padding in the memory
changes nothing, and a tiny encoder-decoder learns a toy translation to BLEU > 90."""

from __future__ import annotations

import functools
import itertools

import pytest
import sacrebleu
import torch
from torch import nn

from mtlrun.config import DecoderConfig
from mtlrun.models.decoders import EOS, PAD, build_decoder
from mtlrun.models.decoding import beam_search, greedy

NAMES = ["lstm", "transformer"]
MEMORY = 6  # memory size, unlike every decoder size: the projections are exercised


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors gain nothing from threads, and on a busy 2-core machine (pytest -n 2)
    oneDNN's LSTM with 2 threads each is 100x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_decoder(name: str, vocab: int = 11, seed: int = 0, **kw) -> nn.Module:
    """A random decoder in eval mode."""
    torch.manual_seed(seed)
    options = dict(embedding_dim=12, hidden_size=16, num_layers=2, num_heads=2, ffn_dim=24,
                   dropout=0.1, tie_embeddings=True) | kw  # fmt: skip
    return build_decoder(vocab, MEMORY, DecoderConfig(name=name, **options)).eval()


@functools.cache
def fitted_decoder(name: str, vocab: int = 11) -> nn.Module:
    """A random decoder after 40 Adam steps on random targets of 0-7 tokens: unlike a freshly
    initialised one (which repeats one token until max_len or stops at once), its outputs end
    at various lengths and its distributions are flat enough for beam search to matter."""
    decoder = make_decoder(name, vocab, dropout=0.0)
    g = torch.Generator().manual_seed(0)
    memory, pad = make_memory(torch.randint(1, 7, (32,), generator=g).tolist(), seed=100)
    lengths = torch.randint(0, 8, (32,), generator=g).tolist()
    target = pad_rows(
        [torch.randint(3, vocab, (n,), generator=g).tolist() + [EOS] for n in lengths]
    )
    inputs = torch.cat([torch.full((32, 1), EOS), target[:, :-1]], 1)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=1e-2)
    decoder.train()
    for _ in range(40):
        logits = decoder(memory, pad, inputs)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=PAD)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return decoder.eval()


def make_memory(lengths: list[int], seed: int = 1):
    """Random memory states with garbage (large values) in the padding positions."""
    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    pad = torch.arange(width)[None, :] >= torch.tensor(lengths)[:, None]
    memory = torch.randn(len(lengths), width, MEMORY, generator=g)
    memory = torch.where(pad.unsqueeze(-1), 100.0, memory)
    return memory, pad


def pad_rows(rows: list[list[int]]) -> torch.Tensor:
    return nn.utils.rnn.pad_sequence([torch.tensor(r) for r in rows], batch_first=True)


def sequence_log_prob(decoder, memory, pad, seq: list[int], max_len: int) -> float:
    """log p(seq) under teacher forcing, with its EOS unless the output stopped at max_len."""
    target = seq if len(seq) == max_len else seq + [EOS]
    inputs = torch.tensor([[EOS] + target[:-1]])
    log_probs = decoder(memory, pad, inputs).log_softmax(-1)[0]
    return log_probs[torch.arange(len(target)), torch.tensor(target)].sum().item()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("tie", [True, False])
def test_steps_equal_teacher_forcing(name, tie):
    decoder = make_decoder(name, tie_embeddings=tie)
    memory, pad = make_memory([5, 3, 1])
    inputs = torch.tensor([[EOS, 4, 5, 6, 7, 3], [EOS, 8, 9, PAD, PAD, PAD], [EOS] + [5] * 5])
    with torch.no_grad():
        forced = decoder(memory, pad, inputs)
        state = decoder.start(memory, pad)
        steps = []
        for t in range(inputs.shape[1]):
            logits, state = decoder.step(state, inputs[:, t])
            steps.append(logits)
    assert forced.shape == (3, 6, 11)
    torch.testing.assert_close(torch.stack(steps, 1), forced, atol=1e-5, rtol=0)
    # a state reordered (beam search) decodes its rows as before
    index = torch.tensor([2, 0, 0])
    with torch.no_grad():
        state = decoder.reorder(decoder.start(memory, pad), index)
        logits, _ = decoder.step(state, inputs[index, 0])
    torch.testing.assert_close(logits, forced[index, 0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_attention_reads_the_memory_and_ignores_its_padding(name):
    """Changing a real memory state changes the logits; changing a padding state does not."""
    decoder = make_decoder(name)
    memory, pad = make_memory([4, 2])
    inputs = torch.tensor([[EOS, 5, 6], [EOS, 7, 8]])
    with torch.no_grad():
        before = decoder(memory, pad, inputs)
        changed = memory.clone()
        changed[1, 3] = -50.0  # padding
        torch.testing.assert_close(decoder(changed, pad, inputs), before, atol=1e-6, rtol=0)
        changed[1, 1] += 1.0  # a real state
        assert not torch.allclose(decoder(changed, pad, inputs)[1], before[1], atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_of_one_is_greedy(name, alpha):
    decoder = fitted_decoder(name)
    memory, pad = make_memory([7, 2, 5, 1, 4, 6])
    max_len = torch.tensor([8, 3, 6, 1, 0, 9])
    with torch.no_grad():
        expected = greedy(decoder, memory, pad, max_len)
        found = beam_search(decoder, memory, pad, 1, alpha, max_len)
    assert found == expected
    assert expected[4] == []  # max_len 0
    assert all(len(out) <= limit for out, limit in zip(expected, max_len.tolist(), strict=True))
    lengths = {len(out) for out in expected}
    assert len(lengths) > 2, "outputs of one length: the test does not exercise EOS"
    assert all(PAD not in out and EOS not in out for out in expected)


@pytest.mark.parametrize("name", NAMES)
def test_wider_beams_find_likelier_outputs(name):
    """With alpha = 0 the beam ranks by log-probability: for each sentence, its output is at
    least as likely as greedy's, and more likely for some (else the test shows nothing)."""
    decoder = fitted_decoder(name, vocab=13)
    lengths = [6, 3, 5, 2, 4, 6, 1, 3]
    memory, pad = make_memory(lengths, seed=3)
    max_len = 7
    better = 0
    with torch.no_grad():
        greedy_out = greedy(decoder, memory, pad, max_len)
        beam_out = beam_search(decoder, memory, pad, 4, 0.0, max_len)
        for i, n in enumerate(lengths):
            mem, p = memory[i : i + 1, :n], pad[i : i + 1, :n]
            g = sequence_log_prob(decoder, mem, p, greedy_out[i], max_len)
            b = sequence_log_prob(decoder, mem, p, beam_out[i], max_len)
            assert b >= g - 1e-5
            better += b > g + 1e-4
    assert better > 0


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_exhaustive_beam_finds_the_best_output(name, alpha):
    """A beam wider than every candidate set is exact search: its output maximises
    log p / length^alpha over all outputs of up to max_len tokens (length counts the EOS)."""
    vocab, max_len = 5, 3  # outputs over the tokens {1, 3, 4}: 1 + 3 + 9 + 27 of them
    decoder = fitted_decoder(name, vocab)
    memory, pad = make_memory([4, 2], seed=5)
    with torch.no_grad():
        # 40 slots: 4 finish in the first two steps, 36 extensions at the last
        found = beam_search(decoder, memory, pad, 40, alpha, max_len)
        for i, n in enumerate([4, 2]):
            mem, p = memory[i : i + 1, :n], pad[i : i + 1, :n]
            scores = {}
            for length in range(max_len + 1):
                for seq in itertools.product([1, 3, 4], repeat=length):
                    scored = length + (length < max_len)  # tokens, and EOS before max_len
                    log_p = sequence_log_prob(decoder, mem, p, list(seq), max_len)
                    scores[seq] = log_p / scored**alpha
            assert tuple(found[i]) == max(scores, key=scores.get)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("beam", [1, 3])
def test_padding_in_the_memory_changes_no_output(name, beam):
    decoder = fitted_decoder(name)
    lengths = [2, 7, 4, 1]
    memory, pad = make_memory(lengths, seed=7)
    max_len = torch.tensor([4, 9, 6, 3])
    with torch.no_grad():
        batch = beam_search(decoder, memory, pad, beam, 1.0, max_len)
        for i, n in enumerate(lengths):
            alone = beam_search(decoder, memory[i : i + 1, :n], pad[i : i + 1, :n], beam, 1.0,
                                int(max_len[i]))  # fmt: skip
            assert alone[0] == batch[i]
        assert greedy(decoder, memory, pad, max_len) == [
            greedy(decoder, memory[i : i + 1, :n], pad[i : i + 1, :n], int(max_len[i]))[0]
            for i, n in enumerate(lengths)
        ]


class ScriptedDecoder(nn.Module):
    """Next-token probabilities looked up by the output so far; EOS for certain elsewhere."""

    def __init__(self, tree: dict[tuple[int, ...], dict[int, float]], vocab: int = 5) -> None:
        super().__init__()
        self.tree, self.vocab = tree, vocab

    def start(self, memory, memory_pad):
        return {"prefix": torch.empty(memory.shape[0], 0, dtype=torch.long)}

    def step(self, state, tokens):
        prefix = torch.cat([state["prefix"], tokens.unsqueeze(1)], 1)
        logits = torch.full((len(prefix), self.vocab), -1e9)
        for row, output in enumerate(prefix[:, 1:].tolist()):
            for token, p in self.tree.get(tuple(output), {EOS: 1.0}).items():
                logits[row, token] = torch.tensor(p).log()
        return logits, {"prefix": prefix}

    def reorder(self, state, index):
        return {key: value.index_select(0, index) for key, value in state.items()}


# log p: [] -0.80 (1 scored token, its EOS), [3] -0.95 (2), [3, 4] -1.80 (3)
TREE = {(): {EOS: 0.45, 3: 0.55}, (3,): {EOS: 0.7, 4: 0.3}}
ONE = torch.zeros(1, 1, 1), torch.zeros(1, 1, dtype=torch.bool)  # memory, memory_pad


@pytest.mark.parametrize("alpha, expected", [(0.0, []), (1.0, [3]), (-1.0, [])])
def test_length_penalty_divides_by_the_scored_length(alpha, expected):
    """alpha 0: the likeliest output; alpha 1: the best mean log-prob per scored token,
    -0.95 / 2 > -1.80 / 3 > -0.80 / 1; alpha -1 favours the short: -0.80 * 1 > -0.95 * 2."""
    assert beam_search(ScriptedDecoder(TREE), *ONE, 3, alpha, 5) == [expected]


def test_max_len_finishes_without_eos():
    """At max_len 1 the output [3] scores log 0.55 alone, no EOS, and beats [] (log 0.45)."""
    decoder = ScriptedDecoder(TREE)
    assert greedy(decoder, *ONE, 1) == [[3]]
    for alpha in (0.0, 1.0):
        assert beam_search(decoder, *ONE, 3, alpha, 1) == [[3]]
    assert greedy(decoder, *ONE, torch.tensor([0])) == beam_search(decoder, *ONE, 2, 1.0, 0) == [[]]


def test_search_goes_on_while_a_longer_output_can_still_win():
    """[] (log 0.7 = -0.36) ends first; [3] (-1.20) still grows, and at alpha 1 its final
    [3, 4, 4] wins, -1.20 / 4 = -0.30: the search must not stop on -1.20 / 2 < -0.36."""
    decoder = ScriptedDecoder({(): {EOS: 0.7, 3: 0.3}, (3,): {4: 1.0}, (3, 4): {4: 1.0}})
    assert greedy(decoder, *ONE, 6) == beam_search(decoder, *ONE, 2, 0.0, 6) == [[]]
    assert beam_search(decoder, *ONE, 2, 1.0, 6) == [[3, 4, 4]]


def test_padding_is_never_an_output():
    decoder = ScriptedDecoder({(): {PAD: 0.9, 4: 0.06, EOS: 0.04}, (4,): {PAD: 0.9, EOS: 0.1}})
    assert greedy(decoder, *ONE, 5) == [[4]]
    assert beam_search(decoder, *ONE, 2, 0.0, 5) == [[]]  # log 0.04 > log(0.06 * 0.1)


def test_decoding_leaves_the_mode_alone():
    decoder = make_decoder("lstm").train()
    memory, pad = make_memory([3, 2])
    with torch.no_grad():
        greedy(decoder, memory, pad, 4)
        beam_search(decoder, memory, pad, 2, 1.0, 4)
    assert decoder.training and all(m.training for m in decoder.modules())


# --- a tiny encoder-decoder learns a toy translation ------------------------------------------
WORDS = 12  # source words s0..s11 -> ids 3..14; target words t0..t11 -> ids 15..26
VOCAB = 3 + 2 * WORDS


def toy_pairs(n: int = 20, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    """Targets are the sources reversed, each word mapped to another (a fixed permutation)."""
    g = torch.Generator().manual_seed(seed)
    mapping = torch.randperm(WORDS, generator=g).tolist()
    pairs = []
    for _ in range(n):
        words = torch.randint(WORDS, (int(torch.randint(3, 9, (1,), generator=g)),), generator=g)
        source = [3 + w for w in words.tolist()]
        target = [3 + WORDS + mapping[w] for w in reversed(words.tolist())]
        pairs.append((source, target))
    return pairs


class TinyEncoder(nn.Module):
    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, hidden, padding_idx=PAD)
        self.lstm = nn.LSTM(hidden, hidden, batch_first=True, bidirectional=True)
        self.output_size = 2 * hidden

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = (ids != PAD).sum(1)
        rnn = nn.utils.rnn
        packed = rnn.pack_padded_sequence(self.embedding(ids), lengths, batch_first=True,
                                          enforce_sorted=False)  # fmt: skip
        states, _ = rnn.pad_packed_sequence(self.lstm(packed)[0], batch_first=True,
                                            total_length=ids.shape[1])  # fmt: skip
        return states, ids == PAD


def detok(ids: list[int]) -> str:
    return " ".join(f"w{i}" for i in ids)


@pytest.mark.parametrize("name", NAMES)
def test_tiny_model_learns_a_toy_translation(name):
    torch.manual_seed(0)
    pairs = toy_pairs()
    encoder = TinyEncoder()
    cfg = DecoderConfig(name=name, embedding_dim=32, hidden_size=32, num_layers=1, num_heads=2,
                        ffn_dim=64, dropout=0.0, tie_embeddings=True)  # fmt: skip
    decoder = build_decoder(VOCAB, encoder.output_size, cfg)
    source = pad_rows([s for s, _ in pairs])
    target = pad_rows([t + [EOS] for _, t in pairs])
    inputs = torch.cat([torch.full((len(pairs), 1), EOS), target[:, :-1]], 1)
    params = [*encoder.parameters(), *decoder.parameters()]
    optimizer = torch.optim.Adam(params, lr=5e-3 if name == "lstm" else 2e-3)
    loss_fn = nn.CrossEntropyLoss(ignore_index=PAD)
    for _ in range(150):  # 120 reach BLEU 100 for seeds 0-2
        memory, pad = encoder(source)
        loss = loss_fn(decoder(memory, pad, inputs).flatten(0, 1), target.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    encoder.eval()
    decoder.eval()
    references = [detok(t) for _, t in pairs]
    with torch.no_grad():
        memory, pad = encoder(source)
        max_len = (~pad).sum(1) * 3 // 2 + 10  # the runner's max_output_ratio rule
        greedy_out = greedy(decoder, memory, pad, max_len)
        for output in (greedy_out, beam_search(decoder, memory, pad, 4, 1.0, max_len)):
            bleu = sacrebleu.corpus_bleu([detok(o) for o in output], [references]).score
            assert bleu > 90, bleu
        # a peaked model: a wide beam must keep the likely output, not stop on unlikely ones
        beam_out = beam_search(decoder, memory, pad, 4, 0.0, max_len)
        for i, limit in enumerate(max_len.tolist()):
            mem, p = memory[i : i + 1], pad[i : i + 1]
            b = sequence_log_prob(decoder, mem, p, beam_out[i], limit)
            assert b >= sequence_log_prob(decoder, mem, p, greedy_out[i], limit) - 1e-5
