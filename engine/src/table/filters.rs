//! What `scan()` can learn from pushed-down filters: a time range, label matchers and series
//! ids. Filters are always re-applied by DataFusion (`Inexact`), so this only has to be sound:
//! it may keep too much, never too little.

use std::collections::BTreeSet;

use datafusion::common::ScalarValue;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, col, lit};
use datafusion::prelude::Expr as DfExpr;

use super::label_fn::{LABEL_FUNCTION, label_udf};
use crate::matcher::{LabelMatcher, MatchOp};
use crate::model::{TimeRange, label};
use crate::schema;

/// A `Timestamp(ns, UTC)` literal, the type of `time` columns.
pub fn timestamp_lit(nanos: i64) -> Expr {
    lit(ScalarValue::TimestampNanosecond(
        Some(nanos),
        Some("UTC".into()),
    ))
}

/// `time` in the half-open `range`: the exact row filter the `samples` and `profiles` scans
/// apply themselves.
pub fn time_filter(range: &TimeRange) -> Expr {
    col(schema::TIME)
        .gt_eq(timestamp_lit(range.start))
        .and(col(schema::TIME).lt(timestamp_lit(range.end)))
}

/// `series_id IN (ids)`: the exact series filter of the `samples` and `profiles` scans.
pub fn series_filter<'a>(ids: impl IntoIterator<Item = &'a u64>) -> Expr {
    col(schema::SERIES_ID).in_list(ids.into_iter().map(|&id| lit(id)).collect(), false)
}

/// `label(labels, 'name') <op> 'value'`, the expression a matcher becomes.
pub fn matcher_expr(matcher: &LabelMatcher) -> Expr {
    let value = label_udf().call(vec![col(schema::LABELS), lit(matcher.name.as_str())]);
    match matcher.op {
        MatchOp::Equal => value.eq(lit(matcher.value.as_str())),
        MatchOp::NotEqual => value.not_eq(lit(matcher.value.as_str())),
        MatchOp::Regex => binary(value, Operator::RegexMatch, lit(matcher.anchored_pattern())),
        MatchOp::NotRegex => binary(
            value,
            Operator::RegexNotMatch,
            lit(matcher.anchored_pattern()),
        ),
    }
}

fn binary(left: Expr, op: Operator, right: Expr) -> Expr {
    Expr::BinaryExpr(BinaryExpr::new(Box::new(left), op, Box::new(right)))
}

/// What the filters of one scan say.
#[derive(Debug, Clone)]
pub struct ScanPruning {
    /// Rows outside cannot match. For the series table it bounds `[min_time, max_time]`.
    pub time: TimeRange,
    /// Every matcher must hold for a series to match.
    pub matchers: Vec<LabelMatcher>,
    /// When set, only these series can match.
    pub series_ids: Option<BTreeSet<u64>>,
}

impl ScanPruning {
    pub fn from_filters(filters: &[Expr]) -> Self {
        let mut pruning = ScanPruning {
            time: TimeRange::ALL,
            matchers: Vec::new(),
            series_ids: None,
        };
        for filter in filters {
            for conjunct in split_conjunction(filter) {
                pruning.learn(conjunct);
            }
        }
        pruning
    }

