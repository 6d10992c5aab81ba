#!/usr/bin/env bash
# Side-by-side timings, in ONE run, of:
#   attn          build/attn (CLI, one epoch: the reference model, bench/rows_encoder.json and
#                 examples/mnist_cnn.json),
#                 build/bench_attention and build/bench_mha
#                 (Google Benchmark)
#   torch-best    Debian's PyTorch with tcmalloc preloaded, the OpenMP build of OpenBLAS and
#                 subnormals flushed to zero (torch.set_flush_denormal, as attn and TensorFlow do)
#   torch-shipped Debian's PyTorch as installed (plain /usr/bin/python3, default environment)
# and the ratios torch/attn.  Missing attn binaries are reported, not fatal.
#
# Usage: bench/compare.sh [options]
#   --threads LIST        thread counts, comma separated (default 2)
#   --best-steps N        timed training steps for torch-best (default 50)
#   --shipped-steps N     timed training steps for torch-shipped (default 5)
#   --shipped-warmup N    warm-up steps for torch-shipped (default 1)
#   --attn-limit N        training images for the attn CLI epoch (default best-steps*20)
#   --attn-steps N        iterations of the attention-only torch runs, best (default 10)
#   --repeat R            repeat every measurement R times, report the fastest (default 1)
#   --no-shipped          skip the shipped torch column
#   --no-attention        skip the attention-only and matmul cases
#   --out FILE            write the table to FILE (.md or .json); the other format goes
#                         next to it with the other extension
#   --build DIR           attn build directory (default build)
#   --python PATH         python with Debian's torch (default /usr/bin/python3)
#   --best-extra-env "K=V ..."  more environment for torch-best, e.g. OMP_WAIT_POLICY=passive
#                         (helps a lot when other processes compete for the cores)
# Environment: ATTN_DATA_DIR (MNIST IDX files; else ~/.cache/attn/mnist; else random data).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

threads_list=2
best_steps=50
shipped_steps=5
shipped_warmup=1
attn_limit=
attn_steps=10
repeat=1
do_shipped=1
do_attention=1
out=
build="$root/build"
py=/usr/bin/python3
best_extra=()

while [[ $# -gt 0 ]]; do
  case "$1" in
    --threads) threads_list=$2; shift 2 ;;
    --best-steps) best_steps=$2; shift 2 ;;
    --shipped-steps) shipped_steps=$2; shift 2 ;;
    --shipped-warmup) shipped_warmup=$2; shift 2 ;;
    --attn-limit) attn_limit=$2; shift 2 ;;
    --attn-steps) attn_steps=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --no-shipped) do_shipped=0; shift ;;
    --no-attention) do_attention=0; shift ;;
    --out) out=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --python) py=$2; shift 2 ;;
    --best-extra-env) read -r -a best_extra <<< "$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | grep '^#'; exit 0 ;;
    *) echo "compare.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[[ -n "$attn_limit" ]] || attn_limit=$((best_steps * 20))

libdir=/usr/lib/x86_64-linux-gnu
tcmalloc=$libdir/libtcmalloc_minimal.so.4
openblas_omp=$libdir/openblas-openmp
best_env=()
[[ -e "$tcmalloc" ]] && best_env+=("LD_PRELOAD=$tcmalloc") || echo "warning: $tcmalloc missing (apt-get install libtcmalloc-minimal4)" >&2
[[ -d "$openblas_omp" ]] && best_env+=("LD_LIBRARY_PATH=$openblas_omp") || echo "warning: $openblas_omp missing (apt-get install libopenblas0-openmp)" >&2

best_env+=("${best_extra[@]}")
peer="$here/peer_torch.py"
work=$(mktemp -d /tmp/attn-compare.XXXXXX)
trap 'rm -rf "$work"' EXIT
results="$work/results.jsonl"
: > "$results"

if ! "$py" -c 'import torch' 2>/dev/null; then
  echo "compare.sh: $py cannot import torch (apt-get install python3-torch)" >&2
  exit 1
fi

# record SIDE CASE THREADS JSON-or-empty NOTE
record() {
  "$py" - "$1" "$2" "$3" "$4" "$5" >> "$results" <<'EOF'
import json, sys
side, case, threads, payload, note = sys.argv[1:6]
try:
    data = json.loads(payload) if payload.strip() else None
except ValueError:
    data = None
print(json.dumps({"side": side, "case": case, "threads": int(threads), "data": data, "note": note}))
EOF
}

