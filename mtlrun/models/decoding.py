"""Batched greedy and beam-search decoding with the decoders of models/decoders.py.

All sentences of a batch decode together; a sentence leaves the batch (`decoder.reorder`) once
its search is over, so finished outputs stop costing compute. `max_len` bounds the output of
each sentence ([B] tensor or one int): an output has at most max_len tokens, and a hypothesis
that reaches max_len tokens is finished without an EOS (nor its log-probability). Padding (id
0) is never produced. Outputs are token lists without the final EOS. Neither function changes
the model's mode nor disables gradients: eval() and torch.no_grad() are the caller's business.

Beam search (e.g. Sutskever, Vinyals and Le 2014, "Sequence to Sequence Learning with Neural
Networks", NIPS 2014) scores a hypothesis by the sum of its tokens' log-probabilities and
ranks finished ones by score / length^alpha, alpha = `length_penalty`, where length counts the
scored tokens (the output plus its EOS); alpha = 0 is the raw log-probability. This is the
plain normalisation, not the ((5 + length) / 6)^alpha of GNMT (Wu et al. 2016, "Google's
Neural Machine Translation System", arXiv:1609.08144). The beam shrinks as hypotheses finish,
as in Nematus (Sennrich et al. 2017, "Nematus: a Toolkit for Neural Machine Translation", EACL
2017 demonstrations): each step keeps the best `width` extensions, width = K minus the
hypotheses finished so far; those ending in EOS (or reaching max_len) are finished, the others
go on. Every slot thus finishes once and the best hypothesis stays in the beam as long as it
ranks among the best extensions, so a wide beam does not stop on K poor short hypotheses
while a likely long one is still growing (fairseq's stop after K finished can). A sentence's
search ends when its K slots have finished, when it reaches max_len, or when no continuing
hypothesis can still beat its best finished one (log-probabilities only decrease, so
score / L^alpha over the lengths L still possible bounds it). With beam_size=1 this is greedy
decoding exactly, whatever alpha.
"""

from __future__ import annotations

import torch

from mtlrun.models.decoders import EOS, PAD


def _limits(max_len: torch.Tensor | int, batch: int) -> list[int]:
    return torch.as_tensor(max_len).long().expand(batch).tolist()


def _log_probs(decoder, state, tokens: torch.Tensor):
    logits, state = decoder.step(state, tokens)
    log_probs = logits.float().log_softmax(-1)
    log_probs[:, PAD] = float("-inf")  # a model's probabilities, but padding is never an output
    return log_probs, state


def greedy(
    decoder, memory: torch.Tensor, memory_pad: torch.Tensor, max_len: torch.Tensor | int
) -> list[list[int]]:
    limits = _limits(max_len, memory.shape[0])
    outputs: list[list[int]] = [[] for _ in limits]
    alive = [b for b, limit in enumerate(limits) if limit > 0]  # sentences still decoding
    if not alive:
        return outputs
    device = memory.device
    state = decoder.reorder(decoder.start(memory, memory_pad), torch.tensor(alive, device=device))
    tokens = torch.full((len(alive),), EOS, dtype=torch.long, device=device)
    length = 0
    while alive:
        length += 1
        log_probs, state = _log_probs(decoder, state, tokens)
        tokens = log_probs.argmax(-1)
        keep = []
        for row, (b, token) in enumerate(zip(alive, tokens.tolist(), strict=True)):
            if token == EOS:
                continue
            outputs[b].append(token)
            if length < limits[b]:
                keep.append(row)
        if len(keep) < len(alive):
            index = torch.tensor(keep, dtype=torch.long, device=device)
            alive = [alive[row] for row in keep]
            state, tokens = decoder.reorder(state, index), tokens[index]
    return outputs


def beam_search(
    decoder,
    memory: torch.Tensor,
    memory_pad: torch.Tensor,
    beam_size: int,
    length_penalty: float,
    max_len: torch.Tensor | int,
) -> list[list[int]]:
    k, alpha, device = beam_size, length_penalty, memory.device
    limits = _limits(max_len, memory.shape[0])
    best: list[list[int]] = [[] for _ in limits]
    best_score = [float("-inf")] * len(limits)
    alive = [b for b, limit in enumerate(limits) if limit > 0]
    if not alive:
        return best
    rows = torch.tensor(alive, device=device).repeat_interleave(k)
    state = decoder.reorder(decoder.start(memory, memory_pad), rows)
    n = len(alive)
    scores = torch.full((n, k), float("-inf"), device=device)  # -inf: an empty slot
    scores[:, 0] = 0.0  # one initial hypothesis per sentence, not k copies of it
    width = torch.full((n, 1), k, device=device)  # slots not yet taken by finished hypotheses
    hyps = torch.empty(n, k, 0, dtype=torch.long, device=device)
    tokens = torch.full((n * k,), EOS, dtype=torch.long, device=device)
    rank = torch.arange(k, device=device)
    length = 0
    while alive:
        length += 1
        log_probs, state = _log_probs(decoder, state, tokens)
        vocab = log_probs.shape[-1]
        candidates = (scores.unsqueeze(-1) + log_probs.view(n, k, vocab)).view(n, k * vocab)
        top, index = candidates.topk(k, dim=1)
        origin, token = index // vocab, index % vocab  # the slot extended, the token added
        hyps = torch.cat([hyps.gather(1, origin.unsqueeze(-1).expand(-1, -1, length - 1)),
                          token.unsqueeze(-1)], -1)  # fmt: skip
        at_limit = torch.tensor([[length >= limits[b]] for b in alive], device=device)
        chosen = (rank < width) & top.isfinite()
        final = chosen & ((token == EOS) | at_limit)
        scores = top.masked_fill(~chosen | final, float("-inf"))
        width = width - final.sum(1, keepdim=True)

        for i, r in final.nonzero().tolist():
            b = alive[i]
            seq = hyps[i, r].tolist()
            normalised = top[i, r].item() / length**alpha  # length: the scored tokens
            if normalised > best_score[b]:
                best_score[b], best[b] = normalised, seq[:-1] if seq[-1] == EOS else seq
        keep = []
        for i, (b, score) in enumerate(zip(alive, scores.max(1).values.tolist(), strict=True)):
            # a continuing hypothesis ends with a score at most score / L^alpha for some
            # L in [length + 1, limit]: stop when that cannot beat the best finished one
            bound = max(score / (length + 1) ** alpha, score / limits[b] ** alpha)
            if score > float("-inf") and bound > best_score[b]:
                keep.append(i)
        if not keep:
            break
        keep_t = torch.tensor(keep, dtype=torch.long, device=device)
        rows = keep_t.unsqueeze(1) * k + origin[keep_t]  # the state rows the new slots extend
        state, tokens = decoder.reorder(state, rows.view(-1)), token[keep_t].view(-1)
        hyps, scores, width = hyps[keep_t], scores[keep_t], width[keep_t]
        alive, n = [alive[i] for i in keep], len(keep)
    return best
