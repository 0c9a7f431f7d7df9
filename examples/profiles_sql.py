"""Profiles with SQL from Python: Hearth over Arrow Flight SQL, with ADBC and pandas.

    .venv/bin/python examples/profiles_sql.py --uri grpc://localhost:4041 \
        --selector 'process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="my.app"}'

Prints the top functions of the selection, CPU by thread over time, and what changed between
the first and the second half of the time range. Times are ISO 8601 or Unix milliseconds.
"""

import argparse
import warnings
from datetime import datetime, timedelta, timezone

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flightsql
import pandas as pd

warnings.filterwarnings("ignore", message="Cannot disable autocommit")


def connect(uri, token=None):
    kwargs = {}
    if token:
        kwargs[adbc_driver_flightsql.DatabaseOptions.AUTHORIZATION_HEADER.value] = f"Bearer {token}"
    return flightsql.connect(uri, db_kwargs=kwargs)


def sql(conn, query, parameters=None):
    with conn.cursor() as cur:
        cur.execute(query, parameters=parameters)
        return cur.fetch_df()


def literal(value):
    """A SQL literal. Table-function arguments are evaluated when the query is planned, before
    parameters are bound, so they are written into the query, quoted."""
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def top_functions(conn, selector, start, end, limit=15):
    """Self and total time per function, largest self first."""
    args = ", ".join(literal(v) for v in (selector, start, end, limit))
    return sql(conn, f"SELECT * FROM top_functions({args})")


def by_label_over_time(conn, selector, start, end, label, step_seconds=60):
    """One column per value of `label`, one row per time step."""
    args = ", ".join(literal(v) for v in (selector, start, end, step_seconds))
    points = sql(
        conn,
        f"SELECT labels[{literal(label)}] AS label, time, sum(value) AS value "
        f"FROM series_points({args}) GROUP BY 1, 2 ORDER BY 2",
    )
    points = points.rename(columns={"label": label})
    return points.pivot_table(index="time", columns=label, values="value", aggfunc="sum", fill_value=0)


def diff(conn, selector, before, after, limit=15):
    """Self per function in two time ranges, and the change."""
    left = top_functions(conn, selector, *before, limit=1000).set_index("function")["self"]
    right = top_functions(conn, selector, *after, limit=1000).set_index("function")["self"]
    both = pd.DataFrame({"before": left, "after": right}).fillna(0).astype("int64")
    both["change"] = both["after"] - both["before"]
    return both.reindex(both["change"].abs().sort_values(ascending=False).index).head(limit)


def main():
    now = datetime.now(timezone.utc)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uri", default="grpc://localhost:4041")
    parser.add_argument("--token", help="bearer token, when the server has flight.tokens")
    parser.add_argument("--selector", default="process_cpu:cpu:nanoseconds:cpu:nanoseconds{}")
    parser.add_argument("--start", default=(now - timedelta(hours=1)).isoformat())
    parser.add_argument("--end", default=now.isoformat())
    parser.add_argument("--label", default="thread_name")
    args = parser.parse_args()

    def as_time(value):
        return int(value) if value.isdigit() else value

    start, end = as_time(args.start), as_time(args.end)
    conn = connect(args.uri, args.token)
    pd.set_option("display.width", 140)

    print("Top functions")
    print(top_functions(conn, args.selector, start, end).to_string(index=False))

    print(f"\nBy {args.label} over time")
    print(by_label_over_time(conn, args.selector, start, end, args.label).tail(10))

    t0 = pd.Timestamp(start, unit="ms", tz="UTC") if isinstance(start, int) else pd.Timestamp(start)
    t1 = pd.Timestamp(end, unit="ms", tz="UTC") if isinstance(end, int) else pd.Timestamp(end)
    middle = t0 + (t1 - t0) / 2
    print("\nChange between the two halves of the range")
    print(diff(conn, args.selector, (t0.isoformat(), middle.isoformat()), (middle.isoformat(), t1.isoformat())))


if __name__ == "__main__":
    main()
