//! The seam for spreading a query's plan stages over queriers. [`StageSpreading`] gives a
//! query's session the planner that cuts the plan into stages and sends the block-scan and
//! partial-aggregate stages to other queriers (implemented with `datafusion-distributed` over
//! Flight in `hearth-flight`); [`QueryService::stage_state`] is the session a querier runs a
//! stage it was sent in: the tenant's functions, memory bound and blocks. Planning stays here;
//! what crosses the network does not.

use std::fmt;
use std::sync::Arc;

use datafusion::execution::FunctionRegistry;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::{AggregateUDF, ScalarUDF};
use hearth_engine::flamegraph::flamegraph_udaf;
use hearth_engine::model::TenantId;
use hearth_engine::pprof_merge::pprof_udaf;
use hearth_engine::symbol_set::SymbolSet;
use hearth_engine::table::{BLOCKS_URL, TableSources, label_udf};

use crate::error::Result;
use crate::functions::stack_frames_udf;
use crate::service::QueryService;

/// How a cluster querier's sessions spread their stages over the queriers.
pub trait StageSpreading: Send + Sync + fmt::Debug {
    /// `state` (a session of `tenant`'s query) with the distributed planner and what it needs.
    fn coordinator(
        &self,
        tenant: &TenantId,
        state: SessionStateBuilder,
    ) -> datafusion::error::Result<SessionStateBuilder>;
}

/// The functions over profiles every session has, reading block and head symbols through
/// `symbols`: `flamegraph`, `pprof` (aggregates) and `stack_frames`.
pub(crate) fn profile_functions(
    symbols: Arc<SymbolSet>,
) -> (Vec<Arc<AggregateUDF>>, Vec<Arc<ScalarUDF>>) {
    (
        vec![
            Arc::new(flamegraph_udaf(Arc::clone(&symbols))),
            Arc::new(pprof_udaf(Arc::clone(&symbols))),
        ],
        vec![Arc::new(stack_frames_udf(symbols))],
    )
}

impl QueryService {
    /// The symbols of `sources`, loaded as stacks need them.
    pub(crate) fn lazy_symbols(&self, sources: &TableSources) -> Arc<SymbolSet> {
        Arc::new(SymbolSet::lazy(
            Arc::clone(self.source().block_cache()),
            Arc::clone(&sources.store),
            Arc::clone(&sources.snapshot),
        ))
    }

    /// The session a querier runs a stage of `tenant`'s query in, which another querier planned:
    /// `state` (the stage's configuration) with this querier's view of the tenant's blocks and
    /// heads behind the functions, the tenant's memory bound and the bucket.
    pub async fn stage_state(
        &self,
        tenant: &TenantId,
        state: SessionStateBuilder,
    ) -> Result<SessionState> {
        self.metrics().stage_task();
        let sources = self.sources(tenant).await?;
        let runtime = self.runtime(tenant)?;
        runtime.register_object_store(BLOCKS_URL.as_ref(), Arc::clone(&sources.store));
        let (aggregates, scalars) = profile_functions(self.lazy_symbols(&sources));
        let mut state = state.with_runtime_env(runtime).build();
        for aggregate in aggregates {
            state.register_udaf(aggregate)?;
        }
        for scalar in scalars.into_iter().chain([label_udf()]) {
            state.register_udf(scalar)?;
        }
        Ok(state)
    }
}
