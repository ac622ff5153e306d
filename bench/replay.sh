#!/usr/bin/env bash
# Replay-verify and file-hashing throughput, each against its peer in the same run.
#
# 1. Generates a 1,000,000-entry ima-ng sha256 measurement list (sha1 binary list, as the
#    kernel writes it) with our encoder, plus the sha1/sha256 PCR values a TPM would hold
#    (evmctl's PCR-NN form), then times `imactl log verify` against
#    `evmctl ima_measurement --pcrs` on the same files, REPS times each, interleaved.
# 2. Hashes a 1 GiB file in the page cache on one core (taskset -c 0) with `imactl hash -n`
#    and `openssl dgst`, as written and as read back from disk, and runs `openssl speed -evp`
#    (no I/O) for the per-core ceiling.
#
# Usage: bench/replay.sh [ENTRIES] [REPS]    (defaults 1000000 3). Needs evmctl, openssl,
# taskset; about 2 GiB free in ${TMPDIR:-/tmp}.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
reps=${2:-3}
work=$(mktemp -d "${TMPDIR:-/tmp}/ima-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

cargo build --release -q -p ima-cli --bin imactl
cargo build --release -q -p ima-core --example gen_list
imactl=target/release/imactl

echo "== machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), $(date -u +%FT%TZ)"
echo "== generating $n entries"
/usr/bin/time -f "generate: %e s" target/release/examples/gen_list "$n" "$work"
list=$work/binary_runtime_measurements
ls -l "$list" | awk '{print "list size: " $5 " bytes"}'

t() { # label, command...: prints wall and CPU (user+sys) seconds; fails if the command fails
  local label=$1; shift
  /usr/bin/time -o "$work/time" -f '%e %U %S' "$@" >/dev/null 2>"$work/err" ||
    { echo "$label FAILED:"; cat "$work/err"; exit 1; }
  read -r wall user sys <"$work/time"
  printf '%s wall %6.3f s  cpu %6.3f s\n' "$label" "$wall" "$(echo "$user + $sys" | bc)"
}

echo "== load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== replay-verify, sha1 + sha256 banks"
for r in $(seq "$reps"); do
  t "imactl log verify           " "$imactl" log verify "$list" \
    --pcrs "sha1:$work/pcrs_sha1.txt" --pcrs "sha256:$work/pcrs_sha256.txt"
  t "evmctl ima_measurement --pcrs" evmctl ima_measurement \
    --pcrs "sha1,$work/pcrs_sha1.txt" --pcrs "sha256,$work/pcrs_sha256.txt" "$list"
done
grep -q "Matched per TPM bank" "$work/err" && echo "(evmctl: Matched per TPM bank calculated digest(s).)"

echo "== file hashing, one core (taskset -c 0), 1 GiB file in the page cache (seconds, GB/s)"
# Two page-cache states: the file as just written (the page cache holds it in the folios
# the writes created), and as read back from disk after being dropped (readahead fills large
# folios on this 6.x kernel: how system files read from disk sit in the cache).
big=$work/big
head -c $((1 << 30)) /dev/urandom >"$big"
cat "$big" >/dev/null
for state in written read-back; do
  if [ $state = read-back ]; then
    sync "$big"
    dd if="$big" iflag=nocache count=0 status=none  # POSIX_FADV_DONTNEED: drop its pages
    cat "$big" >/dev/null
  fi
  echo "-- page cache: $state ($(grep -E '^FileHugePages' /proc/meminfo | tr -s ' '))"
  for algo in sha256 sha1; do
    for r in $(seq "$reps"); do
      for tool in imactl openssl; do
        s=$(date +%s.%N)
        if [ $tool = imactl ]; then
          taskset -c 0 "$imactl" hash -n -a $algo "$big" >/dev/null
        else
          taskset -c 0 openssl dgst -$algo "$big" >/dev/null
        fi
        e=$(date +%s.%N)
        printf '%-8s %-7s %.3f s  %.2f GB/s\n' $algo $tool "$(echo "$e - $s" | bc)" \
          "$(echo "1.073741824 / ($e - $s)" | bc -l)"
      done
    done
  done
done
for algo in sha256 sha1; do
  echo "openssl speed -evp $algo -bytes 16384 (one core, no I/O):"
  taskset -c 0 openssl speed -evp $algo -bytes 16384 -seconds 3 2>/dev/null | tail -1
done
