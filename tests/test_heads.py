"""Task heads: the LSTM pair vector, and the CRF head inside MultiTaskModel (losses shared out
per token, marginals as log-probabilities, Viterbi paths back at the batch's positions)."""

from __future__ import annotations

import torch
from conftest import model_for

from mtlrun.config import LSTMConfig
from mtlrun.models.lstm import LSTMEncoder
from mtlrun.models.multitask import Batch, MultiTaskModel
from mtlrun.tasks.encode import IGNORE
from mtlrun.tasks.spec import Kind


def lstm(pooling="last") -> LSTMEncoder:
    torch.manual_seed(0)
    cfg = LSTMConfig(hidden_size=8, pooling=pooling, dropout=0.0)
    return LSTMEncoder(torch.nn.Embedding(20, 6, padding_idx=0), cfg).eval()


def test_pair_vector_is_u_v_absdiff_product_of_the_texts_encoded_alone():
    enc = lstm()
    a, b = [3, 4, 5], [6, 7]
    c, d = [8], [9, 10, 11, 12]
    ids = torch.tensor([a + b + [0], c + d + [0]])
    segments = torch.tensor([[0, 0, 0, 1, 1, 0], [0, 1, 1, 1, 1, 0]])
    lengths = torch.tensor([5, 5])
    _, pair = enc(ids, lengths, segments)
    for row, (x, y) in enumerate([(a, b), (c, d)]):
        _, u = enc(torch.tensor([x]), torch.tensor([len(x)]))
        _, v = enc(torch.tensor([y]), torch.tensor([len(y)]))
        expected = torch.cat([u, v, (u - v).abs(), u * v], -1)[0]
        torch.testing.assert_close(pair[row], expected)
    assert pair.shape == (2, enc.pair_output_size)


def crf_model(n_tags=3) -> MultiTaskModel:
    torch.manual_seed(1)
    return model_for(lstm(), [Kind.TAGGING], [n_tags], crf=True).eval()


def test_crf_losses_share_each_sentence_nll_over_its_tokens():
    model = crf_model()
    labels = torch.tensor([[0, 1, 2, 1], [2, 0, IGNORE, IGNORE]])
    batch = Batch(torch.tensor([[3, 4, 5, 6], [7, 8, 0, 0]]), torch.tensor([4, 2]), labels)
    out = model(0, batch)
    assert out.example_losses.shape == (6,) and out.example_labels.tolist() == [0, 1, 2, 1, 2, 0]
    states, _ = model.encoder(batch.ids, batch.lengths)
    emissions = model.heads[0].linear(states)
    mask = labels != IGNORE
    nll = model.heads[0].crf.nll(emissions, labels, mask)
    torch.testing.assert_close(out.example_losses[:4].sum(), nll[0])
    torch.testing.assert_close(out.example_losses[4:].sum(), nll[1])
    marginals = out.example_log_probs.exp()
    torch.testing.assert_close(marginals.sum(-1), torch.ones(6))
    assert torch.equal(out.predictions(), model.heads[0].crf.decode(emissions, mask))


def test_crf_runs_over_labelled_positions_only_as_with_subwords():
    """A subword model labels first subwords: the CRF chain skips the IGNORE positions and the
    Viterbi path is written back at the labelled positions."""
    model = crf_model()
    ids = torch.tensor([[3, 4, 5, 6, 7]])
    gapped = torch.tensor([[IGNORE, 1, IGNORE, 2, 0]])
    out = model(0, Batch(ids, torch.tensor([5]), gapped))
    states, _ = model.encoder(ids, torch.tensor([5]))
    emissions = model.heads[0].linear(states)[:, [1, 3, 4]]
    compact = torch.tensor([[1, 2, 0]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    torch.testing.assert_close(
        out.example_losses.sum(), model.heads[0].crf.nll(emissions, compact, mask)[0]
    )
    path = model.heads[0].crf.decode(emissions, mask)[0]
    assert out.predictions()[0, [1, 3, 4]].tolist() == path.tolist()
