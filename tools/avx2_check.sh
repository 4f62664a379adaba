#!/usr/bin/env bash
# The int8 tests on AVX2 code paths, from any x86 machine (a VNNI one included); see docs/cpu.md.
#   1. OpenVINO and PyTorch with oneDNN limited to AVX2 (ONEDNN_MAX_CPU_ISA, ATEN_CPU_CAPABILITY): native speed,
#      the kernels an AVX2 CPU runs.
#   2. ONNX Runtime, which has no such switch, in a process emulated as an AMD EPYC Rome by qemu-user
#      (apt-get install qemu-user); 10-50x slower. OpenVINO is left out there: qemu miscomputes its JIT kernels.
# Maintainers run it after touching int8 or the test models; CI does not (it needs qemu and takes minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
TESTS=(tests/toolchain/test_steps.py tests/toolchain/test_cpu_targets.py tests/toolchain/test_stages.py
       tests/toolchain/test_prune.py tests/toolchain/test_cli.py)
echo "== oneDNN (OpenVINO, PyTorch) limited to AVX2" >&2
ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 "$PY" -m pytest -q -p no:cacheprovider "${TESTS[@]}"
if ! command -v qemu-x86_64 >/dev/null; then
    echo "qemu-x86_64 is not installed (apt-get install qemu-user): ONNX Runtime's AVX2 kernels were not run" >&2
    exit 1
fi
echo "== the whole process on an emulated AVX2 CPU (ONNX Runtime's kernels)" >&2
OMP_NUM_THREADS=1 qemu-x86_64 -cpu EPYC-Rome "$PY" -m pytest -q -p no:cacheprovider \
    -k "not openvino and not OpenVino and not nncf and not ovms" tests/toolchain/test_steps.py \
    tests/toolchain/test_cpu_targets.py 2> >(grep -v "TCG doesn't support" >&2)
