#!/usr/bin/env bash
# One batch of GPU work on a machine that has torch and a CUDA GPU but not this package (a lent GPU box with no
# network): the package is mapped from this tree under /tmp/pk (no pip install), the kernel library taken from a
# prebuilt archive when one is given (nvcc builds it otherwise, ~1-2 min on 16 cores), then each stage in turn,
# every log and result under $OUT (default ./gpu_out).
#
#   WHEELS=.whl_cpu CC=.whl_cpu/cc.tar.xz COMMIT=$(git rev-parse --short HEAD) bash tools/gpu_session.sh rv bc t
#
# Stages:
#   t    pytest -m gpu tests/cuda_kernels tests/runner/test_gpu_runner.py (python -P: the repo's own awq_gguf/
#        folder, which lacks the mapped subpackages, must not shadow /tmp/pk)
#   g    tools/bench_gpu_defaults.py gemv (GT types, GS shapes, GM modes)
#   rv   tools/bench_gpu_defaults.py runner on tinyllama-1.1b and llama2-7b-4l, RV = space-separated variants
#   bc   tools/bench_cuda.py (BCA: extra arguments, e.g. --skip-prompt)
#   gr   tools/bench_gpu_runner.py
#   awq  tools/bench_awq_gpu.py with torch.compile on (AWQ_GGUF_COMPILE=1)
# Each stage runs under `timeout` (TT, TG, TRV, TBC, TGR, TAWQ seconds) so a call with a hard limit keeps what
# the earlier stages wrote. WHEELS: a folder of wheels the machine lacks (cffi, pycparser, gguf), installed into
# /tmp/site. CC: an xz tar of a cache folder (AWQ_GGUF_CUDA_CACHE) holding a library built for this tree's key.
set -u
stages="t g rv bc gr awq"
for st in "$@"; do  # bad stages fail before any work, in one line, with nothing written
  case " $stages " in *" $st "*) ;; *) echo "gpu_session.sh: unknown stage '$st' (stages: $stages)" >&2; exit 2 ;; esac
done
cd "$(dirname "$0")/.."
root=$PWD
OUT=${OUT:-$root/gpu_out}
mkdir -p "$OUT" /tmp/pk/awq_gguf /tmp/cc
if [ -n "${WHEELS:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$WHEELS"/*.whl || exit 1
fi
cp -r awq_gguf/. /tmp/pk/awq_gguf/
for s in convert awq_scale cpu_kernels cuda_kernels; do ln -sfn "$root/$s" "/tmp/pk/awq_gguf/$s"; done
export PYTHONPATH=/tmp/pk:/tmp/site PYTHONUNBUFFERED=1 AWQ_GGUF_CUDA_CACHE=/tmp/cc
[ -n "${CC:-}" ] && tar -xJf "$CC" -C /tmp/cc
python3 -c "import sys; sys.path.insert(0, 'cuda_kernels'); import _build; print('library', _build.build())" \
  2>&1 | tee "$OUT/lib.log"
nvidia-smi --query-gpu=name,clocks.max.sm,temperature.gpu --format=csv | tee "$OUT/gpu.txt"
t0=$(date +%s)
for st in "$@"; do
  echo "== $st $(date -u +%H:%M:%S) +$(( $(date +%s) - t0 ))s"
  case $st in
    t) timeout "${TT:-300}" python3 -P -m pytest -q -p no:cacheprovider -m gpu tests/cuda_kernels \
         tests/runner/test_gpu_runner.py > "$OUT/tests.log" 2>&1; tail -4 "$OUT/tests.log" ;;
    g) timeout "${TG:-300}" python3 tools/bench_gpu_defaults.py gemv --types "${GT:-Q4_K,Q6_K,Q4_0}" \
         --shapes "${GS:-4096x4096,11008x4096,4096x11008,14336x4096,4096x14336,2048x2048,5632x2048,2048x5632}" \
         --modes "${GM:-12,14,16,17,18,19}" --out "$OUT/g" > "$OUT/g.log" 2>&1; cat "$OUT/g.log" ;;
    rv) args=(); for v in ${RV:-}; do args+=(--variant "$v"); done
        for sh in tinyllama-1.1b llama2-7b-4l; do
          timeout "${TRV:-200}" python3 tools/bench_gpu_defaults.py runner --shape "$sh" --rounds 3 "${args[@]}" \
            --out "$OUT/rv_$sh" > "$OUT/rv_$sh.log" 2>&1; cat "$OUT/rv_$sh.log"
        done ;;
    bc) timeout "${TBC:-400}" python3 tools/bench_cuda.py --out "$OUT/bc" --commit "${COMMIT:-}" ${BCA:-} \
          > "$OUT/bc.log" 2>&1; tail -60 "$OUT/bc.log" ;;
    gr) timeout "${TGR:-300}" python3 tools/bench_gpu_runner.py --out "$OUT/gr" --commit "${COMMIT:-}" \
          > "$OUT/gr.log" 2>&1; tail -30 "$OUT/gr.log" ;;
    awq) AWQ_GGUF_COMPILE=1 timeout "${TAWQ:-400}" python3 tools/bench_awq_gpu.py --out "$OUT/awq" \
           --commit "${COMMIT:-}" > "$OUT/awq.log" 2>&1; tail -30 "$OUT/awq.log" ;;
  esac
done
echo "== end +$(( $(date +%s) - t0 ))s"