# torch SIDE CASE THREADS ARGS...  (SIDE is best or shipped)
torch_run() {
  local side=$1 case=$2 t=$3; shift 3
  local line="" err="$work/err.txt" status=0
  if [[ $side == best ]]; then
    line=$(env "${best_env[@]}" "$py" "$peer" --threads "$t" --label "$side" --flush-denormal "$@" 2>"$err" | tail -n 1) || status=$?
  else
    line=$("$py" "$peer" --threads "$t" --label "$side" "$@" 2>"$err" | tail -n 1) || status=$?
  fi
  if [[ $status -ne 0 || -z "$line" ]]; then
    record "torch-$side" "$case" "$t" "" "failed (rc $status): $(tail -c 300 "$err" | tr '\n' ' ')"
    echo "  torch-$side $case t=$t: failed" >&2
  else
    record "torch-$side" "$case" "$t" "$line" ""
    echo "  torch-$side $case t=$t: $(printf '%s' "$line" | "$py" -c 'import json,sys;d=json.load(sys.stdin);v=d.get("ms_per_step",d.get("ms_per_batch",d.get("ms_per_matmul")));print("%.2f ms" % v, "openblas=%s alloc=%s" % (d["env"]["openblas"], d["env"]["allocator"]))')" >&2
  fi
}

# ------------------------------------------------------------------ attn side
attn_cli="$build/attn"
attn_bench="$build/bench_attention"
attn_mha="$build/bench_mha"

# attn_train CASE THREADS BATCH LIMIT [CLI ARGS...]: ms per training step over one epoch of
# LIMIT images (no validation; fewer where the training set is smaller), from the epoch time in
# the history file and the step count on attn's epoch line ("469/469 - ...").
attn_train() {
  local case=$1 t=$2 batch=$3 limit=$4; shift 4
  if [[ ! -x "$attn_cli" ]]; then
    record attn "$case" "$t" "" "attn: build/attn not found"; echo "  attn: build/attn not found" >&2; return
  fi
  local hist="$work/history-$t.json" err="$work/attn-err.txt" out="$work/attn-out.txt" status=0
  rm -f "$hist"
  local t0 t1
  t0=$(date +%s.%N)
  "$attn_cli" train --limit-train "$limit" --epochs 1 --no-validation --verbose 2 --batch-size "$batch" \
      --threads "$t" --history "$hist" "$@" >"$out" 2>"$err" || status=$?
  t1=$(date +%s.%N)
  if [[ $status -ne 0 || ! -s "$hist" ]]; then
    record attn "$case" "$t" "" "attn: build/attn train failed or wrote no history (rc $status): $(tail -c 200 "$err" | tr '\n' ' ')"
    echo "  attn: build/attn train did not produce a history (rc $status)" >&2
    return
  fi
  local payload
  payload=$("$py" - "$hist" "$out" "$t0" "$t1" <<'EOF'
import json, re, sys
hist, out, t0, t1 = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
h = json.load(open(hist))
e = h["epochs"][0]
m = re.search(r"^(\d+)/(\d+) - ", open(out).read(), re.M)
if not m or m.group(1) != m.group(2):
    sys.exit("attn's epoch line (steps/steps - ...) not found in its output")
steps = int(m.group(1))
print(json.dumps({"ms_per_step": 1000.0 * e["seconds"] / steps, "steps": steps,
                  "epoch_seconds": e["seconds"], "process_seconds": t1 - t0,
                  "loss": e.get("loss"), "accuracy": e.get("accuracy")}))
EOF
  )
  record attn "$case" "$t" "$payload" ""
  echo "  attn $case t=$t: $(printf '%s' "$payload" | "$py" -c 'import json,sys;print("%.2f ms" % json.load(sys.stdin)["ms_per_step"])')" >&2
}

