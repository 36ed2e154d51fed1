#!/usr/bin/env bash
# The CUDA checks of issue #12, in two halves: one builds here, the other runs on a GPU machine
# that has no cargo and no network.
#
#   xtask/device/check.sh build    On the build machine (cargo; no GPU needed): `xtask` with
#                                  `--features cuda`, stripped and gzipped, the PyTorch bench
#                                  script, the reference fixtures it needs and `run.sh`, into
#                                  xtask/device/out/ (git-ignored; fails above 60 MiB).
#   xtask/device/check.sh run      On the GPU machine (NVIDIA driver for CUDA 13, `python3` with
#                                  a CUDA torch), from the repository root of a copy of the
#                                  working tree that carries xtask/device/out/. Ends within
#                                  8 minutes; writes one log per step and summary.txt to $OUT.
#                                  `xtask/device/out/run.sh` is the same.
#
# `run` steps (each with its own time limit, cut to what is left of the whole budget):
#   env          nvidia-smi summary, torch version, the binary's build info
#   selftest     the PyTorch script against the reference's tensors (fixtures)
#   parity-f32   `xtask model forward` of every fixtures/latte-* on the GPU: fails above 1e-4
#   parity-bf16  the same in bf16: reported, not judged
#   step-*       `bench train --compare-step`: two training steps of a small config on the CPU
#                and on the GPU from the same weights and batches (f32, f32 with checkpointing,
#                bf16 with checkpointing); fails beyond 1e-3 relative (bf16: 1e-2); each
#                also sums the gradients once through NCCL (the several-GPU path, on one GPU)
#   bench        `bench train --xl --device cuda`: Latte-XL/2 on 16×32×32 latents, bf16 and f32,
#                with and without checkpointing, clips/s and peak GPU memory beside the reference
#                PyTorch step on the same GPU, the ratio, and Open-Sora's published figure
#
# Environment (all optional):
#   OUT            where logs and summary.txt go (default xtask/device/out/results)
#   DEVICE         `cuda` (default), `cuda:N`; `cpu` or `wgpu` test this script's logic without a
#                  GPU: the bench then times the two small CPU cases instead of Latte-XL/2
#   LATTE_PYTHON   the python with torch (default python3)
#   FIXTURES       the reference fixtures (default: out/fixtures, shared/fixtures, ../shared/fixtures)
#   BUDGET_S       the whole run's limit in seconds (default 460: with the backstop's 15 s, under 8 minutes)
#   BENCH_ARGS     replaces the bench's flags after `bench train --device $DEVICE`
#                  (default `--xl --iters 3 --warmup 1` on CUDA)
#   CUDARC_CUDA_VERSION  (build) the CUDA API the bindings target (default 13000: a CUDA 13.0
#                  driver has every call of 13.0; newer bindings would ask it for calls it lacks)
#   CUDA_TARGET_DIR  (build) cargo's target folder for this build (default target/cuda)
#   FEATURES       (build) xtask's cargo features (default `cuda`; empty: a CPU-only build, to
#                  test this script with DEVICE=cpu on a machine whose CUDA build is not ready)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out_dir="$here/out"
max_mib=60

usage() {
    local text
    text="$(sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//')"
    if [[ "${1:-2}" == 0 ]]; then echo "$text"; else echo "$text" >&2; fi
    exit "${1:-2}"
}

die() {
    echo "check.sh: $*" >&2
    exit 1
}

# ------------------------------------------------------------------------------------------
# build

