#!/usr/bin/env bash
# A real transfer on this machine, no setup: builds ferry, generates a folder (nested and
# empty directories, an empty file, an executable, 50 MB of random data, a log), sends it
# over loopback in pod mode, and checks that it arrived identical.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p ferry-examples
ferry="$PWD/target/release/ferry"
work=$(mktemp -d)
trap 'rm -rf "$work"; kill "${sender:-}" 2>/dev/null || true' EXIT

mkdir -p "$work/demo/photos/2026" "$work/demo/empty-dir"
head -c 50000000 /dev/urandom > "$work/demo/photos/2026/random.bin"
seq 1 200000 | sed 's/^/2026-11-22 INFO request /' > "$work/demo/server.log"
: > "$work/demo/empty-file"
printf '#!/bin/sh\necho hello from ferry\n' > "$work/demo/hello.sh"
chmod 755 "$work/demo/hello.sh"

"$ferry" send --pod --port 0 "$work/demo" > "$work/command" 2> "$work/send.log" &
sender=$!
while [ ! -s "$work/command" ]; do sleep 0.05; done
command=$(head -n 1 "$work/command")
echo "sender printed: $command"
# shellcheck disable=SC2086
"$ferry" ${command#ferry } -o "$work/received"
wait "$sender"
diff -r "$work/demo" "$work/received/demo"
[ "$(stat -c %a "$work/received/demo/hello.sh")" = 755 ]
echo "OK: the folder arrived identical, modes kept"
