"""Flight SQL from Python, as a notebook user would use it (adbc-driver-flightsql + pandas).

Run by tests/integration/flight_sql.rs against a running hearth that holds data for
tenant-a and tenant-b. Every number read over Flight SQL is checked against the Connect API
(querier.v1) for the same data. Exits non-zero on the first mismatch.
"""

import argparse
import json
import sys
import urllib.request
import warnings

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flightsql
import pandas as pd

warnings.filterwarnings("ignore", message="Cannot disable autocommit")

CPU = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
ALL_TIME = ("1", "4102444800000")  # ms


def connect(flight, token):
    return flightsql.connect(
        f"grpc://{flight}",
        db_kwargs={adbc_driver_flightsql.DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {token}"},
    )


def connect_api(http, tenant, method, body):
    request = urllib.request.Request(
        f"http://{http}/querier.v1.QuerierService/{method}",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "x-scope-orgid": tenant},
    )
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


def query(conn, sql, parameters=None):
    with conn.cursor() as cur:
        cur.execute(sql, parameters=parameters)
        return cur.fetch_df()


def check(what, got, expected):
    if got != expected:
        print(f"FAIL {what}: got {got!r}, expected {expected!r}")
        sys.exit(1)
    print(f"ok   {what}")


def flame_self_by_name(graph):
    """Self per function name from a Connect FlameGraph (4-tuples per node)."""
    names = graph["names"]
    totals = {}
    for level in graph["levels"][1:]:
        values = [int(v) for v in level.get("values", [])]
        for i in range(0, len(values), 4):
            name = names[values[i + 3]]
            totals[name] = totals.get(name, 0) + values[i + 2]
    return totals


