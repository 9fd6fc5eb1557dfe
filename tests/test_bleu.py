"""Corpus BLEU: sacrebleu's defaults (cased, 13a tokenisation, exp smoothing)."""

import math

import pytest
import sacrebleu
from sacrebleu.metrics import BLEU

from mtlrun.training.bleu import bleu_signature, corpus_bleu

HYPS = [
    "The cat sat on the mat.",
    "Der Hund läuft über die Straße, schnell!",
    "il a déjà mangé à midi",
    "a completely unrelated sentence here",
    "Short one.",
]
REFS = [
    "The cat is sitting on the mat.",
    "Der Hund rennt über die Straße, sehr schnell!",
    "Il a déjà mangé à midi.",
    "nothing in common with the output",
    "A short one.",
]


def test_matches_sacrebleu_on_fixtures():
    expected = BLEU().corpus_score(HYPS, [REFS]).score
    assert corpus_bleu(HYPS, REFS) == pytest.approx(expected, abs=1e-9)
    assert corpus_bleu(HYPS, REFS) == pytest.approx(sacrebleu.corpus_bleu(HYPS, [REFS]).score)
    assert 0 < corpus_bleu(HYPS, REFS) < 100


def test_matches_sacrebleu_on_each_sentence_pair_as_a_corpus():
    for h, r in zip(HYPS, REFS, strict=True):
        assert corpus_bleu([h], [r]) == pytest.approx(BLEU().corpus_score([h], [[r]]).score)


def test_identical_is_100():
    assert corpus_bleu(REFS, REFS) == pytest.approx(100.0)


def test_disjoint_is_0():
    assert corpus_bleu(["a b c d e"], ["v w x y z"]) == 0.0


def test_hand_computed_with_exp_smoothing():
    # 1-4-gram precisions 3/4, 2/3, 1/2, 0/1 -> 1/(2*1) by exp smoothing; no brevity penalty
    expected = 100 * (0.75 * (2 / 3) * 0.5 * 0.5) ** 0.25
    assert corpus_bleu(["a b c d"], ["a b c e"]) == pytest.approx(expected)


def test_casing_matters():
    assert corpus_bleu(["a b c d"], ["a b c D"]) == pytest.approx(100 * 0.125**0.25)
    assert corpus_bleu(["a b c d"], ["a b c d"]) == pytest.approx(100.0)


def test_13a_splits_punctuation_off_words():
    assert corpus_bleu(["the cat sat ."], ["the cat sat."]) == pytest.approx(100.0)


def test_brevity_penalty():
    # hypothesis 4 tokens, reference 8: BP = exp(1 - 8/4); the precisions are all 1
    hyp, ref = "a b c d", "a b c d e f g h"
    assert corpus_bleu([hyp], [ref]) == pytest.approx(100 * math.exp(1 - 8 / 4))


def test_corpus_is_not_the_mean_of_sentences():
    hyps, refs = ["a b c d", "e f"], ["a b c d", "x y"]
    sentence_mean = (corpus_bleu(hyps[:1], refs[:1]) + corpus_bleu(hyps[1:], refs[1:])) / 2
    assert corpus_bleu(hyps, refs) != pytest.approx(sentence_mean)
    assert corpus_bleu(hyps, refs) == pytest.approx(BLEU().corpus_score(hyps, [refs]).score)


def test_needs_one_reference_per_hypothesis():
    with pytest.raises(ValueError, match="one each"):
        corpus_bleu(["a"], ["a", "b"])


def test_empty_corpus_is_nan():
    assert math.isnan(corpus_bleu([], []))


def test_signature_is_sacrebleus_default():
    fields = dict(f.split(":", 1) for f in bleu_signature().split("|"))
    assert fields == {"nrefs": "1", "case": "mixed", "eff": "no", "tok": "13a",
                      "smooth": "exp", "version": sacrebleu.__version__}  # fmt: skip
