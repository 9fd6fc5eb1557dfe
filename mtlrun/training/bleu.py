"""Corpus BLEU of detokenised text, as sacrebleu computes it with its defaults (Post 2018):
case-sensitive, 13a tokenisation, exponential smoothing, one reference per hypothesis.
Report the score with its signature (`bleu_signature()`) so it can be compared across papers."""

from __future__ import annotations

import functools

from sacrebleu.metrics import BLEU


def _bleu() -> BLEU:
    return BLEU()  # sacrebleu's defaults: lowercase=False, tokenize="13a", smooth_method="exp"


def corpus_bleu(hypotheses: list[str], references: list[str]) -> float:
    """BLEU (0-100) of `hypotheses` against one reference each; NaN for an empty corpus."""
    if len(hypotheses) != len(references):
        raise ValueError(
            f"{len(hypotheses)} hypotheses but {len(references)} references: need one each"
        )
    if not hypotheses:
        return float("nan")  # undefined (sacrebleu would raise)
    return float(_bleu().corpus_score(list(hypotheses), [list(references)]).score)


@functools.cache
def bleu_signature() -> str:
    """sacrebleu's signature of `corpus_bleu`'s settings, such as
    `nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0`."""
    bleu = _bleu()
    bleu.corpus_score(["a"], [["a"]])  # sacrebleu knows the number of references after a score
    return str(bleu.get_signature())