    fn learn(&mut self, expr: &Expr) {
        match expr {
            // `series_id = a OR series_id = b ...`, which is what DataFusion makes of a short IN.
            Expr::BinaryExpr(BinaryExpr {
                op: Operator::Or, ..
            }) => {
                let ids: Option<BTreeSet<u64>> = split_disjunction(expr)
                    .into_iter()
                    .map(|e| match e {
                        Expr::BinaryExpr(BinaryExpr {
                            left,
                            op: Operator::Eq,
                            right,
                        }) if column_name(left) == Some(schema::SERIES_ID) => {
                            literal(right).and_then(as_u64)
                        }
                        _ => None,
                    })
                    .collect();
                if let Some(ids) = ids {
                    self.restrict_series(ids);
                }
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                if let Some(matcher) = label_comparison(left, *op, right) {
                    self.matchers.push(matcher);
                } else if let (Some(column), Some(value)) = (column_name(left), literal(right)) {
                    self.learn_comparison(column, *op, value);
                } else if let (Some(value), Some(column)) = (literal(left), column_name(right))
                    && let Some(op) = op.swap()
                {
                    self.learn_comparison(column, op, value);
                }
            }
            Expr::InList(list)
                if !list.negated && column_name(&list.expr) == Some(schema::SERIES_ID) =>
            {
                let ids: Option<BTreeSet<u64>> = list
                    .list
                    .iter()
                    .map(|e| literal(e).and_then(as_u64))
                    .collect();
                if let Some(ids) = ids {
                    self.restrict_series(ids);
                }
            }
            Expr::Between(between) if !between.negated => {
                if let (Some(column), Some(low), Some(high)) = (
                    column_name(&between.expr),
                    literal(&between.low),
                    literal(&between.high),
                ) {
                    self.learn_comparison(column, Operator::GtEq, low);
                    self.learn_comparison(column, Operator::LtEq, high);
                }
            }
            _ => {}
        }
    }

    fn restrict_series(&mut self, ids: BTreeSet<u64>) {
        self.series_ids = Some(match self.series_ids.take() {
            Some(known) => known.intersection(&ids).copied().collect(),
            None => ids,
        });
    }

    fn learn_comparison(&mut self, column: &str, op: Operator, value: &ScalarValue) {
        match column {
            schema::TIME => {
                if let Some(t) = as_nanos(value) {
                    self.bound_time(op, t, op);
                }
            }
            // A series overlaps [start, end) when max_time >= start and min_time < end.
            schema::MAX_TIME => {
                if let Some(t) = as_nanos(value)
                    && matches!(op, Operator::Gt | Operator::GtEq | Operator::Eq)
                {
                    self.bound_time(op, t, Operator::GtEq);
                }
            }
            schema::MIN_TIME => {
                if let Some(t) = as_nanos(value)
                    && matches!(op, Operator::Lt | Operator::LtEq | Operator::Eq)
                {
                    self.bound_time(op, t, Operator::LtEq);
                }
            }
            schema::SERIES_ID if op == Operator::Eq => {
                if let Some(id) = as_u64(value) {
                    self.restrict_series(BTreeSet::from([id]));
                }
            }
            schema::SERVICE_NAME | "profile_type" if op == Operator::Eq => {
                if let Some(v) = as_str(value) {
                    let name = if column == "profile_type" {
                        label::PROFILE_TYPE
                    } else {
                        label::SERVICE_NAME
                    };
                    self.matchers.push(LabelMatcher::equal(name, v));
                }
            }
            _ => {}
        }
    }

    /// Narrows the time range by `time <op> t`; `allowed` limits which side may move.
    fn bound_time(&mut self, op: Operator, t: i64, allowed: Operator) {
        let lower = matches!(allowed, Operator::Gt | Operator::GtEq | Operator::Eq);
        let upper = matches!(allowed, Operator::Lt | Operator::LtEq | Operator::Eq);
        let range = match op {
            Operator::Gt if lower => TimeRange::new(t.saturating_add(1), i64::MAX),
            Operator::GtEq if lower => TimeRange::new(t, i64::MAX),
            Operator::Lt if upper => TimeRange::new(i64::MIN, t),
            Operator::LtEq if upper => TimeRange::new(i64::MIN, t.saturating_add(1)),
            Operator::Eq => TimeRange::new(t, t.saturating_add(1)),
            _ => return,
        };
        self.time = self.time.intersect(&range);
    }

    /// The matchers that decide on one label, when they are equalities.
    pub fn required_value(&self, name: &str) -> Option<&str> {
        self.matchers
            .iter()
            .find(|m| m.name == name && m.op == MatchOp::Equal)
            .map(|m| m.value.as_str())
    }
}

