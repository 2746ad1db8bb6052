#!/usr/bin/env bash
# xfer GPU check, built by `cargo xtask gpu-bundle` (see docs/gpu.md).
#
#   ./run.sh [--device cuda|cuda:N|cpu] [--steps N] [--tests-only | --bench-only]
#            [--torch PYTHON]
#
# 1. Finds the CUDA runtime libraries the binaries link (libcublas.so.13, libcublasLt.so.13,
#    libcudart.so.13, libcurand.so.10, libnvrtc.so.13): folders in XFER_CUDA_LIB_DIRS
#    (colon-separated), then a PyTorch CUDA installation (torch/lib and site-packages/nvidia/*/lib,
#    nvidia/cu13/lib included) of the Python in XFER_PYTHON, python3 or python, then CUDA_HOME,
#    /usr/local/cuda. The driver's libcuda.so.1 comes from the system; with --device cpu and no
#    driver the bundled stub (cpu-stub/) stands in, so the CPU half runs anywhere.
# 2. Runs the device-parity tests with XFER_DEVICE set to the device.
# 3. Runs the four workloads of shared/bench/WORKLOADS.md on the device, printing the CPU
#    benchmark's lines: `<workload> ms_per_step=<median> peak_rss_mb=<MB>`.
# 4. With --torch PYTHON: the PyTorch reference (torch_peer_cuda.py) on the same device.
# Exit status: non-zero when a test or a workload failed.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
DEVICE=cuda
STEPS=30
RUN_TESTS=1
RUN_BENCH=1
TORCH_PY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE=${2:?--device needs cuda or cpu}; shift 2 ;;
    --steps) STEPS=${2:?--steps needs a number}; shift 2 ;;
    --tests-only) RUN_BENCH=0; shift ;;
    --bench-only) RUN_TESTS=0; shift ;;
    --torch) TORCH_PY=${2:?--torch needs a python interpreter}; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

NEED="libcublas.so.13 libcublasLt.so.13 libcudart.so.13 libcurand.so.10 libnvrtc.so.13"
CANDIDATES=()
add_candidates() { local d; for d in "$@"; do [ -d "$d" ] && CANDIDATES+=("$d"); done; }

IFS=: read -r -a extra <<< "${XFER_CUDA_LIB_DIRS:-}"
add_candidates "${extra[@]}"
for py in ${XFER_PYTHON:-} python3 python; do
  command -v "$py" >/dev/null 2>&1 || continue
  torch_dir=$("$py" -c 'import torch, os; print(os.path.dirname(torch.__file__))' 2>/dev/null) || torch_dir=""
  if [ -n "$torch_dir" ]; then
    echo "run.sh: PyTorch at $torch_dir ($("$py" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda)' 2>/dev/null))"
    add_candidates "$torch_dir/lib" "$(dirname "$torch_dir")"/nvidia/cu13/lib "$(dirname "$torch_dir")"/nvidia/*/lib
    break
  fi
  # NVIDIA's wheels without torch (the nvidia namespace package).
  nv=$("$py" -c 'import nvidia; print(" ".join(nvidia.__path__))' 2>/dev/null) || nv=""
  for d in $nv; do add_candidates "$d"/cu13/lib "$d"/*/lib; done
done
for root in "${CUDA_HOME:-}" "${CUDA_PATH:-}" /usr/local/cuda; do
  [ -n "$root" ] && add_candidates "$root/lib64" "$root/lib" "$root/targets/x86_64-linux/lib"
done

LIBDIRS=()
missing=""
for lib in $NEED; do
  found=""
  for d in "${CANDIDATES[@]}"; do
    if [ -e "$d/$lib" ]; then found=$d; break; fi
  done
  if [ -z "$found" ]; then missing="$missing $lib"; continue; fi
  case " ${LIBDIRS[*]:-} " in *" $found "*) ;; *) LIBDIRS+=("$found") ;; esac
done
if [ -n "$missing" ]; then
  echo "run.sh: CUDA libraries not found:$missing" >&2
  echo "run.sh: install PyTorch with CUDA 13 (pip install torch --index-url https://download.pytorch.org/whl/cu130)" >&2
  echo "run.sh: or name the folders holding them in XFER_CUDA_LIB_DIRS=dir1:dir2" >&2
  exit 1
fi

has_driver() {
  local d
  for d in "${LIBDIRS[@]}" ${LD_LIBRARY_PATH//:/ }; do
    [ -e "$d/libcuda.so.1" ] && return 0
  done
  ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1 ' && return 0
  for d in /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib /usr/local/nvidia/lib64; do
    [ -e "$d/libcuda.so.1" ] && return 0
  done
  return 1
}
if ! has_driver; then
  case "$DEVICE" in
    cpu) LIBDIRS+=("$HERE/cpu-stub")
         echo "run.sh: no NVIDIA driver (libcuda.so.1): using the bundled stub, CPU only" ;;
    *) echo "run.sh: no NVIDIA driver (libcuda.so.1) on this machine: --device $DEVICE cannot run (try --device cpu)" >&2
       exit 1 ;;
  esac
fi
LD_LIBRARY_PATH=$(IFS=:; echo "${LIBDIRS[*]}")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export LD_LIBRARY_PATH
echo "run.sh: LD_LIBRARY_PATH=$LD_LIBRARY_PATH"

echo "== xfer GPU check: device $DEVICE, $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -n)"
[ -f "$HERE/BUILD-INFO" ] && sed 's/^/   build: /' "$HERE/BUILD-INFO"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv,noheader | sed 's/^/   gpu: /'
fi

status=0
if [ "$RUN_TESTS" = 1 ]; then
  for t in xfer-ops-device-parity xfer-models-device-parity; do
    echo "== $t (XFER_DEVICE=$DEVICE)"
    if ! XFER_DEVICE=$DEVICE "$HERE/$t" --test-threads 1 --nocapture; then
      echo "run.sh: $t FAILED" >&2
      status=1
    fi
  done
fi
if [ "$RUN_BENCH" = 1 ]; then
  echo "== workloads (--device $DEVICE --steps $STEPS; median ms per step after 3 warm-up steps)"
  for w in dann-lenet l2sp-mlp finetune-resnet18 zsl-hinge; do
    if ! "$HERE/xfer-bench" "$w" --steps "$STEPS" --device "$DEVICE"; then
      echo "run.sh: workload $w FAILED" >&2
      status=1
    fi
  done
  if [ -n "$TORCH_PY" ]; then
    echo "== PyTorch reference (torch_peer_cuda.py --device $DEVICE --steps $STEPS)"
    if ! (set -o pipefail; "$TORCH_PY" "$HERE/torch_peer_cuda.py" --device "$DEVICE" --steps "$STEPS" | sed 's/^/torch /'); then
      echo "run.sh: the PyTorch reference FAILED" >&2
      status=1
    fi
  fi
fi
if [ "$status" = 0 ]; then echo "== run.sh: all passed"; else echo "== run.sh: FAILURES above" >&2; fi
exit $status
