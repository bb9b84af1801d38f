#!/bin/bash
# The GPU check of issue 12, one script: the Qwen2.5-VL-7B architecture (random weights,
# bf16, the paper's LoRA, SDPA) on this machine's GPU(s). Each part writes its own JSON into
# $RESULTS (default bench/results); a summary with every part's exit status goes to
# $RESULTS/gpu_check.json.
#
#   bench/gpu_check.sh                 # on a CUDA machine (needs .whl from bench/gpu_wheels.sh when
#                                      #   trl/datasets/pydantic are missing there)
#   bench/gpu_check.sh --tiny          # the same script on CPU with tiny models (checks it runs)
#   set -o pipefail; RESULTS=$OUT bench/gpu_check.sh 2>&1 | tee $OUT/gpu_check.log   # on the lent GPU machine
#
# Parts:
#   gpu_7b.json            SPD tokens/s, APO prompts/s, peak memory: before/after paths (bench/gpu_7b.py)
#   gpu_7b_ddp.json        the same, DDP on 2 processes, when there are >= 2 GPUs (else a "skipped" record)
#   logprob_memory_*.json  peak memory of token log-probs at 152k vocabulary x 4 x 578 tokens
#   apo_vs_trl_7b.json     our APO vs TRL's DPOTrainer, 7B architecture, LoRA, bf16
set -u
cd "$(dirname "$0")/.."
TINY=0
[ "${1:-}" = "--tiny" ] && TINY=1
RESULTS=${RESULTS:-bench/results}
mkdir -p "$RESULTS"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false MLFLOW_DISABLE_TELEMETRY=true
if ! $PY -c "import trl, pydantic" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then  # the GPU machine: wheels carried
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
fi
GPUS=$($PY -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
status=()
part() {  # part NAME TIMEOUT_S COMMAND...: run one part, record its exit status, go on either way
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "=== $name: $*"
  timeout "$limit" "$@"
  local rc=$?
  echo "=== $name: rc=$rc in $((SECONDS - t0)) s"
  status+=("\"$name\": {\"rc\": $rc, \"seconds\": $((SECONDS - t0))}")
}

if [ $TINY = 1 ]; then
  part gpu_7b 600 $PY bench/gpu_7b.py --tiny --device cpu --steps 1 --out "$RESULTS/gpu_7b_tiny.json"
  part gpu_7b_ddp 600 $PY -m torch.distributed.run --standalone --nproc_per_node 2 bench/gpu_7b.py --tiny --device cpu --steps 1 --ddp \
    --out "$RESULTS/gpu_7b_ddp_tiny.json"
  part logprob_memory 600 $PY bench/logprob_memory.py --device cpu --hidden 64 --tokens 64 --targets 32 --out "$RESULTS/logprob_memory_tiny.json"
  part apo_vs_trl_7b 900 $PY bench/apo_vs_trl.py --device cpu --model-config bench/tiny_7b_shape.json --lora \
    --image-size 112 --max-length 640 --prompts-per-step 1 --warmup 1 --steps 1 --json "$RESULTS/apo_vs_trl_7b_tiny.json"
else
  # most important first; the part limits add up to under 400 s with the wheel install
  part gpu_7b 150 $PY bench/gpu_7b.py --steps 4 --out "$RESULTS/gpu_7b.json"
  part apo_vs_trl_7b 150 $PY bench/apo_vs_trl.py --device cuda --model-config bench/qwen2_5_vl_7b_config.json --lora --bf16 \
    --image-size 448 --max-length 640 --prompts-per-step 1 --warmup 2 --steps 6 --json "$RESULTS/apo_vs_trl_7b.json"
  part logprob_memory 40 $PY bench/logprob_memory.py --device cuda --hidden 3584 --dtype bfloat16 --out "$RESULTS/logprob_memory_cuda.json"
  if [ "$GPUS" -ge 2 ]; then
    part gpu_7b_ddp 150 $PY -m torch.distributed.run --standalone --nproc_per_node 2 bench/gpu_7b.py --ddp --steps 4 --out "$RESULTS/gpu_7b_ddp.json"
  else
    echo "{\"skipped\": \"DDP needs >= 2 GPUs; this machine has $GPUS\"}" > "$RESULTS/gpu_7b_ddp.json"
    status+=("\"gpu_7b_ddp\": {\"skipped\": \"$GPUS GPU(s)\"}")
  fi
fi
( IFS=,; echo "{\"tiny\": $TINY, \"gpus\": $GPUS, \"parts\": {${status[*]}}}" ) > "$RESULTS/gpu_check.json"
$PY - "$RESULTS/gpu_check.json" <<'PY'
import json, sys
from importlib import metadata
path = sys.argv[1]
record = json.load(open(path))
versions = {}
for name in ("torch", "transformers", "accelerate", "peft", "trl", "datasets", "pyarrow", "fsspec", "pydantic", "numpy"):
    try:
        versions[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
        versions[name] = None
record["versions"] = versions
json.dump(record, open(path, "w"), indent=2)
print(json.dumps(record, indent=2))
PY
