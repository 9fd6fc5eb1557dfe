"""A pretrained Hugging Face encoder (BERT, MiniLM, ...) as the shared encoder.

[CLS] pooling for classification and pairs (the tokenizer built `[CLS] a [SEP] b [SEP]`); per
subword states for tagging (labels sit on first subwords).

MC dropout (training/signals.py `mc_dropout_modules`): the hidden dropout layers are
`nn.Dropout` modules, but the attention-probability dropout is not: a Hugging Face attention
module (BertSelfAttention in transformers 5) passes `dropout=self.dropout.p if self.training
else 0.0` to its attention function (SDPA or eager), so it samples only when the attention
module itself is in training mode. `mc_dropout_modules` declares those modules. `head_dropout`
(the model's hidden dropout probability, as MT-DNN's task-specific dropout) sits on the last
hidden states and the [CLS] vector, right before the task heads: the one dropout
`scheduler.mc_dropout=heads` samples."""

from __future__ import annotations

import torch
from torch import nn

from mtlrun.models.pretrained import resolve_pretrained


class BertEncoder(nn.Module):
    def __init__(self, cfg) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModel  # heavy: only for model=bert
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # its weight-loading bar would cut into our output

        path = resolve_pretrained(cfg.name)
        config = AutoConfig.from_pretrained(path)
        if cfg.dropout is not None:
            config.hidden_dropout_prob = config.attention_probs_dropout_prob = cfg.dropout
        self.bert = AutoModel.from_pretrained(path, config=config)
        self.head_dropout = nn.Dropout(config.hidden_dropout_prob)
        self.output_size = self.pair_output_size = config.hidden_size
        self.uses_token_types = getattr(config, "type_vocab_size", 0) > 1

    def last_layer_parameters(self) -> list[nn.Parameter]:
        """The top transformer layer: GradNorm's "last shared layer" W."""
        top = f"layer.{self.bert.config.num_hidden_layers - 1}."
        return [p for n, p in self.bert.named_parameters() if top in n]

    def mc_dropout_modules(self) -> list[nn.Module]:
        """The modules whose own training flag gates a dropout that is not an nn.Dropout call:
        every attention module of the Hugging Face model holding an `nn.Dropout` whose rate it
        reads (`dropout=self.dropout.p if self.training else 0.0`; BertSelfAttention,
        BertCrossAttention and their counterparts in other BERT-like architectures)."""
        return [m for m in self.bert.modules()
                if type(m).__name__.endswith("Attention")
                and isinstance(getattr(m, "dropout", None), nn.Dropout)]  # fmt: skip

    def forward(
        self, ids: torch.Tensor, lengths: torch.Tensor, segments: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mask = torch.arange(ids.shape[1])[None, :] < lengths[:, None]
        types = segments.long() if segments is not None and self.uses_token_types else None
        states = self.bert(input_ids=ids, attention_mask=mask.to(ids.device).long(),
                           token_type_ids=types).last_hidden_state  # fmt: skip
        return self.head_dropout(states), self.head_dropout(states[:, 0])
