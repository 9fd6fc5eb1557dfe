"""model=transformer: a Transformer encoder trained from scratch on a word vocabulary, for the
classification, pair and tagging tasks (models/transformer.py)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import TAGGING, TINY, tiny_trainer

from mtlrun.config import TransformerConfig
from mtlrun.errors import ConfigError
from mtlrun.models.transformer import TransformerEncoder, sinusoids

SMALL = ["model=transformer", "model.d_model=32", "model.embeddings.dim=32",
         "model.num_layers=1", "model.num_heads=2", "model.ffn_dim=64"]  # fmt: skip


def encoder(pooling: str = "mean", dim: int = 16) -> TransformerEncoder:
    torch.manual_seed(0)
    cfg = TransformerConfig(d_model=16, num_layers=2, num_heads=2, ffn_dim=32, pooling=pooling,
                            max_length=10)  # fmt: skip
    return TransformerEncoder(torch.nn.Embedding(50, dim, padding_idx=0), cfg).eval()


def test_positions_are_the_papers_sinusoids():
    table = sinusoids(7, 6)
    for p in range(7):
        for i in range(3):
            angle = p / 10000 ** (2 * i / 6)
            assert table[p, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[p, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


@pytest.mark.parametrize("pooling", ["mean", "max", "first"])
def test_padding_changes_nothing(pooling):
    """A text encoded alone and padded in a batch beside a longer one: the same states and
    pooled vector (attention never looks at padding, pooling never counts it)."""
    enc = encoder(pooling)
    short = torch.tensor([[5, 6, 7]])
    batch = torch.tensor([[5, 6, 7, 0, 0, 0], [8, 9, 10, 11, 12, 13]])
    with torch.no_grad():
        alone_states, alone = enc(short, torch.tensor([3]))
        states, pooled = enc(batch, torch.tensor([3, 6]))
    assert torch.allclose(pooled[0], alone[0], atol=1e-5)
    assert torch.allclose(states[0, :3], alone_states[0], atol=1e-5)
    assert not torch.allclose(pooled[1], pooled[0], atol=1e-3)


def test_a_pair_is_one_sequence_with_segments():
    enc = encoder()
    ids, lengths = torch.tensor([[5, 6, 7, 8]]), torch.tensor([4])
    with torch.no_grad():
        _, plain = enc(ids, lengths)
        _, pair = enc(ids, lengths, torch.tensor([[0, 0, 1, 1]]))
    assert pair.shape == (1, enc.pair_output_size) == (1, 16)
    assert not torch.allclose(plain, pair, atol=1e-4)  # the segment embedding is used


def test_embeddings_of_another_size_are_projected():
    enc = encoder(dim=24)
    with torch.no_grad():
        states, pooled = enc(torch.tensor([[5, 6]]), torch.tensor([2]))
    assert states.shape == (1, 2, 16) and pooled.shape == (1, 16)


def test_nonsense_sizes_are_refused():
    with pytest.raises(ConfigError, match="divisible by model.num_heads"):
        TransformerConfig(d_model=10, num_heads=4)


def trainer_for(tmp_path, cache_dir, *overrides):
    tiny = [o for o in TINY if not o.startswith("model.")]  # the LSTM's sizes
    return tiny_trainer(tmp_path, cache_dir, TAGGING, *SMALL, *overrides, base=tiny)


def test_it_learns_the_synthetic_tasks(tmp_path, cache_dir):
    """300 steps: the noise-free classification task well above chance (50 %), and the tagging
    task above zero F1."""
    results = trainer_for(tmp_path, cache_dir, "trainer.max_steps=300",
                          "trainer.eval_every=100").fit()  # fmt: skip
    assert results["tasks"]["sent0"]["dev"] >= 0.7
    assert results["tasks"]["entities"]["dev"] > 0


def test_gradnorm_balances_on_its_top_layer(tmp_path, cache_dir):
    trainer = trainer_for(tmp_path, cache_dir, "scheduler=gradnorm", "trainer.max_steps=20",
                          "trainer.eval_every=20")  # fmt: skip
    top = trainer.model.encoder.layers.layers[-1]
    assert {id(p) for p in trainer.shared_top} == {id(p) for p in top.parameters()}
    trainer.fit()
    w = trainer.scheduler.loss_weights(20)
    assert max(abs(w - 1)) > 1e-3 and w.sum() == pytest.approx(len(w))
