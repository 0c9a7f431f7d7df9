//! `ProfileScanExec`: the root of every provider scan. `EXPLAIN` shows what `scan()` pruned
//! (heads and blocks kept out of those in the snapshot, the time range, the label matchers and
//! series ids it pruned by). For `samples` and `profiles` it also applies the time and series
//! filters it took as exact ([`RowFilter`]), once per run of equal (series, time), and then
//! drops the columns it read only for that.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use arrow::array::{AsArray, BooleanArray, BooleanBufferBuilder, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{TimestampNanosecondType, UInt16Type, UInt64Type};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;

use crate::dedupe::KeepSets;
use crate::model::TimeRange;

/// Time bounds and a series set applied to rows sorted by (series, time); then a projection.
#[derive(Debug, Clone)]
pub struct RowFilter {
    pub time: TimeRange,
    pub series: Option<Arc<HashSet<u64>>>,
    /// Column indices of `series_id` and `time` in the input.
    pub series_column: usize,
    pub time_column: usize,
    /// Replica deduplication: which (series, time) each source contributes, and the column
    /// of `source`.
    pub keep: Option<(Arc<KeepSets>, usize)>,
    /// Input columns to output, when the filter columns were read only for the filter.
    pub projection: Option<Vec<usize>>,
}

impl RowFilter {
    fn apply(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let series = batch
            .column(self.series_column)
            .as_primitive::<UInt64Type>()
            .values();
        let time = batch
            .column(self.time_column)
            .as_primitive::<TimestampNanosecondType>()
            .values();
        let sources = self.keep.as_ref().map(|(sets, column)| {
            let dictionary = batch.column(*column).as_dictionary::<UInt16Type>();
            (
                sets,
                dictionary.keys().values().clone(),
                Arc::clone(dictionary.values()),
            )
        });
        let source_key = |row: usize| sources.as_ref().map_or(0, |(_, keys, _)| keys[row]);
        let n = batch.num_rows();
        let mut keep = BooleanBufferBuilder::new(n);
        let (mut kept, mut start) = (0, 0);
        while start < n {
            let (s, t, k) = (series[start], time[start], source_key(start));
            let mut end = start + 1;
            while end < n && series[end] == s && time[end] == t && source_key(end) == k {
                end += 1;
            }
            let matches = self.time.contains(t)
                && self.series.as_ref().is_none_or(|ids| ids.contains(&s))
                && sources.as_ref().is_none_or(|(sets, _, names)| {
                    sets.keeps(names.as_string::<i32>().value(k as usize), s, t)
                });
            keep.append_n(end - start, matches);
            kept += if matches { end - start } else { 0 };
            start = end;
        }
        let batch = match kept {
            k if k == n => batch,
            _ => filter_record_batch(&batch, &BooleanArray::new(keep.finish(), None))?,
        };
        Ok(match &self.projection {
            Some(columns) => batch.project(columns)?,
            None => batch,
        })
    }
}

/// What one scan kept.
#[derive(Debug, Clone)]
pub struct ScanSummary {
    pub table: &'static str,
    pub heads: (usize, usize),
    pub blocks: (usize, usize),
    pub time: TimeRange,
    pub matchers: Vec<String>,
    pub series_ids: Option<usize>,
}

impl fmt::Display for ScanSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "table={}, heads={}/{}, blocks={}/{}",
            self.table, self.heads.0, self.heads.1, self.blocks.0, self.blocks.1
        )?;
        if self.time != TimeRange::ALL {
            write!(f, ", time=[{}, {})", self.time.start, self.time.end)?;
        }
        if !self.matchers.is_empty() {
            write!(f, ", matchers={{{}}}", self.matchers.join(", "))?;
        }
        if let Some(n) = self.series_ids {
            write!(f, ", series_ids={n}")?;
        }
        Ok(())
    }
}

#[derive(Debug)]
pub struct ProfileScanExec {
    summary: ScanSummary,
    input: Arc<dyn ExecutionPlan>,
    filter: Option<RowFilter>,
    properties: Arc<PlanProperties>,
}

impl ProfileScanExec {
    pub fn new(
        summary: ScanSummary,
        input: Arc<dyn ExecutionPlan>,
        filter: Option<RowFilter>,
    ) -> Result<Self> {
        let properties = match &filter {
            None => Arc::clone(input.properties()),
            Some(f) => Arc::new(PlanProperties::new(
                EquivalenceProperties::new(match &f.projection {
                    Some(columns) => Arc::new(input.schema().project(columns)?),
                    None => input.schema(),
                }),
                input.properties().output_partitioning().clone(),
                EmissionType::Incremental,
                Boundedness::Bounded,
            )),
        };
        Ok(ProfileScanExec {
            summary,
            input,
            filter,
            properties,
        })
    }

    pub fn summary(&self) -> &ScanSummary {
        &self.summary
    }

    pub fn input(&self) -> &Arc<dyn ExecutionPlan> {
        &self.input
    }

    pub fn filter(&self) -> Option<&RowFilter> {
        self.filter.as_ref()
    }
}

impl DisplayAs for ProfileScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProfileScanExec: {}", self.summary)?;
        if self.filter.is_some() {
            write!(f, ", rows filtered by time and series")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for ProfileScanExec {
    fn name(&self) -> &str {
        "ProfileScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // The new input may be partitioned differently (DataFusion splits memory sources).
        Ok(Arc::new(ProfileScanExec::new(
            self.summary.clone(),
            children.remove(0),
            self.filter.clone(),
        )?))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let Some(filter) = self.filter.clone() else {
            return Ok(input);
        };
        let schema = Arc::clone(self.properties.eq_properties.schema());
        let rows = input
            .map(move |batch| filter.apply(batch?))
            .filter(|batch| {
                futures::future::ready(batch.as_ref().map_or(true, |b| b.num_rows() > 0))
            });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, rows)))
    }
}
