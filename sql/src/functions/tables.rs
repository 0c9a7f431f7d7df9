//! Table functions that take a label selector and a time range, answered by the query service:
//!
//! - `flamegraph_table(selector, start, end [, max_nodes])`: the flame graph's nodes, pre-order;
//! - `top_functions(selector, start, end [, limit])`: self and total per function;
//! - `series_points(selector, start, end, step_seconds)`: every series' values over time.
//!
//! Times are timestamps (`now() - interval '1 hour'`), RFC 3339 strings, or Unix milliseconds.
//! Arguments are checked when the query is planned; the work runs when the table is read.

use std::sync::Arc;

use crate::render::{flame_nodes, function_totals};
use arrow::array::{
    ArrayRef, Float64Array, Int64Array, MapBuilder, RecordBatch, StringArray, StringBuilder,
    TimestampNanosecondArray, UInt32Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{DFSchema, DataFusionError, Result, ScalarValue, plan_err};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{ColumnarValue, Expr};
use datafusion::physical_expr::execution_props::ExecutionProps;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use futures::future::BoxFuture;
use hearth_engine::model::TenantId;
use hearth_engine::schema::{labels_type, time_type};

use super::explained::{Describe, ExplainedTable};
use crate::select::{ProfileSelection, SeriesShape};
use crate::selector::Selector;
use crate::service::QueryService;

/// Evaluates a constant argument (`now() - interval '1 hour'` included) to a scalar.
fn constant(expr: &Expr, what: &str) -> Result<ScalarValue> {
    let props = ExecutionProps::new().with_query_execution_start_time(chrono::Utc::now());
    let schema = DFSchema::empty();
    let physical = datafusion::physical_expr::create_physical_expr(
        expr,
        &schema,
        &props,
        &datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext::default(),
    )
    .map_err(|e| DataFusionError::Plan(format!("{what} must be a constant: {e}")))?;
    let batch = RecordBatch::new_empty(Arc::new(Schema::empty()));
    match physical.evaluate(&batch)? {
        ColumnarValue::Scalar(value) => Ok(value),
        ColumnarValue::Array(_) => plan_err!("{what} must be a constant"),
    }
}

fn string_arg(args: &[Expr], index: usize, what: &str) -> Result<String> {
    let Some(expr) = args.get(index) else {
        return plan_err!("missing argument {what}");
    };
    match constant(expr, what)? {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::Utf8View(Some(s))
        | ScalarValue::LargeUtf8(Some(s)) => Ok(s),
        other => plan_err!("{what} must be a string, got {other}"),
    }
}

/// A time argument in Unix milliseconds.
fn time_arg(args: &[Expr], index: usize, what: &str) -> Result<i64> {
    let Some(expr) = args.get(index) else {
        return plan_err!("missing argument {what}");
    };
    let value = constant(expr, what)?;
    let as_nanos = |v: &ScalarValue| -> Result<i64> {
        let cast = v.cast_to(&DataType::Timestamp(TimeUnit::Nanosecond, None))?;
        match cast {
            ScalarValue::TimestampNanosecond(Some(ns), _) => Ok(ns),
            other => plan_err!("{what} is not a time: {other}"),
        }
    };
    match &value {
        ScalarValue::Int64(Some(ms)) => Ok(*ms),
        ScalarValue::Int32(Some(ms)) => Ok(*ms as i64),
        ScalarValue::UInt64(Some(ms)) => Ok(*ms as i64),
        ScalarValue::Utf8(Some(_))
        | ScalarValue::Utf8View(Some(_))
        | ScalarValue::LargeUtf8(Some(_)) => as_nanos(&value).map(|ns| ns / 1_000_000),
        v if v.data_type().is_temporal() => as_nanos(v).map(|ns| ns / 1_000_000),
        other => {
            plan_err!("{what} must be a timestamp, a time string or Unix milliseconds, got {other}")
        }
    }
}

fn number_arg(args: &[Expr], index: usize, what: &str) -> Result<Option<f64>> {
    let Some(expr) = args.get(index) else {
        return Ok(None);
    };
    match constant(expr, what)?.cast_to(&DataType::Float64)? {
        ScalarValue::Float64(Some(v)) => Ok(Some(v)),
        other => plan_err!("{what} must be a number, got {other}"),
    }
}

/// The selector and time range every table function starts with.
fn selection(args: &[Expr], function: &str) -> Result<ProfileSelection> {
    let text = string_arg(args, 0, &format!("{function}: the selector"))?;
    let selector = Selector::parse(&text).map_err(|e| DataFusionError::Plan(e.to_string()))?;
    let start = time_arg(args, 1, &format!("{function}: start"))?;
    let end = time_arg(args, 2, &format!("{function}: end"))?;
    ProfileSelection::from_selector(selector, start, end)
        .map_err(|e| DataFusionError::Plan(e.to_string()))
}

type Compute = Arc<dyn Fn() -> BoxFuture<'static, Result<RecordBatch>> + Send + Sync>;

/// One partition computed on first read.
struct Deferred {
    schema: SchemaRef,
    compute: Compute,
}

impl std::fmt::Debug for Deferred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deferred")
            .field("schema", &self.schema)
            .finish()
    }
}

