//! The seam for spreading a query's plan stages over queriers. [`StageSpreading`] gives a
//! query's session the planner that cuts the plan into stages and sends the block-scan and
//! partial-aggregate stages to other queriers (implemented with `datafusion-distributed` over
//! Flight in `hearth-flight`); `QueryService::stage_state` (in [`crate::surface`]) is the
//! session a querier runs a stage it was sent in: the tenant's functions, memory bound and
//! blocks. Planning stays here; what crosses the network does not.

use std::fmt;
use std::sync::Arc;

use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF};
use hearth_engine::flamegraph::flamegraph_udaf;
use hearth_engine::model::TenantId;
use hearth_engine::pprof_merge::pprof_udaf;
use hearth_engine::symbol_set::SymbolSet;

use crate::functions::stack_frames_udf;

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
