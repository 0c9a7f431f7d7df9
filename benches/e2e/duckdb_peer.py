"""The peer: DuckDB running the aggregation a flame graph starts with (sum of value by
stack-trace id, per block and service partition) on the same Parquet files, under the same
time and series filter. Prints JSON with the median and p99 milliseconds."""

import argparse
import json
import statistics
import time

import duckdb

parser = argparse.ArgumentParser()
parser.add_argument("--blocks", required=True, help="the tenant's block folder")
parser.add_argument("--profile-type", required=True)
parser.add_argument("--service", help="one service; all when absent")
parser.add_argument("--start", type=int, required=True, help="ns")
parser.add_argument("--end", type=int, required=True, help="ns")
parser.add_argument("--runs", type=int, default=10)
args = parser.parse_args()

con = duckdb.connect()
con.execute("SET threads TO 2")
service_filter = "AND service_name = $service" if args.service else ""
query = f"""
SELECT s.filename, s.service_name, s.stacktrace_id, sum(s.value) AS value
FROM read_parquet('{args.blocks}/*/samples.parquet', filename = true) s
WHERE s.series_id IN (
    SELECT series_id FROM read_parquet('{args.blocks}/*/series.parquet')
    WHERE profile_type = $profile_type {service_filter}
)
  AND epoch_ns(s.time) >= $start AND epoch_ns(s.time) < $end
GROUP BY 1, 2, 3
"""
params = {"profile_type": args.profile_type, "start": args.start, "end": args.end}
if args.service:
    params["service"] = args.service
times = []
rows = 0
for _ in range(args.runs):
    t = time.perf_counter()
    rows = len(con.execute(query, params).fetchall())
    times.append((time.perf_counter() - t) * 1000)
times.sort()
print(json.dumps({
    "p50_ms": statistics.median(times),
    "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))],
    "groups": rows,
}))
