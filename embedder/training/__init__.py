"""Everything that trains a model; nothing that serves one.

- `pretrain` — MLM + NSP pretraining (the lecture), checkpoints, exact resume.
- `finetune` — a `[CLS]` classifier from labelled texts.
- `coherence` — adapting the NSP coherence model to labelled passage pairs, and exporting it
  as a small delta over the default encoder.
- `pairs`, `masking`, `corpus` — NSP pair building, BERT masking, reading a text corpus.
- `lora` — low-rank adapters on frozen layers; `objectives` — the MLM + NSP loss;
  `loop` — the plumbing every loop shares (optimiser, step, freezing, collate, saving).

Inference (`embedder.encoder`, `embedder.coherence`, `embedder.classifier`), the indexer and
the server never import this package (`tests/test_boundaries.py`).
"""
