#!/usr/bin/env bash
# Starts a Hearth cluster on loopback: 1 distributor, 3 ingesters (replication factor 3) and
# 1 querier, sharing one block folder. Push to the distributor (http://127.0.0.1:4100), query
# the querier (http://127.0.0.1:4500, Flight SQL on 127.0.0.1:4501). Ctrl-C stops them all
# gracefully (ingesters flush their heads to blocks).
#
#   deploy/cluster.sh [DATA_DIR]        (default ./data-cluster; uses target/release/hearth
#                                        when built, else builds it)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
data="${1:-./data-cluster}"
bin="${HEARTH_BIN:-$here/target/release/hearth}"
if [[ ! -x "$bin" ]]; then
    cargo build --release --manifest-path "$here/Cargo.toml"
fi
mkdir -p "$data/blocks"
seeds="127.0.0.1:7301"
pids=()
start() {
    local name="$1"; shift
    "$bin" --blocks-dir "$data/blocks" --data-dir "$data/$name" --node-id "$name" \
        --gossip-seeds "$seeds" "$@" >"$data/$name.log" 2>&1 &
    pids+=($!)
    echo "started $name (pid $!, log $data/$name.log)"
}
start ingester-1 --target ingester --http-addr 127.0.0.1:4201 --flight-addr 127.0.0.1:4211 --gossip-addr 127.0.0.1:7301
start ingester-2 --target ingester --http-addr 127.0.0.1:4202 --flight-addr 127.0.0.1:4212 --gossip-addr 127.0.0.1:7302
start ingester-3 --target ingester --http-addr 127.0.0.1:4203 --flight-addr 127.0.0.1:4213 --gossip-addr 127.0.0.1:7303
start distributor --target distributor --http-addr 127.0.0.1:4100 --gossip-addr 127.0.0.1:7310
start querier --target querier --http-addr 127.0.0.1:4500 --flight-addr 127.0.0.1:4501 --gossip-addr 127.0.0.1:7320
trap 'kill -TERM "${pids[@]}" 2>/dev/null; wait' INT TERM
echo "push: http://127.0.0.1:4100   query: http://127.0.0.1:4500   flight sql: grpc://127.0.0.1:4501"
wait
