"""Padding-free BERT inference: the texts of a batch packed end to end, no padding.

A padded batch computes every layer for `texts x longest text` positions; for sentences of
mixed length a third or more of that is padding (bench/RESULTS.md). Here the token vectors
of all texts sit in one `(tokens, hidden)` matrix, so the linear layers — most of the
compute — run on real tokens only. Attention is the one step that needs each text apart:
texts are gathered into small padded groups of similar length (`planning.plan_batches`),
attended, and scattered back.

The layers are the Hugging Face modules of the loaded `BertModel`, called one by one in
`BertLayer`'s order; results match its padded forward pass to float rounding (tested).
Models that change that recipe (other classes, decoders, cross-attention) are not packed:
`can_pack` says so and the encoder pads them as before.
"""

from __future__ import annotations

from dataclasses import dataclass

from .inputs import PairInputs
from .planning import plan_batches

# what one attention group costs beyond its padded tokens: of 0, 16 and 64, 16 was fastest
# overall in an A/B on CPU with MiniLM (batches of 1, 16 and 32 sentences, snippets and
# paragraphs; no single value won every case)
ATTENTION_GROUP_OVERHEAD_TOKENS = 16
MAX_GROUP_TEXTS = 32  # bounds the grouping's dynamic programme (O(texts x this))


def can_pack(model) -> bool:
    """Whether `model` is a plain Hugging Face BERT encoder that `packed_hidden_states`
    computes exactly (its own classes, absolute positions, no decoder parts)."""
    from transformers.models.bert import modeling_bert as bert

    config = model.config
    return (type(model) is bert.BertModel
            and type(model.embeddings) is bert.BertEmbeddings
            and all(type(layer) is bert.BertLayer
                    and type(layer.attention.self) is bert.BertSelfAttention
                    for layer in model.encoder.layer)
            and not config.is_decoder and not config.add_cross_attention
            and getattr(config, "position_embedding_type", "absolute") == "absolute")


@dataclass
class AttentionGroup:
    """Texts attended together: tokens `start:end` of the packed batch, padded to `width`."""

    start: int
    end: int
    texts: int
    width: int
    slots: object  # (tokens,) positions of the real tokens in the (texts * width) layout
    mask: object  # (texts, 1, 1, width) True where a key is real; None when none is padding


@dataclass
class PackedBatch:
    """Texts packed end to end: flat `(tokens,)` id tensors plus where each text is."""

    input_ids: object
    token_type_ids: object
    position_ids: object
    lengths: list[int]
    groups: list[AttentionGroup]

    @classmethod
    def of(cls, inputs: list[PairInputs], device: str = "cpu") -> PackedBatch:
        """Pack unpadded inputs (best sorted longest first: groups are consecutive texts)."""
        import torch

        lengths = [len(p) for p in inputs]

        def flat(field):
            return torch.tensor([t for p in inputs for t in getattr(p, field)], device=device)

        return cls(flat("input_ids"), flat("token_type_ids"), flat("position_ids"), lengths,
                   _attention_groups(lengths, device))


def _attention_groups(lengths: list[int], device) -> list[AttentionGroup]:

    plan = plan_batches(list(range(len(lengths))), lengths, MAX_GROUP_TEXTS,
                        max_tokens=2**62, limit=2**62, overhead=ATTENTION_GROUP_OVERHEAD_TOKENS)
    groups, start = [], 0
    for members in plan:
        sizes = [lengths[i] for i in members]
        real = _real_tokens(sizes, device)
        end = start + sum(sizes)
        groups.append(AttentionGroup(
            start, end, len(members), max(sizes), real.reshape(-1).nonzero().squeeze(1),
            None if bool(real.all()) else real[:, None, None, :]))
        start = end
    return groups


def _real_tokens(lengths: list[int], device):
    """`(texts, longest)` mask of the real tokens when texts of these lengths are padded."""
    import torch

    return (torch.arange(max(lengths), device=device)[None, :]
            < torch.tensor(lengths, device=device)[:, None])


def packed_hidden_states(model, batch: PackedBatch):
    """The last hidden states of every token, `(tokens, hidden)`: `BertModel`'s
    `last_hidden_state` without the padding rows.

    For inference call it under `torch.inference_mode()` with the model in eval mode. In
    training, BERT's dropout goes where `BertModel` puts it — after the embeddings, on the
    attention probabilities, after each dense output — at the config's rates, in each part
    whose module is in training mode, so a packed training pass is the padded one without
    the padding.
    """
    import torch.nn.functional as F

    config, emb = model.config, model.embeddings
    x = emb.LayerNorm(emb.word_embeddings(batch.input_ids)
                      + emb.token_type_embeddings(batch.token_type_ids)
                      + emb.position_embeddings(batch.position_ids))
    x = F.dropout(x, config.hidden_dropout_prob, training=emb.training)
    for layer in model.encoder.layer:
        p, on = config.hidden_dropout_prob, layer.training
        context = _attention(layer.attention.self, x, batch.groups,
                             config.attention_probs_dropout_prob if on else 0.0)
        x = layer.attention.output.LayerNorm(
            F.dropout(layer.attention.output.dense(context), p, training=on) + x)
        inner = layer.intermediate.intermediate_act_fn(layer.intermediate.dense(x))
        x = layer.output.LayerNorm(F.dropout(layer.output.dense(inner), p, training=on) + x)
    return x


def _attention(attention, x, groups: list[AttentionGroup], dropout: float = 0.0):
    """Multi-head self-attention of each group's texts, back in packed layout."""
    import torch.nn.functional as F

    heads, size = attention.num_attention_heads, attention.attention_head_size
    hidden = x.shape[1]
    projected = [attention.query(x), attention.key(x), attention.value(x)]
    context = x.new_empty(x.shape)
    for g in groups:
        parts = []
        for tokens in projected:
            tokens = tokens[g.start:g.end]
            if g.mask is not None:  # scatter into the padded (texts * width) layout
                padded = tokens.new_zeros(g.texts * g.width, hidden)
                padded[g.slots] = tokens
                tokens = padded
            parts.append(tokens.view(g.texts, g.width, heads, size).transpose(1, 2))
        out = F.scaled_dot_product_attention(*parts, attn_mask=g.mask, scale=attention.scaling,
                                             dropout_p=dropout)
        out = out.transpose(1, 2).reshape(g.texts * g.width, hidden)
        context[g.start:g.end] = out if g.mask is None else out[g.slots]
    return context


def pool_packed(hidden, batch: PackedBatch, pooling: str):
    """One vector per text from packed token vectors: the mean of its tokens (special tokens
    included, as sentence-transformers does) or its `[CLS]` vector."""
    import torch

    device = hidden.device
    if pooling == "cls":
        return hidden[torch.tensor([0, *batch.lengths[:-1]], device=device).cumsum(0)]
    # each row written once, then summed as the padded path does: no atomic adds, so the
    # result is the same on every run on a GPU too
    real = _real_tokens(batch.lengths, device)
    padded = hidden.new_zeros(*real.shape, hidden.shape[1])
    padded[real] = hidden
    return padded.sum(dim=1) / real.sum(dim=1, keepdim=True).to(hidden.dtype)