# attn_bench_case BENCH CASE THREADS REGEX...  (first benchmark of the Google Benchmark binary
# BENCH whose name matches all regexes)
attn_bench_case() {
  local bin=$1 case=$2 t=$3; shift 3
  if [[ ! -x "$bin" ]]; then
    record attn "$case" "$t" "" "attn: $bin not found"; return
  fi
  local names name
  names=$("$bin" --benchmark_list_tests 2>/dev/null | grep -v '^\s*$' || true)
  for re in "$@"; do names=$(printf '%s\n' "$names" | grep -E -- "$re" || true); done
  # Prefer a variant that names this thread count, if the benchmark has one.
  name=$(printf '%s\n' "$names" | grep -E -- "threads:$t(/|$)" | head -n 1 || true)
  [[ -n "$name" ]] || name=$(printf '%s\n' "$names" | grep -v -E 'threads:' | head -n 1 || true)
  [[ -n "$name" ]] || name=$(printf '%s\n' "$names" | head -n 1 || true)
  if [[ -z "$name" ]]; then
    record attn "$case" "$t" "" "attn: no benchmark matching $*"; return
  fi
  local esc js status=0
  esc=$(printf '%s' "$name" | sed 's/[][\.*^$()+?{}|]/\\&/g')
  js=$(ATTN_THREADS=$t OMP_NUM_THREADS=$t "$bin" --benchmark_filter="^${esc}\$" \
        --benchmark_format=json 2>/dev/null) || status=$?
  local payload
  payload=$(printf '%s' "$js" | "$py" -c '
import json, sys
scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}
try:
    d = json.load(sys.stdin)
except ValueError:
    sys.exit(0)
b = [x for x in d.get("benchmarks", []) if x.get("run_type", "iteration") == "iteration"]
if not b:
    sys.exit(0)
x = b[0]
out = {"benchmark": x["name"], "ms": x["real_time"] * scale[x.get("time_unit", "ns")]}
for k, v in x.items():
    if k not in ("name", "run_name", "run_type", "real_time", "cpu_time", "time_unit",
                 "family_index", "per_family_instance_index", "repetitions",
                 "repetition_index", "threads", "iterations"):
        out[k] = v
print(json.dumps(out))
' || true)
  if [[ -z "$payload" ]]; then
    record attn "$case" "$t" "" "attn: $name failed (rc $status)"
  else
    record attn "$case" "$t" "$payload" ""
    echo "  attn $case t=$t: $name" >&2
  fi
}

# ------------------------------------------------------------------ runs
start=$(date +%s)
IFS=, read -r -a tlist <<< "$threads_list"
echo "compare.sh: threads=$threads_list best-steps=$best_steps shipped-steps=$shipped_steps repeat=$repeat" >&2
echo "torch-best environment: ${best_env[*]}" >&2
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
"$py" - <<'EOF2' >&2
import os
load = float(open("/proc/loadavg").read().split()[0])
if load > 0.5 * os.cpu_count():
    print("warning: load average %.1f on %d cores: timings will be noisy; OpenMP spin-waiting "
          "makes torch-best collapse under contention (try --best-extra-env OMP_WAIT_POLICY=passive "
          "or --threads 1, and compare ratios from this one run only)" % (load, os.cpu_count()))
