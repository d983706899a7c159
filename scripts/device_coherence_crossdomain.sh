#!/usr/bin/env bash
# One lent GPU: train the coherence model on every `train` source (embedder/training/
# sources.py: Moby-Dick, the King James Bible, the Linux docs, the Debian Reference and
# Policy, the CMake manual), more swapped (sentence-order) negatives, continuing the
# packaged delta; then calibrate it on the calibration sources and run the cross-domain
# benchmark on the test sources, all on the device.
#
# Here first: bash scripts/device_coherence_prep.sh   (makes .devmodel and .devdata)
# Then, with the device tool:
#   run(command="MINUTES=7 bash scripts/device_coherence_crossdomain.sh",
#       carry=[".devmodel", ".devdata"], timeout_s=600)
# Bring the result home:
#   python scripts/train_default_coherence.py --adopt <files_at>/run --export-to DIR
#   python scripts/calibrate_coherence.py --model DIR
#   (cd bench && python coherence.py --model DIR)  # compare with the packaged model's table
# and ship DIR as embedder/coherence_model if its out-of-domain figures are better.
set -u
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=8
export PYTHONPATH="$PWD/.devmodel:$PWD"
MINUTES=${MINUTES:-7} LR=${LR:-1e-4} BATCH=${BATCH:-64} NEGATIVES=${NEGATIVES:-0.3,0.3,0.4}
mkdir -p /tmp/data && tar -xJf .devdata/corpus.tar.xz -C /tmp/data
export BERTSEARCH_SHARED_DATA=/tmp/data BERTSEARCH_CORPORA=/tmp/data/.corpora
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 scripts/train_default_coherence.py --adopt embedder/coherence_model \
  --export-to /tmp/start 2>&1 | tail -1
python3 scripts/train_default_coherence.py --data /tmp/data --corpora /tmp/data/.corpora \
  --sources train --negatives "$NEGATIVES" --work /tmp/run --start-from /tmp/start \
  --export-to "$OUT/run" --minutes "$MINUTES" --batch-size "$BATCH" --lora-rank 32 \
  --lr "$LR" --eval-pairs 4096 2>&1 | tee "$OUT/log.txt" | grep -v "^step"
python3 scripts/calibrate_coherence.py --model "$OUT/run" 2>&1 | tail -1
(cd bench && python3 coherence.py --model "$OUT/run" --pairs 300 \
  --json "$OUT/bench.json") 2>&1 | tee "$OUT/bench.txt" | grep -v Warning
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader || true
