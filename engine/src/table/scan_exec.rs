//! `ProfileScanExec`: the root of every provider scan. It passes rows through unchanged; it
//! exists so `EXPLAIN` shows what `scan()` pruned (heads and blocks kept out of those in the
//! snapshot, the time range, the label matchers and series ids it pruned by).

use std::fmt;
use std::sync::Arc;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};

use crate::model::TimeRange;

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
}

impl ProfileScanExec {
    pub fn new(summary: ScanSummary, input: Arc<dyn ExecutionPlan>) -> Self {
        ProfileScanExec { summary, input }
    }

    pub fn summary(&self) -> &ScanSummary {
        &self.summary
    }
}

impl DisplayAs for ProfileScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "ProfileScanExec: {}", self.summary)
    }
}

impl ExecutionPlan for ProfileScanExec {
    fn name(&self) -> &str {
        "ProfileScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
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
        let input = children.remove(0);
        Ok(Arc::new(ProfileScanExec::new(self.summary.clone(), input)))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }
}