def main_checks(flight, http):
    conn = connect(flight, "token-a")

    # 1. Browse: catalogs, schemas, tables with their columns.
    objects = conn.adbc_get_objects(depth="columns").read_all().to_pylist()
    catalog = objects[0]
    check("catalog", catalog["catalog_name"], "hearth")
    tables = {t["table_name"]: [c["column_name"] for c in t["table_columns"]] for t in catalog["catalog_db_schemas"][0]["db_schema_tables"]}
    check("tables", sorted(tables), ["functions", "locations", "mappings", "profiles", "samples", "series", "stacktraces"])
    check("samples columns", tables["samples"], ["series_id", "time", "service_name", "stacktrace_id", "value", "span_id", "source"])

    # 2. Profile types = Connect ProfileTypes.
    types = connect_api(http, "tenant-a", "ProfileTypes", {})
    expected = sorted(t["ID"] for t in types["profileTypes"])
    got = sorted(query(conn, "SELECT DISTINCT profile_type FROM series")["profile_type"])
    check("profile types", got, expected)

    # 3. Service names = Connect LabelValues.
    values = connect_api(http, "tenant-a", "LabelValues", {"name": "service_name"})
    got = sorted(query(conn, "SELECT DISTINCT label(labels, 'service_name') AS s FROM series")["s"])
    check("service names", got, values["names"])

    # 4. Series of a service = Connect Series.
    series = connect_api(http, "tenant-a", "Series", {"matchers": ['{service_name="python-app"}']})
    got = int(query(conn, "SELECT count(DISTINCT series_id) AS n FROM series WHERE service_name = 'python-app'")["n"][0])
    check("series count", got, len(series["labelsSet"]))

    # 5. Flame-graph total = sum of sample values = flamegraph_table's root.
    selector = '{service_name="python-app"}'
    graph = connect_api(
        http, "tenant-a", "SelectMergeStacktraces",
        {"profileTypeID": CPU, "labelSelector": selector, "start": ALL_TIME[0], "end": ALL_TIME[1], "maxNodes": "16384"},
    )["flamegraph"]
    total = int(graph["total"])
    summed = query(
        conn,
        f"SELECT sum(x.value) AS v FROM samples x JOIN (SELECT DISTINCT series_id FROM series "
        f"WHERE service_name = 'python-app' AND profile_type = '{CPU}') s USING (series_id)",
    )
    check("sum of samples = flame graph total", int(summed["v"][0]), total)
    nodes = query(conn, f"SELECT * FROM flamegraph_table('{CPU}{selector}', 1, 4102444800000, 16384) ORDER BY node_id")
    check("flamegraph_table root total", int(nodes["total"][0]), total)
    check("flamegraph_table nodes", len(nodes), sum(len(l.get("values", [])) // 4 for l in graph["levels"]))

    # 6. top_functions = self per function of the Connect flame graph.
    top = query(conn, f"SELECT * FROM top_functions('{CPU}{selector}', 1, 4102444800000, 100)")
    self_by_name = {k: v for k, v in flame_self_by_name(graph).items() if v}
    check("top_functions self", {r.function: int(r.self) for r in top.itertuples() if r.self}, self_by_name)

    # 7. series_points = Connect SelectSeries (per series, 60 s step).
    points = connect_api(
        http, "tenant-a", "SelectSeries",
        {"profileTypeID": CPU, "labelSelector": selector, "start": ALL_TIME[0], "end": ALL_TIME[1], "step": 60, "groupBy": ["service_name"]},
    )
    expected = {int(p["timestamp"]): p["value"] for s in points["series"] for p in s["points"]}
    df = query(conn, f"SELECT time, sum(value) AS v FROM series_points('{CPU}{selector}', 1, 4102444800000, 60) GROUP BY time")
    got = {int(pd.Timestamp(t).timestamp() * 1000): v for t, v in zip(df["time"], df["v"])}
    check("series_points = SelectSeries", got, expected)

    # 8. A prepared statement with a parameter equals the literal query.
    literal = int(query(conn, "SELECT count(*) AS n FROM samples WHERE service_name = 'python-app'")["n"][0])
    bound = int(query(conn, "SELECT count(*) AS n FROM samples WHERE service_name = $1", ("python-app",))["n"][0])
    check("prepared statement parameter", bound, literal)

    # 9. Tenant isolation: tenant-b's token sees its own data only, never tenant-a's.
    other = connect(flight, "token-b")
    services = sorted(query(other, "SELECT DISTINCT service_name FROM series")["service_name"])
    check("tenant-b sees only its services", services, ["b-app"])
    check("tenant-b sees no tenant-a samples", int(query(other, "SELECT count(*) AS n FROM samples WHERE service_name = 'python-app'")["n"][0]), 0)
    check(
        "tenant-b table function sees nothing of tenant-a",
        len(query(other, f"SELECT * FROM top_functions('{CPU}{selector}', 1, 4102444800000)")),
        0,
    )

    # 10. Errors name what is wrong, with the right status.
    for sql, status, fragment in [
        ("SELEC 1", "INVALID_ARGUMENT", "ParserError"),
        ("SELECT * FROM nope", "INVALID_ARGUMENT", "table 'hearth.public.nope' not found"),
        (f"SELECT * FROM top_functions('{CPU}{{a=\"b\"', 1, 2)", "INVALID_ARGUMENT", "expected ',' or '}'"),
    ]:
        try:
            query(conn, sql)
        except Exception as e:  # adbc raises DB-API errors carrying the gRPC status
            message = str(e)
            check(f"error for {sql!r}", status in message and fragment in message, True)
        else:
            check(f"error for {sql!r}", "no error", status)

    # 11. A wrong token is refused.
    try:
        query(connect(flight, "nope"), "SELECT 1")
    except Exception as e:
        check("unknown token", "UNAUTHENTICATED" in str(e), True)
    else:
        check("unknown token", "accepted", "UNAUTHENTICATED")


def orgid_checks(flight):
    """Multi-tenancy without tokens: x-scope-orgid metadata picks the tenant, as on HTTP."""
    header = adbc_driver_flightsql.DatabaseOptions.RPC_CALL_HEADER_PREFIX.value + "x-scope-orgid"

    def as_tenant(tenant):
        return flightsql.connect(f"grpc://{flight}", db_kwargs={header: tenant})

    for tenant, services in [("tenant-a", ["python-app"]), ("tenant-b", ["b-app"])]:
        got = sorted(query(as_tenant(tenant), "SELECT DISTINCT service_name FROM series")["service_name"])
        check(f"x-scope-orgid {tenant} sees its services only", got, services)
    try:
        query(flightsql.connect(f"grpc://{flight}"), "SELECT 1")
    except Exception as e:
        check("no x-scope-orgid is refused", "UNAUTHENTICATED" in str(e) and "x-scope-orgid" in str(e), True)
    else:
        check("no x-scope-orgid is refused", "accepted", "UNAUTHENTICATED")


def memory_checks(flight):
    conn = flightsql.connect(f"grpc://{flight}")
    try:
        query(conn, f"SELECT * FROM top_functions('{CPU}{{}}', 1, 4102444800000)")
    except Exception as e:
        # ADBC files every failed DoGet under InternalError; the gRPC code is in the message.
        message = str(e)
        check("over the memory limit: gRPC ResourceExhausted", "(ResourceExhausted;" in message, True)
        check("over the memory limit: says why", "Resources exhausted" in message, True)
    else:
        check("over the memory limit", "succeeded", "RESOURCE_EXHAUSTED")
    # Still serving, and a small query works.
    check("still serving", int(query(conn, "SELECT count(*) AS n FROM series")["n"][0]) > 0, True)


def admission_checks(flight):
    """Per-tenant limits on statements (max_query_parallelism 1, max_outstanding 2): a second
    statement waits for the first, a third is refused naming the limit, and a client that goes
    away gives its place back."""
    import threading

    first = flightsql.connect(f"grpc://{flight}").cursor()
    first.execute("SELECT * FROM generate_series(1, 100000000000)")
    reader = first.fetch_record_batch()
    check("the long statement streams", reader.read_next_batch().num_rows > 0, True)

    waited = {}

    def second():
        waited["rows"] = query(flightsql.connect(f"grpc://{flight}"), "SELECT 2 AS n")["n"].tolist()

    thread = threading.Thread(target=second)
    thread.start()
    thread.join(timeout=2)
    check("a second statement waits while the first runs", thread.is_alive(), True)
    try:
        query(flightsql.connect(f"grpc://{flight}"), "SELECT 3 AS n")
    except Exception as e:
        message = str(e)
        check("past the outstanding limit: gRPC ResourceExhausted", "(ResourceExhausted;" in message, True)
        check("past the outstanding limit: names it", "max_outstanding_requests_per_tenant" in message, True)
    else:
        check("past the outstanding limit", "succeeded", "RESOURCE_EXHAUSTED")
    # The client of the first goes away: the second runs, and new statements are admitted.
    reader.close()
    first.close()
    thread.join(timeout=30)
    check("the second ran once the first was gone", waited.get("rows"), [2])
    got = query(flightsql.connect(f"grpc://{flight}"), "SELECT 4 AS n")["n"].tolist()
    check("admitted again", got, [4])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--flight", required=True)
    parser.add_argument("--http")
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--orgid", action="store_true")
    parser.add_argument("--admission", action="store_true")
    args = parser.parse_args()
    if args.memory:
        memory_checks(args.flight)
    elif args.admission:
        admission_checks(args.flight)
    elif args.orgid:
        orgid_checks(args.flight)
    else:
        main_checks(args.flight, args.http)
    print("all checks passed")