/// Whether the scan applies `filter` exactly to `samples` and `profiles` rows: bounds on the bare
/// `time` column and series-id sets, the filters every profile query has. Rows are sorted by
/// series and time, so the scan decides once per run of equal (series, time) instead of per row.
pub fn is_exact_row_filter(filter: &Expr) -> bool {
    let is_series = |e: &Expr| bare_column(e) == Some(schema::SERIES_ID);
    let is_time = |e: &Expr| bare_column(e) == Some(schema::TIME);
    let id = |e: &Expr| literal(e).and_then(as_u64).is_some();
    let nanos = |e: &Expr| literal(e).and_then(as_nanos).is_some();
    match filter {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => is_exact_row_filter(left) && is_exact_row_filter(right),
        Expr::BinaryExpr(BinaryExpr {
            op: Operator::Or, ..
        }) => split_disjunction(filter).into_iter().all(|e| {
            matches!(e, Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right })
                if is_series(left) && id(right))
        }),
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let comparison = matches!(
                op,
                Operator::Eq | Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq
            );
            (comparison && ((is_time(left) && nanos(right)) || (nanos(left) && is_time(right))))
                || (*op == Operator::Eq && is_series(left) && id(right))
        }
        Expr::InList(list) => !list.negated && is_series(&list.expr) && list.list.iter().all(id),
        Expr::Between(between) => {
            !between.negated
                && is_time(&between.expr)
                && nanos(&between.low)
                && nanos(&between.high)
        }
        _ => false,
    }
}

fn bare_column(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Column(c) => Some(c.name.as_str()),
        _ => None,
    }
}

/// The operands of a chain of ORs.
fn split_disjunction(expr: &Expr) -> Vec<&Expr> {
    match expr {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) => {
            let mut parts = split_disjunction(left);
            parts.extend(split_disjunction(right));
            parts
        }
        other => vec![other],
    }
}

/// Recognises `label(labels, 'name') <op> 'value'`.
fn label_comparison(left: &Expr, op: Operator, right: &Expr) -> Option<LabelMatcher> {
    let DfExpr::ScalarFunction(function) = left else {
        return None;
    };
    if function.name() != LABEL_FUNCTION {
        return None;
    }
    let [labels, name] = &function.args[..] else {
        return None;
    };
    if column_name(labels) != Some(schema::LABELS) {
        return None;
    }
    let name = as_str(literal(name)?)?;
    let value = as_str(literal(right)?)?;
    match op {
        Operator::Eq => Some(LabelMatcher::equal(name, value)),
        Operator::NotEq => LabelMatcher::new(name, MatchOp::NotEqual, value).ok(),
        // The pattern is already anchored; run it as it is.
        Operator::RegexMatch => LabelMatcher::new(name, MatchOp::Regex, value).ok(),
        Operator::RegexNotMatch => LabelMatcher::new(name, MatchOp::NotRegex, value).ok(),
        _ => None,
    }
}

fn column_name(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Column(c) => Some(c.name.as_str()),
        Expr::Cast(cast) => column_name(&cast.expr),
        _ => None,
    }
}

fn literal(expr: &Expr) -> Option<&ScalarValue> {
    match expr {
        Expr::Literal(value, _) => Some(value),
        _ => None,
    }
}

fn as_str(value: &ScalarValue) -> Option<&str> {
    match value {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::Utf8View(Some(s))
        | ScalarValue::LargeUtf8(Some(s)) => Some(s),
        ScalarValue::Dictionary(_, inner) => as_str(inner),
        _ => None,
    }
}

fn as_u64(value: &ScalarValue) -> Option<u64> {
    match value {
        ScalarValue::UInt64(Some(v)) => Some(*v),
        ScalarValue::Int64(Some(v)) => u64::try_from(*v).ok(),
        ScalarValue::UInt32(Some(v)) => Some(*v as u64),
        ScalarValue::Int32(Some(v)) => u64::try_from(*v).ok(),
        _ => None,
    }
}

