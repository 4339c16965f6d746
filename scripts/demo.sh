#!/usr/bin/env bash
# Try odbackup without an account or a network: build it and the bundled Graph simulator, serve a generated
# drive on loopback, back it up into a temporary folder, then show status. Everything stays on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p odbackup -p graphsim --bins
files=${FILES:-2000}
dest=${DEST:-$(mktemp -d -t odbackup-demo-XXXXXX)}
info=$(mktemp)
./target/release/graphsim --files "$files" --folders $((files / 50 + 1)) >"$info" &
sim=$!
trap 'kill $sim 2>/dev/null || true' EXIT
for _ in $(seq 200); do grep -q graph_url= "$info" && break; sleep 0.05; done
graph_url=$(sed -n 's/.*graph_url=\([^ ]*\).*/\1/p' "$info")
token=$(sed -n 's/.*token=\([^ ]*\).*/\1/p' "$info")
echo "simulator at $graph_url; backing up $files files into $dest"
ODBACKUP_ACCESS_TOKEN=$token ./target/release/odbackup backup --dest "$dest" --graph-url "$graph_url"
./target/release/odbackup status --dest "$dest"
