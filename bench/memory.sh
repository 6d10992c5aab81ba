#!/usr/bin/env bash
# Time and peak memory of attention forward + backward (all gradients, dense random inputs, one
# sample, one thread) for Tq = Tv in {784, 4096, 16384} and d in {1, 64}: each case runs in its
# own process so that the peak resident set is that case's alone. A materialised score matrix
# would need T * T * 4 bytes (1 GiB at T = 16,384) per sample and head, before its gradient.
# Usage: bench/memory.sh [build dir]
set -euo pipefail
build=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/build}
bench="$build/bench_attention"
[[ -x $bench ]] || { echo "memory.sh: $bench not found (build the benchmarks first)" >&2; exit 1; }
printf '| T | d | ms per forward+backward | peak RSS (MB) | score matrix alone (MB) |\n|---:|---:|---:|---:|---:|\n'
for t in 784 4096 16384; do
  for d in 1 64; do
    log=$(mktemp)
    /usr/bin/time -f '%M' -o "$log.rss" "$bench" --benchmark_filter="^BM_AttentionDense/d:$d/T:$t/masks:0/batch:1\$" \
      --benchmark_format=json --benchmark_min_time=0.2 >"$log" 2>/dev/null || true
    ms=$(python3 -c 'import json,sys; b=json.load(open(sys.argv[1]))["benchmarks"]; x = b[0]["real_time"] if b else None; print("n/a" if x is None else ("%.3g" if x < 100 else "%.0f") % x)' "$log" 2>/dev/null || echo n/a)
    rss=$(( $(cat "$log.rss" 2>/dev/null || echo 0) / 1024 ))
    printf '| %d | %d | %s | %d | %d |\n' "$t" "$d" "$ms" "$rss" $(( t * t * 4 / 1048576 ))
    rm -f "$log" "$log.rss"
  done
done
