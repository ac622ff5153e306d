#!/usr/bin/env bash
# Benchmark of evmctl mode (our binary invoked as `evmctl`) against native `imactl` and
# Debian's evmctl 1.4 (/usr/bin/evmctl), all in the same run with the page cache warm:
#   `evmctl -r ima_hash TREE`            vs `imactl hash -r TREE`        vs /usr/bin/evmctl
#   `evmctl -r ima_sign --key KEY TREE`  vs `imactl sign -r --key KEY`   vs /usr/bin/evmctl
# on a copy of /usr/bin + /usr/sbin + /usr/lib/x86_64-linux-gnu (the tree of sign-tree.sh).
# Needs root (security.ima), hyperfine, /usr/bin/evmctl, openssl.
# Usage: bench/evmctl-mode.sh [WORKDIR]   (default /tmp/imabench; the tree is ~1.3 GB)
# RUNS=N (default 5). Results go to stdout as markdown, then the ratios; paste them into
# BENCHMARKING.md.
set -euo pipefail
cd "$(dirname "$0")/.."
# Other jobs share the 2 vCPUs: run every measured command (ours and the peer) at the
# highest priority so they compete less with background builds. Needs root.
renice -n -19 -p $$ >/dev/null
work=${1:-/tmp/imabench}
tree=$work/tree
runs=${RUNS:-5}
mkdir -p "$work"
for t in hyperfine openssl jq; do
  command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 1; }
done
debian=/usr/bin/evmctl
[ -x "$debian" ] || { echo "missing $debian (Debian's ima-evm-utils)" >&2; exit 1; }

cargo build --release -q -p ima-cli
imactl=$PWD/target/release/imactl
# evmctl mode: the same binary under the name evmctl (what the README's install does).
mkdir -p "$work/bin"
ln -sf "$imactl" "$work/bin/evmctl"
ours=$work/bin/evmctl
"$ours" --version | grep -q imactl || { echo "$ours is not evmctl mode" >&2; exit 1; }

if [ ! -d "$tree" ]; then
  mkdir -p "$tree"
  cp -a /usr/bin /usr/sbin /usr/lib/x86_64-linux-gnu "$tree"/
fi
files=$(find "$tree" -type f | wc -l)
bytes=$(find "$tree" -type f -printf '%s\n' | awk '{s+=$1} END {print s}')
bench/cache-as-read "$tree"

keys=$work/keys
mkdir -p "$keys"
[ -f "$keys/rsa.pem" ] || openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
  -out "$keys/rsa.pem" 2>/dev/null

# Mean seconds of command NAME in a hyperfine JSON export.
mean() { jq -r --arg n "$2" '.results[] | select(.command == $n) | .mean' "$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

echo "## evmctl mode, $(date -u +%F), $files files, $((bytes / 1000000)) MB"
echo
echo "evmctl mode = \`$imactl\` run as \`evmctl\`; Debian = \`$debian\` ($("$debian" --version))."
echo
hyperfine --style basic --runs "$runs" --warmup 1 --export-markdown "$work/em-hash.md" \
  --export-json "$work/em-hash.json" \
  -n "evmctl mode -r ima_hash" "$ours -r ima_hash $tree" \
  -n "imactl hash -r" "$imactl hash -r $tree" \
  -n "Debian evmctl -r ima_hash" "$debian -r ima_hash $tree" >&2
cat "$work/em-hash.md"
echo
hyperfine --style basic --runs "$runs" --warmup 1 --export-markdown "$work/em-sign.md" \
  --export-json "$work/em-sign.json" \
  -n "evmctl mode -r ima_sign" "$ours -r ima_sign --key $keys/rsa.pem $tree >/dev/null" \
  -n "imactl sign -r" "$imactl sign -r --key $keys/rsa.pem $tree" \
  -n "Debian evmctl -r ima_sign" "$debian -r ima_sign --key $keys/rsa.pem $tree >/dev/null" >&2
cat "$work/em-sign.md"
echo

h=$work/em-hash.json s=$work/em-sign.json
echo "ratios (mean wall time; > 1 means the first is slower):"
echo "- ima_hash: evmctl mode / imactl hash -r = $(ratio "$(mean "$h" "evmctl mode -r ima_hash")" "$(mean "$h" "imactl hash -r")")"
echo "- ima_hash: Debian evmctl / evmctl mode = $(ratio "$(mean "$h" "Debian evmctl -r ima_hash")" "$(mean "$h" "evmctl mode -r ima_hash")")"
echo "- ima_sign: evmctl mode / imactl sign -r = $(ratio "$(mean "$s" "evmctl mode -r ima_sign")" "$(mean "$s" "imactl sign -r")")"
echo "- ima_sign: Debian evmctl / evmctl mode = $(ratio "$(mean "$s" "Debian evmctl -r ima_sign")" "$(mean "$s" "evmctl mode -r ima_sign")")"