build() {
    command -v cargo >/dev/null || die "no cargo here: \`build\` runs on the build machine; on the GPU machine use \`run\`"
    command -v strip >/dev/null || die "no \`strip\`: install binutils (apt-get install -y binutils)"
    command -v gzip >/dev/null || die "no \`gzip\`: install it (apt-get install -y gzip)"
    cd "$root"
    # The workspace's one profile (dev: opt-level 3, no debug info; see Cargo.toml), as every
    # benchmark of the project; a release build would compile the ~300 crates once more for
    # the same code (the GPU kernels are compiled by NVRTC at run time either way). Its own
    # target folder: a `--features cuda` xtask in the usual one would replace the
    # target/debug/xtask that `cargo xtask` runs, and each would rebuild the other's.
    local target="${CUDA_TARGET_DIR:-$root/target/cuda}"
    local features="${FEATURES-cuda}"
    export CUDARC_CUDA_VERSION="${CUDARC_CUDA_VERSION:-13000}"
    echo "building: CUDARC_CUDA_VERSION=$CUDARC_CUDA_VERSION CARGO_TARGET_DIR=$target cargo build -p xtask${features:+ --features $features}"
    CARGO_TARGET_DIR="$target" cargo build -p xtask ${features:+--features "$features"}
    local bin="$target/debug/xtask"
    [[ -x "$bin" ]] || die "cargo built no $bin"

    local fixtures
    fixtures="$(find_fixtures "$root/../shared/fixtures")" ||
        die "no reference fixtures (latte-v1-uncond) in \$FIXTURES or ../shared/fixtures: the parity checks need them"

    rm -rf "$out_dir"
    mkdir -p "$out_dir/fixtures"
    # stripped it is still ~80 MiB (wgpu, CUDA and the CPU kernels all in one); gzip brings it
    # to about a quarter, and every machine with python3 has gzip
    strip -o "$out_dir/xtask" "$bin"
    local stripped
    stripped="$(stat -c %s "$out_dir/xtask")"
    gzip -9 "$out_dir/xtask"
    cp "$root/xtask/bench/latte_train_step.py" "$out_dir/"
    local d
    for d in "$fixtures"/latte-* "$fixtures/diffusion-iddpm"; do
        cp -r "$d" "$out_dir/fixtures/"
    done
    cat >"$out_dir/run.sh" <<'EOF'
#!/usr/bin/env bash
# The GPU machine's half of xtask/device/check.sh (see there): `bash xtask/device/out/run.sh`.
set -euo pipefail
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/check.sh" run "$@"
EOF
    chmod +x "$out_dir/run.sh"
    {
        echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
        echo "commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$root" diff --quiet HEAD 2>/dev/null || echo ' + uncommitted changes')"
        echo "cargo build -p xtask${features:+ --features $features} (dev profile), CUDARC_CUDA_VERSION=$CUDARC_CUDA_VERSION, $(rustc --version)"
        echo "xtask $(stat -c %s "$bin") bytes, stripped $stripped, gzipped $(stat -c %s "$out_dir/xtask.gz")"
    } >"$out_dir/BUILD-INFO"

    local bytes mib
    bytes="$(du -sb "$out_dir" | cut -f1)"
    mib=$(((bytes + 1048575) / 1048576))
    echo "wrote $out_dir: $mib MiB"
    du -sh "$out_dir"/* | sed 's/^/  /'
    if ((bytes > max_mib * 1048576)); then
        die "$out_dir is $mib MiB, over the $max_mib MiB that can travel to the GPU machine (64 MiB with the tree): leave fixtures out or shrink the binary"
    fi
    echo "next: run \`bash xtask/device/out/run.sh\` on the GPU machine from the repository root (carry xtask/device/out)"
}

# The first fixtures folder with the reference Latte tensors: $FIXTURES, then the arguments.
find_fixtures() {
    local d
    for d in ${FIXTURES:+"$FIXTURES"} "$@"; do
        if [[ -d "$d/latte-v1-uncond" ]]; then
            (cd "$d" && pwd)
            return 0
        fi
    done
    return 1
}

# ------------------------------------------------------------------------------------------
# run

run() {
    cd "$root"
    OUT="${OUT:-$out_dir/results}"
    mkdir -p "$OUT"
    OUT="$(cd "$OUT" && pwd)"
    budget="${BUDGET_S:-460}"
    # A backstop in case a step's own limit fails to end it: everything under one timeout.
    if [[ -z "${CHECK_SH_INNER:-}" ]]; then
        local rc=0
        CHECK_SH_INNER=1 OUT="$OUT" timeout -k 5 "$((budget + 10))" bash "${BASH_SOURCE[0]}" run || rc=$?
        if ((rc == 124 || rc == 137)); then
            echo "overall: FAIL (the whole run passed its ${budget} s limit and was ended)" | tee -a "$OUT/summary.txt"
        fi
        exit "$rc"
    fi
    start=$(date +%s)
    device="${DEVICE:-cuda}"
    python="${LATTE_PYTHON:-python3}"
    export LATTE_PYTHON="$python"
    [[ -f "$out_dir/xtask.gz" ]] || die "$out_dir/xtask.gz is missing: run \`xtask/device/check.sh build\` on the build machine and carry xtask/device/out"
    # outside out/, which must stay small enough to travel
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    bin="$work/xtask"
    gzip -dc "$out_dir/xtask.gz" >"$bin" ||
        python3 -c 'import gzip, shutil, sys; shutil.copyfileobj(gzip.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$out_dir/xtask.gz" "$bin"
    chmod +x "$bin"
    fixtures="$(find_fixtures "$out_dir/fixtures" "$root/shared/fixtures" "$root/../shared/fixtures")" ||
        die "no reference fixtures (latte-v1-uncond) in \$FIXTURES, $out_dir/fixtures, shared/fixtures or ../shared/fixtures: rerun \`check.sh build\`"
    script="$out_dir/latte_train_step.py"
    [[ -f "$script" ]] || script="$root/xtask/bench/latte_train_step.py"
    if ! cmp -s "$script" "$root/xtask/bench/latte_train_step.py"; then
        echo "note: $script differs from the tree's xtask/bench/latte_train_step.py, which \`bench train\` runs" >&2
    fi
    summary="$OUT/summary.txt"
    failures=0
    echo "latte CUDA check: device $device, started $(date -u +%Y-%m-%dT%H:%M:%SZ), limit ${budget} s" >"$summary"

    # env: never fails the run
    {
        echo "== nvidia-smi"
        if command -v nvidia-smi >/dev/null; then
            nvidia-smi --query-gpu=index,name,driver_version,memory.total,memory.used,utilization.gpu --format=csv || true
            nvidia-smi | head -n 12 || true
        else
            echo "no nvidia-smi"
        fi
        echo "== python"
        "$python" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' 2>&1 || echo "$python cannot import torch"
        echo "== build"
        cat "$out_dir/BUILD-INFO" 2>/dev/null || echo "no BUILD-INFO"
        echo "fixtures: $fixtures"
    } >"$OUT/00-env.log" 2>&1
    gpu="$(command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n 1 || echo "no nvidia-smi")"
    echo "gpu: $gpu" >>"$summary"
    echo "torch: $(grep -A1 '^== python' "$OUT/00-env.log" | tail -n 1)" >>"$summary"
    grep -m1 '^commit' "$out_dir/BUILD-INFO" 2>/dev/null | sed 's/^/build: /' >>"$summary" || true

    step selftest 30 "$OUT/01-selftest.log" check_selftest \
        "$python" "$script" --selftest "$fixtures"

    parity_dir="$work/parity"
    mkdir -p "$parity_dir"
    step parity-f32 75 "$OUT/02-parity-f32.log" check_parity_f32 \
        parity f32
    step parity-bf16 60 "$OUT/03-parity-bf16.log" check_parity_bf16 \
        parity bf16

    step step-f32 60 "$OUT/04-step-f32.log" check_compare \
        "$bin" bench train --compare-step --device "$device"
    step step-f32-ckpt 45 "$OUT/05-step-f32-ckpt.log" check_compare \
        "$bin" bench train --compare-step --device "$device" --checkpointing
    step step-bf16-ckpt 45 "$OUT/06-step-bf16-ckpt.log" check_compare \
        "$bin" bench train --compare-step --device "$device" --precision bf16 --checkpointing

    local bench_args
    if [[ -n "${BENCH_ARGS:-}" ]]; then
        read -r -a bench_args <<<"$BENCH_ARGS"
    elif [[ "$device" == cuda* ]]; then
        bench_args=(--xl --iters 3 --warmup 1)
    else
        # no GPU: the script's logic on the two small cases, Latte-XL/2 would take hours
        bench_args=(--iters 1 --warmup 1 --precision bf16 --checkpointing)
    fi
    step bench 0 "$OUT/07-bench.log" check_bench \
        "$bin" bench train --device "$device" "${bench_args[@]}"

    local took=$(($(date +%s) - start))
    if ((failures == 0)); then
        echo "overall: PASS in ${took} s" >>"$summary"
    else
        echo "overall: FAIL ($failures step(s)) in ${took} s" >>"$summary"
    fi
    echo
    cat "$summary"
    ((failures == 0))
}

# step NAME LIMIT LOG JUDGE CMD...: runs CMD under the smaller of LIMIT (0: all that is left)
# and what is left of the budget, its output in LOG, then JUDGE LOG RC, which prints one
# summary line's text and returns 0 (pass), 1 (fail) or 2 (reported only).
step() {
    local name="$1" limit="$2" log="$3" judge="$4"
    shift 4
    local left=$((budget - ($(date +%s) - start)))
    if ((limit == 0 || limit > left)); then
        limit=$left
    fi
    if ((limit < 5)); then
        echo "FAIL  $name: not run, the ${budget} s budget is spent" >>"$summary"
        failures=$((failures + 1))
        return 0
    fi
    local t0 rc=0
    t0=$(date +%s)
    echo "== $name: $* (limit ${limit} s)" >"$log"
    if [[ "$(type -t "$1")" == function ]]; then
        # a function of this script (`timeout` runs programs): it limits its own commands
        step_limit=$limit
        "$@" >>"$log" 2>&1 || rc=$?
    else
        timeout -k 5 "$limit" "$@" >>"$log" 2>&1 || rc=$?
    fi
    local took=$(($(date +%s) - t0)) verdict text jrc=0
    text="$("$judge" "$log" "$rc")" || jrc=$?
    case "$jrc" in
        0) verdict=PASS ;;
        2) verdict=INFO ;;
        *) verdict=FAIL failures=$((failures + 1)) ;;
    esac
    ((rc == 124 || rc == 137)) && text="timed out after ${limit} s; $text"
    if [[ "$verdict" == FAIL ]]; then
        local why
        why="$(grep -m1 -E '^error|panicked at|MISMATCH' "$log" || true)"
        [[ -z "$why" ]] || text="$text | ${why:0:300}"
    fi
    printf '%-5s %s (%s s): %s\n' "$verdict" "$name" "$took" "$text" >>"$summary"
    echo "$verdict $name (${took} s)"
}

# parity PRECISION: `model forward` of every fixtures/latte-* on the device; each run gets an
# equal share of the step's limit.
parity() {
    local precision="$1" d rc=0 n
    n=$(ls -d "$fixtures"/latte-* | wc -l)
    for d in "$fixtures"/latte-*; do
        echo "-- $(basename "$d") ($precision)"
        timeout -k 5 "$((step_limit / n))" "$bin" model forward "$d" --out "$parity_dir/$(basename "$d")-$precision.safetensors" \
            --device "$device" --precision "$precision" || rc=$?
    done
    return "$rc"
}

check_selftest() {
    local line
    line="$(grep -m1 '^SELFTEST ' "$1")" || { echo "no SELFTEST line (exit $2): see $(basename "$1")"; return 1; }
    echo "$line"
    # as `bench train` judges it
    awk '{for (i = 2; i <= NF; i++) {split($i, kv, "="); v[kv[1]] = kv[2] + 0}}
         END {exit !(v["forward_max_abs"] <= 1e-3 * v["out_max_abs"] && v["tables_max_abs"] <= 1e-5 && v["loss_max_abs"] <= 1e-4)}' <<<"$line"
}

# check_parity LIMIT|report LOG RC: every `max |out - expected|` line, worst first.
check_parity() {
    local limit="$1" log="$2" rc="$3" diffs worst
    diffs="$(awk '/^-- /{name = $2} /max \|out - expected\|/{sub(":", "", $1); print name "/" $1 "=" $NF}' "$log" | paste -sd ' ' -)"
    worst="$(awk '/max \|out - expected\|/{if ($NF + 0 > w) w = $NF + 0} END {printf "%.3g", w}' "$log")"
    local count
    count="$(grep -c 'max |out - expected|' "$log" || true)"
    if ((rc != 0)) || [[ -z "$diffs" ]] || grep 'max |out - expected|' "$log" | grep -qiE '(nan|inf)$'; then
        echo "model forward failed (exit $rc; $count outputs compared): see $(basename "$log") ${diffs:+| $diffs}"
        return 1
    fi
    if [[ "$limit" == report ]]; then
        echo "worst max|out - expected| $worst | $diffs"
        return 2
    fi
    echo "worst max|out - expected| $worst (limit $limit) | $diffs"
    awk -v w="$worst" -v l="$limit" 'BEGIN {exit !(w + 0 <= l + 0)}'
}

# the reference's fixtures are f32: the contract's 1e-4; bf16 rounding is only reported
check_parity_f32() { check_parity 1e-4 "$@"; }
check_parity_bf16() { check_parity report "$@"; }

check_compare() {
    local line
    line="$(grep -m1 '^COMPARE-STEP ' "$1")" || { echo "no COMPARE-STEP line (exit $2): see $(basename "$1")"; return 1; }
    echo "${line#COMPARE-STEP }"
    # the f32 step also sums gradients through NCCL once (the several-GPU path, on one GPU)
    grep -m1 '^NCCL-CHECK ' "$1" || true
    ((${2} == 0))
}

check_bench() {
    local log="$1" rc="$2"
    # the --xl summary block and the anchor, else the RESULT lines
    local text
    text="$(sed -n '/^summary on /,/^anchor: /p' "$log")"
    [[ -n "$text" ]] || text="$(grep -E '^RESULT' "$log" || true)"
    if [[ -z "$text" ]]; then
        echo "no results (exit $rc): see $(basename "$log")"
        return 1
    fi
    echo "exit $rc"
    sed 's/^/      /' <<<"$text"
    ((rc == 0))
}

case "${1:-}" in
    build) build ;;
    run) run ;;
    -h | --help | help) usage 0 ;;
    *) usage 2 ;;
esac