EOF2
for ((r = 1; r <= repeat; r++)); do
  for t in "${tlist[@]}"; do
    echo "[repeat $r, threads $t]" >&2
    # Interleave the sides per case so background load hits them alike.
    attn_train train-step "$t" 20 "$attn_limit"
    torch_run best train-step "$t" --what train-steps --steps "$best_steps" --warmup 3
    [[ $do_shipped == 1 ]] && torch_run shipped train-step "$t" --what train-steps --steps "$shipped_steps" --warmup "$shipped_warmup"
    # A Transformer encoder block over MNIST rows (bench/rows_encoder.json, its twin in
    # peer_torch.py), batch 32: the general layers rather than the reference model's kernels.
    attn_train "encoder train-step B=32" "$t" 32 "$attn_limit" --model "$here/rows_encoder.json"
    torch_run best "encoder train-step B=32" "$t" --what encoder-steps --steps "$best_steps" --warmup 3
    [[ $do_shipped == 1 ]] && torch_run shipped "encoder train-step B=32" "$t" --what encoder-steps --steps "$shipped_steps" --warmup "$shipped_warmup"
    # Keras' MNIST convnet (examples/mnist_cnn.json, its twin in peer_torch.py), batch 128 as
    # in Keras' example: Conv2D, MaxPooling2D and Dropout.
    attn_train "convnet train-step B=128" "$t" 128 "$(( (attn_limit / 20) * 128 ))" --model "$root/examples/mnist_cnn.json"
    torch_run best "convnet train-step B=128" "$t" --what cnn-steps --steps "$best_steps" --warmup 3
    [[ $do_shipped == 1 ]] && torch_run shipped "convnet train-step B=128" "$t" --what cnn-steps --steps "$shipped_steps" --warmup "$shipped_warmup"
    if [[ $do_attention == 1 ]]; then
      # Both sides on dense random inputs with full gradients: the same work. (attn's exact
      # zero-aware path on real MNIST batches is BM_AttentionReferenceModel; torch has no twin.)
      attn_bench_case "$attn_bench" "attention d=1 T=784 B=20 grads=full" "$t" 'Dense' 'd:1(/|$)' 'T:784(/|$)' 'masks:0'
      torch_run best "attention d=1 T=784 B=20 grads=full" "$t" --what attention --d 1 --t 784 --batch 20 --grads full --steps "$attn_steps" --warmup 2
      [[ $do_shipped == 1 ]] && torch_run shipped "attention d=1 T=784 B=20 grads=full" "$t" --what attention --d 1 --t 784 --batch 20 --grads full --steps 3 --warmup 1
      attn_bench_case "$attn_bench" "attention d=64 T=784 B=20 grads=full" "$t" 'Dense' 'd:64(/|$)' 'T:784(/|$)'
      torch_run best "attention d=64 T=784 B=20 grads=full" "$t" --what attention --d 64 --t 784 --batch 20 --grads full --steps "$attn_steps" --warmup 2
      [[ $do_shipped == 1 ]] && torch_run shipped "attention d=64 T=784 B=20 grads=full" "$t" --what attention --d 64 --t 784 --batch 20 --grads full --steps 3 --warmup 1
      # MultiHeadAttention (4 heads of 16 over 64 features, self-attention, batch 8, every
      # gradient): attn's layer against nn.MultiheadAttention(need_weights=False).
      for T in 196 1024; do
        attn_bench_case "$attn_mha" "MultiHeadAttention T=$T 4x16 B=8" "$t" "T:$T/" 'mode:0'
        torch_run best "MultiHeadAttention T=$T 4x16 B=8" "$t" --what mha --t "$T" --steps "$attn_steps" --warmup 2
        [[ $do_shipped == 1 ]] && torch_run shipped "MultiHeadAttention T=$T 4x16 B=8" "$t" --what mha --t "$T" --steps 3 --warmup 1
      done
      attn_bench_case "$attn_bench" "matmul 1024x1024" "$t" '([Gg]emm|[Mm]at[Mm]ul|Sgemm)' '1024'
      torch_run best "matmul 1024x1024" "$t" --what matmul --n 1024 --steps 20 --warmup 3
      [[ $do_shipped == 1 ]] && torch_run shipped "matmul 1024x1024" "$t" --what matmul --n 1024 --steps 10 --warmup 2
    fi
  done
done
elapsed=$(( $(date +%s) - start ))

# ------------------------------------------------------------------ table
"$py" - "$results" "$out" "$elapsed" "$attn_cli" "$attn_bench" <<'EOF'
import json, os, platform, sys, time
results_path, out, elapsed, attn_cli, attn_bench = sys.argv[1:6]
rows = [json.loads(l) for l in open(results_path) if l.strip()]

def ms_of(d):
    if d is None:
        return None
    for k in ("ms_per_step", "ms_per_batch", "ms_per_matmul", "ms"):
        if d.get(k) is not None:
            return float(d[k])
    return None

cases = []
table = {}
for r in rows:
    key = (r["case"], r["threads"])
    if key not in table:
        table[key] = {}
        cases.append(key)
    cell = table[key].setdefault(r["side"], {"ms": None, "runs": [], "notes": []})
    v = ms_of(r["data"])
    if v is not None:
        cell["runs"].append(v)
        cell["ms"] = v if cell["ms"] is None else min(cell["ms"], v)
        if r["side"].startswith("torch"):
            cell["env"] = r["data"].get("env")
            if "peak_rss_mib" in r["data"]:
                cell["peak_rss_mib"] = r["data"]["peak_rss_mib"]
            if "gflops" in r["data"]:
                cell["gflops"] = r["data"]["gflops"]
            if "data" in r["data"]:
                cell["data"] = r["data"]["data"]
        else:
            cell["detail"] = r["data"]
    if r["note"]:
        cell["notes"].append(r["note"])

