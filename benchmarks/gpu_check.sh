#!/usr/bin/env bash
# One prepared GPU check: kernel correctness on the card, then the side-by-side timings.
# Installs nothing from the network: run it where torch with CUDA, triton and the peers
# are installed (the project's .venv, or a machine's own Python plus carried wheels).
#   PYTHON   the interpreter (default .venv/bin/python)
#   WHEELS   a folder of wheels to install first, offline (peers such as kornia, piq)
#   OUT      where the results go (default gpu-out)
#   KERNEL_BENCH   0 skips the side-by-side kernel timings (default 1)
#   E2E_PROCESSES  also time `ggtqc filter` end to end with these --processes values
#            (e.g. "1 4 16"; filter_e2e.sh, E2E_N pairs, default 512, each linked in
#            E2E_COPIES times, default 1); off when unset
#   E2E_DEVICES    the --device values for that (default cpu)
#   E2E_PLUGINS    the --plugins values for that (default "ssim all,-clip,-iqa"); with "all",
#            CLIP_RANDOM=1 times clip on random weights where none can be fetched
#   PARITY   1 also runs device_parity.py (cpu and cuda verdicts on planted pairs)
#   WEIGHTSFREE  0 skips gpu_weightsfree.py (the torch path of color, hallucination and
#            resolution on the card against the CPU path, then their ms per pair at batch
#            1, 16 and 64; default 1)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-out}
mkdir -p "$out"
python=${PYTHON:-.venv/bin/python}
unset TRITON_INTERPRET
if [ -n "${WHEELS:-}" ]; then
    "$python" -m pip install --no-index --no-deps -q "$WHEELS"/*.whl 2>&1 | tail -3
fi
if ! "$python" -c "import ggtqc.kernels" 2>/dev/null; then  # ggtqc itself, offline, without its dependencies
    "$python" -m pip install --no-index --no-deps --no-build-isolation -q -e . 2>&1 | tail -3
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
lscpu | grep -E "^(Model name|CPU\(s\)):" | tee -a "$out/gpu.txt"
"$python" -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)" | tee -a "$out/gpu.txt"
"$python" -m pytest tests/test_ssim_kernel.py tests/test_ssim.py tests/test_clip.py tests/test_iqa.py -q -p no:cacheprovider 2>&1 | tee "$out/tests.txt"
if [ "${WEIGHTSFREE:-1}" != 0 ]; then
    "$python" -m benchmarks.gpu_weightsfree --out "$out/weightsfree" 2>&1 | tee "$out/weightsfree.txt"
fi
if [ "${KERNEL_BENCH:-1}" != 0 ]; then
    "$python" -m pytest benchmarks/ --benchmark-only -k "cuda or ggtqc_opencv or clip or iqa" -p no:cacheprovider \
        --benchmark-json="$out/gpu.json" --benchmark-columns=mean,min,stddev,rounds 2>&1 | tee "$out/bench.txt"
fi
if [ -n "${E2E_PROCESSES:-}" ]; then
    PYTHON="$python" N=${E2E_N:-512} COPIES=${E2E_COPIES:-1} DEVICES="${E2E_DEVICES:-cpu}" PROCESSES="$E2E_PROCESSES" PLUGINS="${E2E_PLUGINS:-ssim all,-clip,-iqa}" \
        bash benchmarks/filter_e2e.sh 2>&1 | tee "$out/e2e.txt"
fi
if [ "${PARITY:-0}" = 1 ]; then
    "$python" -m benchmarks.device_parity --per-photo 2 --out "$(mktemp -d)" 2>&1 | tee "$out/parity.txt"
fi
