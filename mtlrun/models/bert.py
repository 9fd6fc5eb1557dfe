"""A pretrained Hugging Face encoder (BERT, MiniLM, ...) as the shared encoder.

[CLS] pooling for classification and pairs (the tokenizer built `[CLS] a [SEP] b [SEP]`); per
subword states for tagging (labels sit on first subwords). Its dropout layers are `nn.Dropout`
modules, so MC dropout switches them on at inference like the LSTM's."""

from __future__ import annotations

import torch
from torch import nn

from mtlrun.models.pretrained import resolve_pretrained


class BertEncoder(nn.Module):
    def __init__(self, cfg) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModel  # heavy: only for model=bert

        path = resolve_pretrained(cfg.name)
        config = AutoConfig.from_pretrained(path)
        if cfg.dropout is not None:
            config.hidden_dropout_prob = config.attention_probs_dropout_prob = cfg.dropout
        self.bert = AutoModel.from_pretrained(path, config=config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.output_size = self.pair_output_size = config.hidden_size
        self.uses_token_types = getattr(config, "type_vocab_size", 0) > 1

    def last_layer_parameters(self) -> list[nn.Parameter]:
        """The top transformer layer: GradNorm's "last shared layer" W."""
        top = f"layer.{self.bert.config.num_hidden_layers - 1}."
        return [p for n, p in self.bert.named_parameters() if top in n]

    def forward(
        self, ids: torch.Tensor, lengths: torch.Tensor, segments: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mask = torch.arange(ids.shape[1])[None, :] < lengths[:, None]
        types = segments.long() if segments is not None and self.uses_token_types else None
        states = self.bert(input_ids=ids, attention_mask=mask.to(ids.device).long(),
                           token_type_ids=types).last_hidden_state  # fmt: skip
        return self.dropout(states), self.dropout(states[:, 0])