def fmt(v):
    return "-" if v is None else ("%.2f" % v if v < 100 else "%.1f" % v)

def ratio(a, b):
    return None if a is None or b is None or b <= 0 else a / b

out_rows = []
for key in cases:
    c = table[key]
    attn = c.get("attn", {}).get("ms")
    best = c.get("torch-best", {}).get("ms")
    shipped = c.get("torch-shipped", {}).get("ms")
    notes = sorted({n for side in c.values() for n in side["notes"]})
    out_rows.append({
        "case": key[0], "threads": key[1],
        "attn_ms": attn, "torch_best_ms": best, "torch_shipped_ms": shipped,
        "ratio_best_over_attn": ratio(best, attn),
        "ratio_shipped_over_attn": ratio(shipped, attn),
        "ratio_shipped_over_best": ratio(shipped, best),
        "notes": notes,
        "detail": {s: {k: v for k, v in cell.items() if k not in ("notes",)} for s, cell in c.items()},
    })

hdr = ["case", "threads", "attn ms", "torch-best ms", "torch-shipped ms",
       "best/attn", "shipped/attn", "shipped/best"]
lines = []
for r in out_rows:
    lines.append([r["case"], str(r["threads"]), fmt(r["attn_ms"]), fmt(r["torch_best_ms"]),
                  fmt(r["torch_shipped_ms"]), fmt(r["ratio_best_over_attn"]),
                  fmt(r["ratio_shipped_over_attn"]), fmt(r["ratio_shipped_over_best"])])
widths = [max(len(h), *(len(l[i]) for l in lines)) if lines else len(h) for i, h in enumerate(hdr)]
def row(cells):
    return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
print()
print(row(hdr))
print(row(["-" * w for w in widths]))
for l in lines:
    print(row(l))
notes = sorted({n for r in out_rows for n in r["notes"]})
for n in notes:
    print("note:", n)

envs = {}
for r in out_rows:
    for s in ("torch-best", "torch-shipped"):
        e = r["detail"].get(s, {}).get("env")
        if e:
            envs[s] = {"openblas": e["openblas"], "allocator": e["allocator"],
                       "torch_version": e["torch_version"]}
for s, e in envs.items():
    print("%s: torch %s, OpenBLAS %s, allocator %s" % (s, e["torch_version"], e["openblas"], e["allocator"]))
print("ms = per training step (batch 20; the encoder 32) / per attention or MultiHeadAttention forward+backward / per matmul; "
      "ratios > 1 mean attn is faster. Elapsed %ss." % elapsed)

if out:
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "host": platform.node(),
            "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                         if l.startswith("model name")), "?"),
            "cores": os.cpu_count(), "loadavg": open("/proc/loadavg").read().split()[:3],
            "elapsed_s": int(elapsed), "attn_cli": attn_cli, "attn_bench": attn_bench,
            "torch_envs": envs}
    base, ext = os.path.splitext(out)
    json_path = out if ext == ".json" else base + ".json"
    md_path = out if ext == ".md" else base + ".md"
    with open(json_path, "w") as f:
        json.dump({"meta": meta, "rows": out_rows}, f, indent=1)
    with open(md_path, "w") as f:
        f.write("# attn vs PyTorch (%s)\n\n" % meta["date"])
        f.write("CPU %s, %s cores, load average %s at the end.\n\n"
                % (meta["cpu"], meta["cores"], " ".join(meta["loadavg"])))
        f.write("| " + " | ".join(hdr) + " |\n")
        f.write("|" + "|".join("---" if i == 0 else "---:" for i in range(len(hdr))) + "|\n")
        for l in lines:
            f.write("| " + " | ".join(l) + " |\n")
        f.write("\n")
        for s, e in envs.items():
            f.write("- %s: torch %s, OpenBLAS %s, allocator %s\n"
                    % (s, e["torch_version"], e["openblas"], e["allocator"]))
        for n in notes:
            f.write("- note: %s\n" % n)
    print("wrote %s and %s" % (md_path, json_path))
EOF
