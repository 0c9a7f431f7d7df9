//! What a table function's plan shows in `EXPLAIN`: the function, its selector and range, and
//! the path the query service takes on the tenant's data (for `flamegraph_table`, rollups or
//! samples, and why), decided when the statement is planned. [`ExplainedTable`] wraps the
//! function's table and roots its scan in a pass-through [`ProfileQueryExec`] carrying that text.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::TableType;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::future::BoxFuture;

/// Computes the text `EXPLAIN` shows, when the statement is planned.
pub(crate) type Describe = Arc<dyn Fn() -> BoxFuture<'static, Result<String>> + Send + Sync>;

/// A table function's table, explained.
pub(crate) struct ExplainedTable {
    inner: Arc<dyn TableProvider>,
    describe: Describe,
}

impl ExplainedTable {
    pub(crate) fn new(inner: Arc<dyn TableProvider>, describe: Describe) -> Self {
        ExplainedTable { inner, describe }
    }
}

impl fmt::Debug for ExplainedTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExplainedTable")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl TableProvider for ExplainedTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = self.inner.scan(state, projection, filters, limit).await?;
        let description = (self.describe)().await?;
        Ok(Arc::new(ProfileQueryExec { description, input }))
    }
}

/// Passes its input through; shows what the query service will do.
#[derive(Debug)]
pub(crate) struct ProfileQueryExec {
    description: String,
    input: Arc<dyn ExecutionPlan>,
}

impl DisplayAs for ProfileQueryExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProfileQueryExec: {}", self.description)
    }
}

impl ExecutionPlan for ProfileQueryExec {
    fn name(&self) -> &str {
        "ProfileQueryExec"
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
        Ok(Arc::new(ProfileQueryExec {
            description: self.description.clone(),
            input: children.remove(0),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }
}