impl PartitionStream for Deferred {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let compute = Arc::clone(&self.compute);
        let stream = futures::stream::once(async move { compute().await });
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            stream,
        ))
    }
}

/// `series_points`' shape: every series apart, summed, in buckets of its `step_seconds`.
fn series_shape(exprs: &[Expr]) -> Result<SeriesShape> {
    let Some(step) = number_arg(exprs, 3, "series_points: step_seconds")? else {
        return plan_err!("series_points(selector, start, end, step_seconds) needs a step");
    };
    if !step.is_finite() || step < 0.001 {
        return plan_err!("series_points: step_seconds must be at least 0.001, got {step}");
    }
    Ok(SeriesShape {
        step_ms: (step * 1000.0).round() as i64,
        group_by: Vec::new(),
        by_series: true,
        average: false,
        limit: None,
    })
}

fn deferred(schema: SchemaRef, compute: Compute) -> Result<Arc<dyn TableProvider>> {
    let partition = Arc::new(Deferred {
        schema: Arc::clone(&schema),
        compute,
    });
    Ok(Arc::new(StreamingTable::try_new(schema, vec![partition])?))
}

fn external(e: crate::Error) -> DataFusionError {
    e.into()
}

/// Which table function, bound to the query service and the tenant of the session.
#[derive(Debug, Clone, Copy)]
pub enum TableFunctionKind {
    Flamegraph,
    TopFunctions,
    SeriesPoints,
}

#[derive(Debug)]
pub struct ProfileTableFunction {
    kind: TableFunctionKind,
    service: Arc<QueryService>,
    tenant: TenantId,
}

impl ProfileTableFunction {
    pub fn new(kind: TableFunctionKind, service: Arc<QueryService>, tenant: TenantId) -> Self {
        ProfileTableFunction {
            kind,
            service,
            tenant,
        }
    }

    /// What `EXPLAIN` shows of a call: the function, selector and range, and the path the
    /// query service takes (rollups or samples, decided when planned): that of `SelectSeries`
    /// shaped as `series` when given, else that of a flame graph.
    fn describe(
        &self,
        name: &'static str,
        selection: &Arc<ProfileSelection>,
        series: Option<Arc<SeriesShape>>,
    ) -> Describe {
        let call = format!(
            "{name}, selector={}, range=[{}, {}] ms",
            selection.selector, selection.range.start, selection.range.end
        );
        let (service, tenant) = (Arc::clone(&self.service), self.tenant.clone());
        let selection = Arc::clone(selection);
        Arc::new(move || {
            let (service, tenant, selection, series, call) = (
                Arc::clone(&service),
                tenant.clone(),
                Arc::clone(&selection),
                series.clone(),
                call.clone(),
            );
            Box::pin(async move {
                let path = match series {
                    Some(shape) => service.series_path(&tenant, &selection, &shape).await,
                    None => service.flamegraph_path(&tenant, &selection).await,
                };
                Ok(format!("{call}, path={}", path.map_err(external)?))
            })
        })
    }

    pub fn name(kind: TableFunctionKind) -> &'static str {
        match kind {
            TableFunctionKind::Flamegraph => "flamegraph_table",
            TableFunctionKind::TopFunctions => "top_functions",
            TableFunctionKind::SeriesPoints => "series_points",
        }
    }
}

