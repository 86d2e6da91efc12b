#!/usr/bin/env bash
# Ferry, scp and rsync over emulated wide-area links, in the same run: the figures behind
# the README's long-path table.
#
#   bash examples/wan.sh [SIZE_MIB]        # default 512; about 15 minutes at 512
#   WAN_TOOLS=ferry bash examples/wan.sh 1024   # Ferry alone (a few minutes)
#
# It drives the project's link emulator, `wanrelay` (a user-space TCP relay with a one-way
# delay, a rate and a bottleneck queue; this machine's kernel has no netem), through its
# `run.sh`, which times each tool's client command and checks every copy with `cmp`. The
# relay it runs is examples/wan/wanrelay.rs: the same, with one bottleneck shared by all
# connections (Ferry opens several on a long path).
# WAN_BENCH names the folder that holds them (default: ../shared/bench/wan beside the
# repository). Two passes: the links as they are, then with the relay's `--window 4MiB`,
# which caps each TCP connection at 4 MiB not yet acknowledged, as an untuned Linux host's
# `tcp_wmem` does. The first pass also cuts the 1 Gbit/s × 100 ms link once the receiver
# holds 40% and reruns the receive. Results go to $WAN_WORK (default /tmp/wan-work).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WAN=${WAN_BENCH:-$ROOT/../shared/bench/wan}
SIZE=${1:-512}
TOOLS=${WAN_TOOLS:-ferry scp rsync}
[ -f "$WAN/run.sh" ] || { echo "no link emulator at $WAN (set WAN_BENCH)" >&2; exit 2; }
# A copy of it whose relay has one bottleneck for all connections (examples/wan/wanrelay.rs):
# Ferry's lanes share the path, as they would on a real one. (With one connection, as
# scp and rsync use, the two relays are the same.)
SHARED_LINK=$(mktemp -d /tmp/wan-shared-link.XXXXXX)
cp -r "$WAN/." "$SHARED_LINK/"
cp "$ROOT/examples/wan/wanrelay.rs" "$SHARED_LINK/proxy/src/main.rs"
sed -i 's#/tmp/wan-target#/tmp/wan-target-shared-link#g' "$SHARED_LINK/run.sh"
WAN=$SHARED_LINK
(cd "$ROOT" && cargo build --release -q -p ferry-examples --bin ferry)
export FERRY=$ROOT/target/release/ferry
# Each Ferry process prints its peak RSS at exit; the last link of the second pass
# (1 Gbit/s × 200 ms, capped) is the one whose logs stay.
export FERRY_REPORT_RSS=1
STAMP=$(date +%Y%m%d-%H%M%S)
WORK=${WAN_WORK:-/tmp/wan-work}
bash "$WAN/run.sh" -s "$SIZE" -r 1 -t "$TOOLS" -l "100mbit:20 100mbit:100 1gbit:100 1gbit:200" \
    -R 1gbit:100 -o "$WORK/open-$STAMP"
bash "$WAN/run.sh" -s "$SIZE" -r 1 -t "$TOOLS" -l "1gbit:100 1gbit:200" -w 4MiB \
    -o "$WORK/window-$STAMP"
echo
echo "## $SIZE MiB, links as they are"
cat "$WORK/open-$STAMP/table.md"
cat "$WORK/open-$STAMP/resume.txt"
echo
echo "## $SIZE MiB, each TCP connection capped at 4 MiB in flight (--window 4MiB)"
cat "$WORK/window-$STAMP/table.md"
echo
echo "Peak RSS on the last link above (1 Gbit/s × 200 ms, capped):"
grep -h "peak RSS" "$WORK/window-$STAMP"/ferry-send.err | sed 's/^/  sender /'
grep -h "peak RSS" "$WORK/window-$STAMP"/ferry-recv.err | sed 's/^/  receiver /'
