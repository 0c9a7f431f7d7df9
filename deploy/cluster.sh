#!/usr/bin/env bash
# Starts a Hearth cluster on loopback: 1 distributor, 3 ingesters (replication factor 3),
# 1 query-frontend, 1 querier and 1 compactor, with blocks in an S3 bucket and no shared folder. Without
# S3_ENDPOINT it starts a local S3 server (moto's, from PyPI, in the repository's .venv) on
# 127.0.0.1:9000 with a bucket `profiles` (it keeps objects in memory: a demo, gone when the
# script stops). Push to the distributor (http://127.0.0.1:4100),
# query the query-frontend (http://127.0.0.1:4400; it queues queries per tenant and the
# querier pulls) or the querier (http://127.0.0.1:4500, Flight SQL on 127.0.0.1:4501). Ctrl-C stops them
# all gracefully (ingesters flush their heads to the bucket).
#
#   deploy/cluster.sh [DATA_DIR]        (default ./data-cluster; uses target/release/hearth
#                                        when built, else builds it)
#   S3_ENDPOINT=host:port S3_BUCKET=name AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... \
#     deploy/cluster.sh                 (an existing S3-compatible server over plain HTTP)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
data="${1:-./data-cluster}"
bin="${HEARTH_BIN:-$here/target/release/hearth}"
if [[ ! -x "$bin" ]]; then
    cargo build --release --manifest-path "$here/Cargo.toml"
fi
mkdir -p "$data"
pids=()
s3_pid=""
if [[ -z "${S3_ENDPOINT:-}" ]]; then
    bash "$here/scripts/python-env.sh"
    "$here/.venv/bin/moto_server" -H 127.0.0.1 -p 9000 >"$data/s3.log" 2>&1 &
    s3_pid=$!
    for _ in $(seq 100); do
        curl -sf -o /dev/null http://127.0.0.1:9000/ && break
        sleep 0.1
    done
    curl -sf -X PUT http://127.0.0.1:9000/profiles >/dev/null
    echo "started a local S3 server on 127.0.0.1:9000 (bucket profiles, log $data/s3.log)"
    export S3_ENDPOINT=127.0.0.1:9000 S3_BUCKET=profiles
    export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
fi
storage=(--storage.backend s3 --storage.s3.endpoint "$S3_ENDPOINT"
    --storage.s3.bucket-name "${S3_BUCKET:-profiles}" --storage.s3.region "${AWS_REGION:-us-east-1}"
    --storage.s3.insecure true --storage.s3.force-path-style true)
seeds="127.0.0.1:7301"
start() {
    local name="$1"; shift
    "$bin" "${storage[@]}" --data-dir "$data/$name" --node-id "$name" \
        --gossip-seeds "$seeds" "$@" >"$data/$name.log" 2>&1 &
    pids+=($!)
    echo "started $name (pid $!, log $data/$name.log)"
}
start ingester-1 --target ingester --http-addr 127.0.0.1:4201 --flight-addr 127.0.0.1:4211 --gossip-addr 127.0.0.1:7301
start ingester-2 --target ingester --http-addr 127.0.0.1:4202 --flight-addr 127.0.0.1:4212 --gossip-addr 127.0.0.1:7302
start ingester-3 --target ingester --http-addr 127.0.0.1:4203 --flight-addr 127.0.0.1:4213 --gossip-addr 127.0.0.1:7303
start distributor --target distributor --http-addr 127.0.0.1:4100 --gossip-addr 127.0.0.1:7310
start querier --target querier --http-addr 127.0.0.1:4500 --flight-addr 127.0.0.1:4501 --gossip-addr 127.0.0.1:7320
start query-frontend --target query-frontend --http-addr 127.0.0.1:4400 --flight-addr 127.0.0.1:4401 --gossip-addr 127.0.0.1:7340
start compactor --target compactor --http-addr 127.0.0.1:4600 --gossip-addr 127.0.0.1:7330
# Hearth first (ingesters flush into the bucket), the local S3 server last.
stop() {
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
    [[ -n "$s3_pid" ]] && kill -TERM "$s3_pid" 2>/dev/null
    exit 0
}
trap stop INT TERM
echo "push: http://127.0.0.1:4100   query: http://127.0.0.1:4400 (frontend), http://127.0.0.1:4500 (querier)   flight sql: grpc://127.0.0.1:4501"
wait