fn as_nanos(value: &ScalarValue) -> Option<i64> {
    match value {
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampMicrosecond(Some(v), _) => v.checked_mul(1_000),
        ScalarValue::TimestampMillisecond(Some(v), _) => v.checked_mul(1_000_000),
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1_000_000_000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(nanos: i64) -> Expr {
        lit(ScalarValue::TimestampNanosecond(
            Some(nanos),
            Some("UTC".into()),
        ))
    }

    #[test]
    fn learns_time_matchers_and_series() {
        let filters = vec![
            col("time").gt_eq(ts(100)).and(col("time").lt(ts(200))),
            matcher_expr(&LabelMatcher::equal("service_name", "api")),
            matcher_expr(&LabelMatcher::new("region", MatchOp::Regex, "eu-.*").unwrap()),
            col("series_id").in_list(vec![lit(1u64), lit(2u64)], false),
        ];
        let p = ScanPruning::from_filters(&filters);
        assert_eq!(p.time, TimeRange::new(100, 200));
        assert_eq!(p.required_value("service_name"), Some("api"));
        assert!(p.matchers[1].matches_value("eu-west"));
        assert!(!p.matchers[1].matches_value("us-eu-west"));
        assert_eq!(p.series_ids, Some(BTreeSet::from([1, 2])));
    }

    #[test]
    fn series_time_bounds_only_move_the_sound_side() {
        let filters = vec![col("max_time").gt_eq(ts(10)), col("min_time").lt_eq(ts(20))];
        assert_eq!(
            ScanPruning::from_filters(&filters).time,
            TimeRange::new(10, 21)
        );
        // `max_time <= x` says nothing about overlap with a later range start.
        let filters = vec![col("max_time").lt_eq(ts(20))];
        assert_eq!(ScanPruning::from_filters(&filters).time, TimeRange::ALL);
    }

    #[test]
    fn exact_row_filters_are_bare_time_bounds_and_series_sets() {
        let exact = [
            col("time").gt_eq(ts(100)).and(col("time").lt(ts(200))),
            ts(5).lt(col("time")),
            col("series_id").in_list(vec![lit(1u64), lit(2u64)], false),
            col("series_id")
                .eq(lit(7u64))
                .or(col("series_id").eq(lit(8u64))),
            col("time").between(ts(1), ts(2)),
        ];
        for f in &exact {
            assert!(is_exact_row_filter(f), "{f}");
        }
        let inexact = [
            col("series_id").in_list(vec![lit(1u64)], true),
            col("series_id")
                .eq(lit(7u64))
                .or(col("value").eq(lit(8i64))),
            col("time").not_eq(ts(3)),
            Expr::Cast(datafusion::logical_expr::Cast::new(
                Box::new(col("time")),
                arrow::datatypes::DataType::Int64,
            ))
            .gt(ts(1)),
            col("time").gt(lit(5i64)),
            matcher_expr(&LabelMatcher::equal("service_name", "api")),
            col("time").gt(ts(1)).and(col("value").gt(lit(0i64))),
        ];
        for f in &inexact {
            assert!(!is_exact_row_filter(f), "{f}");
        }
    }

    #[test]
    fn an_or_of_series_ids_is_a_set() {
        let filters = vec![
            col("series_id")
                .eq(lit(1u64))
                .or(col("series_id").eq(lit(2u64))),
        ];
        assert_eq!(
            ScanPruning::from_filters(&filters).series_ids,
            Some(BTreeSet::from([1, 2]))
        );
        let mixed = vec![col("series_id").eq(lit(1u64)).or(col("time").gt(lit(0i64)))];
        assert_eq!(ScanPruning::from_filters(&mixed).series_ids, None);
    }

    #[test]
    fn disjunctions_are_not_pruned() {
        let filters = vec![
            matcher_expr(&LabelMatcher::equal("a", "1"))
                .or(matcher_expr(&LabelMatcher::equal("a", "2"))),
        ];
        assert!(ScanPruning::from_filters(&filters).matchers.is_empty());
    }
}