impl TableFunctionImpl for ProfileTableFunction {
    fn call_with_args(&self, args: TableFunctionArgs<'_, '_>) -> Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        let name = Self::name(self.kind);
        let selection = Arc::new(selection(exprs, name)?);
        let (service, tenant) = (Arc::clone(&self.service), self.tenant.clone());
        // The series' shape, for EXPLAIN's path of series_points.
        let mut series = None;
        let explained = Arc::clone(&selection);
        let table = match self.kind {
            TableFunctionKind::Flamegraph => {
                let max_nodes =
                    number_arg(exprs, 3, "flamegraph_table: max_nodes")?.map(|n| n as i64);
                let max_nodes = self
                    .service
                    .max_nodes(max_nodes)
                    .map_err(|e| DataFusionError::Plan(e.to_string()))?;
                let schema = Arc::new(Schema::new(vec![
                    Field::new("node_id", DataType::UInt32, false),
                    Field::new("parent_id", DataType::UInt32, true),
                    Field::new("depth", DataType::UInt32, false),
                    Field::new("name", DataType::Utf8, false),
                    Field::new("self", DataType::Int64, false),
                    Field::new("total", DataType::Int64, false),
                ]));
                let out = Arc::clone(&schema);
                deferred(
                    schema,
                    Arc::new(move || {
                        let (service, tenant, selection, out) = (
                            Arc::clone(&service),
                            tenant.clone(),
                            Arc::clone(&selection),
                            Arc::clone(&out),
                        );
                        Box::pin(async move {
                            let tree = service
                                .merge_tree(&tenant, &selection, None)
                                .await
                                .map_err(external)?;
                            let nodes = flame_nodes(&tree, max_nodes);
                            let columns: Vec<ArrayRef> = vec![
                                Arc::new(UInt32Array::from_iter_values(nodes.iter().map(|n| n.id))),
                                Arc::new(nodes.iter().map(|n| n.parent).collect::<UInt32Array>()),
                                Arc::new(UInt32Array::from_iter_values(
                                    nodes.iter().map(|n| n.depth),
                                )),
                                Arc::new(StringArray::from_iter_values(
                                    nodes.iter().map(|n| n.name.as_str()),
                                )),
                                Arc::new(Int64Array::from_iter_values(
                                    nodes.iter().map(|n| n.self_value),
                                )),
                                Arc::new(Int64Array::from_iter_values(
                                    nodes.iter().map(|n| n.total),
                                )),
                            ];
                            Ok(RecordBatch::try_new(out, columns)?)
                        })
                    }),
                )
            }
            TableFunctionKind::TopFunctions => {
                let limit =
                    number_arg(exprs, 3, "top_functions: limit")?.map(|n| n.max(0.0) as usize);
                let schema = Arc::new(Schema::new(vec![
                    Field::new("function", DataType::Utf8, false),
                    Field::new("self", DataType::Int64, false),
                    Field::new("total", DataType::Int64, false),
                ]));
                let out = Arc::clone(&schema);
                deferred(
                    schema,
                    Arc::new(move || {
                        let (service, tenant, selection, out) = (
                            Arc::clone(&service),
                            tenant.clone(),
                            Arc::clone(&selection),
                            Arc::clone(&out),
                        );
                        Box::pin(async move {
                            let tree = service
                                .merge_tree(&tenant, &selection, None)
                                .await
                                .map_err(external)?;
                            let mut rows = function_totals(&tree);
                            if let Some(limit) = limit {
                                rows.truncate(limit);
                            }
                            let columns: Vec<ArrayRef> = vec![
                                Arc::new(StringArray::from_iter_values(
                                    rows.iter().map(|r| r.0.as_str()),
                                )),
                                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
                                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
                            ];
                            Ok(RecordBatch::try_new(out, columns)?)
                        })
                    }),
                )
            }
            TableFunctionKind::SeriesPoints => {
                let shape = Arc::new(series_shape(exprs)?);
                series = Some(Arc::clone(&shape));
                let schema = Arc::new(Schema::new(vec![
                    Field::new("labels", labels_type(), false),
                    Field::new("time", time_type(), false),
                    Field::new("value", DataType::Float64, false),
                ]));
                let out = Arc::clone(&schema);
                deferred(
                    schema,
                    Arc::new(move || {
                        let (service, tenant, selection, shape, out) = (
                            Arc::clone(&service),
                            tenant.clone(),
                            Arc::clone(&selection),
                            Arc::clone(&shape),
                            Arc::clone(&out),
                        );
                        Box::pin(async move {
                            let series = service
                                .select_series(&tenant, &selection, &shape)
                                .await
                                .map_err(external)?;
                            let mut labels =
                                MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
                            let mut times = Vec::new();
                            let mut values = Vec::new();
                            for s in &series {
                                for &(t, v) in &s.points {
                                    for l in s.labels.iter() {
                                        labels.keys().append_value(&l.name);
                                        labels.values().append_value(&l.value);
                                    }
                                    labels.append(true)?;
                                    times.push(t * 1_000_000);
                                    values.push(v);
                                }
                            }
                            let columns: Vec<ArrayRef> = vec![
                                Arc::new(labels.finish()),
                                Arc::new(
                                    TimestampNanosecondArray::from(times).with_timezone("UTC"),
                                ),
                                Arc::new(Float64Array::from(values)),
                            ];
                            Ok(RecordBatch::try_new(out, columns)?)
                        })
                    }),
                )
            }
        }?;
        let describe = self.describe(name, &explained, series);
        Ok(Arc::new(ExplainedTable::new(table, describe)))
    }
}
