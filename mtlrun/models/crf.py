"""A linear-chain CRF output layer for sequence tagging.

For emissions x [T, C] and a tag path y of length L (the mask's prefix), the path score is

    score(x, y) = start[y_1] + Σ_t emissions[t, y_t] + Σ_{t>1} transitions[y_{t-1}, y_t] + end[y_L]

and p(y | x) = exp(score(x, y)) / Z(x), with Z(x) the sum over all C^L paths. Everything runs
in log space (logsumexp), batched over sentences and looping over time only. Masks are boolean
[B, T] and left-aligned: each row is True on a prefix of length >= 1.
"""

from __future__ import annotations

import torch
from torch import nn


class CRF(nn.Module):
    """Transition, start and end scores over `num_tags` tags; `forward` is `nll`."""

    def __init__(self, num_tags: int) -> None:
        super().__init__()
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags).uniform_(-0.1, 0.1))
        self.start = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        self.end = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))

    def forward(
        self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        return self.nll(emissions, tags, mask)

    def _check(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if emissions.dim() != 3 or emissions.shape[-1] != self.num_tags:
            raise ValueError(f"emissions must be [B, T, {self.num_tags}], got "
                             f"{list(emissions.shape)}")  # fmt: skip
        if mask.shape != emissions.shape[:2]:
            raise ValueError(f"mask {list(mask.shape)} does not match emissions "
                             f"{list(emissions.shape[:2])}")  # fmt: skip
        return mask.bool()

    def score(
        self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """score(x, y) [B] of the given tag paths; tags outside the mask are ignored."""
        mask = self._check(emissions, mask)
        tags = torch.where(mask, tags, torch.zeros_like(tags))  # e.g. -100 padding
        emitted = emissions.gather(-1, tags.unsqueeze(-1)).squeeze(-1)
        total = self.start[tags[:, 0]] + torch.where(mask, emitted, 0).sum(1)
        moved = self.transitions[tags[:, :-1], tags[:, 1:]]
        total = total + torch.where(mask[:, 1:], moved, 0).sum(1)
        last = tags.gather(1, mask.sum(1, keepdim=True) - 1).squeeze(1)
        return total + self.end[last]

    def _forward_alphas(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        """alpha_t [B, C]: log-sum of the scores of all prefixes ending in each tag at t (held
        constant past each sentence's end)."""
        alpha = self.start + emissions[:, 0]
        alphas = [alpha]
        for t in range(1, emissions.shape[1]):
            step = torch.logsumexp(alpha.unsqueeze(2) + self.transitions, dim=1) + emissions[:, t]
            alpha = torch.where(mask[:, t, None], step, alpha)
            alphas.append(alpha)
        return alphas

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log Z(x) [B]."""
        mask = self._check(emissions, mask)
        return torch.logsumexp(self._forward_alphas(emissions, mask)[-1] + self.end, dim=1)

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-sentence negative log-likelihood log Z(x) - score(x, y) [B]."""
        return self.log_partition(emissions, mask) - self.score(emissions, tags, mask)

    def marginals(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Posterior p(y_t = c | x) [B, T, C] by forward-backward; zero outside the mask."""
        mask = self._check(emissions, mask)
        alphas = self._forward_alphas(emissions, mask)
        beta = self.end.expand_as(alphas[-1])  # beta_t: log-sum of suffix scores after t
        betas = [beta]
        for t in range(emissions.shape[1] - 2, -1, -1):
            nxt = emissions[:, t + 1] + beta
            step = torch.logsumexp(self.transitions + nxt.unsqueeze(1), dim=2)
            beta = torch.where(mask[:, t + 1, None], step, self.end.expand_as(step))
            betas.append(beta)
        joint = torch.stack(alphas, 1) + torch.stack(betas[::-1], 1)
        # normalising each position by itself (Σ_c alpha·beta = Z at every t) keeps rows
        # summing to one even where float32 rounding of huge scores would skew log Z
        probs = torch.softmax(joint, dim=-1)
        return torch.where(mask.unsqueeze(-1), probs, 0)

    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Viterbi best paths [B, T] (long); 0 outside the mask. Ties go to the lower tag."""
        mask = self._check(emissions, mask)
        batch, length, _ = emissions.shape
        best = self.start + emissions[:, 0]
        identity = torch.arange(self.num_tags, device=emissions.device).expand(batch, -1)
        pointers = []  # pointers[t-1][b, j]: best previous tag for tag j at t
        for t in range(1, length):
            scores, previous = (best.unsqueeze(2) + self.transitions).max(dim=1)
            on = mask[:, t, None]
            best = torch.where(on, scores + emissions[:, t], best)
            pointers.append(torch.where(on, previous, identity))  # padding: stay in place
        tag = (best + self.end).argmax(dim=1)
        path = [tag]
        for previous in reversed(pointers):
            tag = previous.gather(1, tag.unsqueeze(1)).squeeze(1)
            path.append(tag)
        path = torch.stack(path[::-1], dim=1)
        return torch.where(mask, path, 0)
