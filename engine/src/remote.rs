//! Heads held by other processes, read table by table.
//!
//! In a cluster a querier's snapshot holds blocks (read from the bucket) and [`RemoteHeads`]:
//! ingesters it asks for rows of one table at a time with a [`RemoteScan`] (time range, series
//! ids, services and label matchers pushed down). The transport lives elsewhere (Flight, in `hearth-flight`),
//! and so does the ingester's side of a scan (`hearth-sql`'s query service runs the same
//! provider over its heads). Pushed-down aggregates are the query layer's business and are not
//! in this crate.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::Result as DfResult;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, Partitioning, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use hearth_proto::hearth::cluster::v1 as wire;

use crate::error::{Error, ErrorKind, Result};
use crate::matcher::{LabelMatcher, MatchOp};
use crate::model::{TenantId, TimeRange};
use crate::schema::TableKind;

/// A request for rows of one table of one tenant's heads (on the wire, a
/// `hearth.cluster.v1.ScanRequest`).
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteScan {
    pub tenant: String,
    pub table: String,
    /// The columns to return, in this order (the table's `source` column included).
    pub columns: Vec<String>,
    /// Half-open time range in Unix nanoseconds; for `series`, series overlapping it.
    pub start: i64,
    pub end: i64,
    /// Only these series (by fingerprint), when set.
    pub series_ids: Option<Vec<u64>>,
    /// Only these services' rows of the symbol tables, when set.
    pub services: Option<Vec<String>>,
    /// Only series all of these match (series table). The asker filters again: this only
    /// spares rows.
    pub matchers: Vec<LabelMatcher>,
}

impl RemoteScan {
    /// A scan of `kind` returning the columns of `schema` (the table schema or a projection
    /// of it), over all time, every series and service.
    pub fn new(tenant: &TenantId, kind: TableKind, schema: &SchemaRef) -> Self {
        RemoteScan {
            tenant: tenant.to_string(),
            table: kind.name().to_string(),
            columns: schema.fields().iter().map(|f| f.name().clone()).collect(),
            start: TimeRange::ALL.start,
            end: TimeRange::ALL.end,
            series_ids: None,
            services: None,
            matchers: Vec::new(),
        }
    }

    /// The table, the indices of the requested columns in its schema, and the schema they
    /// make; an unknown table or column is an error naming it.
    pub fn projection(&self) -> Result<(TableKind, Vec<usize>, SchemaRef)> {
        let kind = self.kind()?;
        let table_schema = kind.table_schema();
        let projection = self
            .columns
            .iter()
            .map(|c| {
                table_schema.index_of(c).map_err(|_| {
                    Error::invalid(
                        ErrorKind::InvalidArgument,
                        format!("table {} has no column {c:?}", kind.name()),
                    )
                })
            })
            .collect::<Result<Vec<usize>>>()?;
        let schema = Arc::new(table_schema.project(&projection)?);
        Ok((kind, projection, schema))
    }

    pub fn kind(&self) -> Result<TableKind> {
        TableKind::ALL
            .into_iter()
            .find(|k| k.name() == self.table)
            .ok_or_else(|| {
                Error::invalid(
                    ErrorKind::InvalidArgument,
                    format!("unknown table {:?}", self.table),
                )
            })
    }

    pub fn time(&self) -> TimeRange {
        TimeRange::new(self.start, self.end)
    }
}

impl From<RemoteScan> for wire::ScanRequest {
    fn from(scan: RemoteScan) -> Self {
        wire::ScanRequest {
            tenant: scan.tenant,
            table: scan.table,
            columns: scan.columns,
            start: scan.start,
            end: scan.end,
            series_ids: scan.series_ids.map(|ids| wire::SeriesIds { ids }),
            services: scan.services.map(|names| wire::Services { names }),
            matchers: scan
                .matchers
                .iter()
                .map(|m| wire::LabelMatcher {
                    name: m.name.clone(),
                    op: match m.op {
                        MatchOp::Equal => 0,
                        MatchOp::NotEqual => 1,
                        MatchOp::Regex => 2,
                        MatchOp::NotRegex => 3,
                    },
                    value: m.value.clone(),
                })
                .collect(),
        }
    }
}

impl TryFrom<wire::ScanRequest> for RemoteScan {
    type Error = Error;

    /// Table and columns are checked where they are used ([`RemoteScan::projection`]); a
    /// matcher with an unknown op or a bad regex is an error naming it.
    fn try_from(scan: wire::ScanRequest) -> Result<Self> {
        let matchers = scan
            .matchers
            .into_iter()
            .map(|m| {
                let op = match m.op {
                    0 => MatchOp::Equal,
                    1 => MatchOp::NotEqual,
                    2 => MatchOp::Regex,
                    3 => MatchOp::NotRegex,
                    other => {
                        return Err(Error::invalid(
                            ErrorKind::InvalidArgument,
                            format!("matcher on {:?}: unknown op {other}", m.name),
                        ));
                    }
                };
                LabelMatcher::new(m.name, op, m.value)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RemoteScan {
            tenant: scan.tenant,
            table: scan.table,
            columns: scan.columns,
            start: scan.start,
            end: scan.end,
            series_ids: scan.series_ids.map(|s| s.ids),
            services: scan.services.map(|s| s.names),
            matchers,
        })
    }
}

/// Heads in another process (an ingester), scanned table by table.
pub trait RemoteHeads: Send + Sync + fmt::Debug {
    /// The node holding the heads.
    fn node(&self) -> &str;
    /// The rows `request` asks for, with `schema` (the table's schema projected to
    /// `request.columns`). Errors surface in the stream.
    fn scan(&self, request: RemoteScan, schema: SchemaRef) -> SendableRecordBatchStream;
}

/// Remote heads as a DataFusion leaf: partition `i` is the rows `request` asks of node `i`.
/// A partition without a node is empty: a plan stage spread over several queriers sends the
/// remote heads to one of them and empty partitions to the others (the partition count of a
/// stage's variants must agree).
#[derive(Debug)]
pub struct RemoteScanExec {
    remotes: Vec<Option<Arc<dyn RemoteHeads>>>,
    request: RemoteScan,
    properties: Arc<PlanProperties>,
}

impl RemoteScanExec {
    pub fn new(remotes: Vec<Option<Arc<dyn RemoteHeads>>>, request: RemoteScan) -> Result<Self> {
        let (_, _, schema) = request.projection()?;
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(remotes.len().max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(RemoteScanExec {
            remotes,
            request,
            properties,
        })
    }

    /// The node each partition reads (`None`: an empty partition).
    pub fn remotes(&self) -> &[Option<Arc<dyn RemoteHeads>>] {
        &self.remotes
    }

    pub fn request(&self) -> &RemoteScan {
        &self.request
    }
}

impl DisplayAs for RemoteScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: Vec<&str> = self
            .remotes
            .iter()
            .map(|r| r.as_ref().map_or("-", |r| r.node()))
            .collect();
        write!(
            f,
            "RemoteScanExec: table={}, nodes=[{}]",
            self.request.table,
            nodes.join(", ")
        )
    }
}

impl ExecutionPlan for RemoteScanExec {
    fn name(&self) -> &str {
        "RemoteScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let schema = self.schema();
        Ok(match self.remotes.get(partition).and_then(Option::as_ref) {
            Some(remote) => remote.scan(self.request.clone(), schema),
            None => Box::pin(RecordBatchStreamAdapter::new(
                schema,
                futures::stream::empty(),
            )),
        })
    }
}
