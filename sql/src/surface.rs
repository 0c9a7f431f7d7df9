//! The SQL surface: one DataFusion session per statement over one tenant's snapshot, with the
//! profile tables, Hearth's functions and the per-query memory bound. Transports (Flight SQL)
//! call [`QueryService::sql_schema`], [`QueryService::sql_stream`] and
//! [`QueryService::sql_tables`] and only translate. A querier running a stage of another
//! querier's query builds its session here too ([`QueryService::stage_state`]).

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ParamValues;
use datafusion::common::ScalarValue;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::execution::{FunctionRegistry, SendableRecordBatchStream};
use datafusion::prelude::{DataFrame, SessionContext};
use hearth_engine::model::TenantId;
use hearth_engine::schema::TableKind;
use hearth_engine::symbol_set::SymbolSet;
use hearth_engine::table::{BLOCKS_URL, TableSources, label_udf};

use crate::error::Result;
use crate::functions::{ProfileTableFunction, TableFunctionKind};
use crate::service::QueryService;
use crate::stages::profile_functions;

/// A planned statement: its result schema and its parameters (`$1`, `$2`, ...).
#[derive(Debug, Clone)]
pub struct PlannedSql {
    pub schema: SchemaRef,
    pub parameters: SchemaRef,
}

impl QueryService {
    /// A SQL session for one tenant: tables, `label`, `flamegraph`, `pprof`, `stack_frames`,
    /// `flamegraph_table`, `top_functions`, `series_points`.
    pub async fn sql_session(self: &Arc<Self>, tenant: &TenantId) -> Result<SessionContext> {
        let sources = self.sources(tenant).await?;
        let ctx = self.session_over(sources.clone())?;
        let (aggregates, scalars) = profile_functions(self.lazy_symbols(&sources));
        for aggregate in aggregates {
            ctx.register_udaf(aggregate.as_ref().clone());
        }
        for scalar in scalars {
            ctx.register_udf(scalar.as_ref().clone());
        }
        for kind in [
            TableFunctionKind::Flamegraph,
            TableFunctionKind::TopFunctions,
            TableFunctionKind::SeriesPoints,
        ] {
            ctx.register_udtf(
                ProfileTableFunction::name(kind),
                Arc::new(ProfileTableFunction::new(
                    kind,
                    Arc::clone(self),
                    tenant.clone(),
                )),
            );
        }
        Ok(ctx)
    }

    async fn sql_frame(self: &Arc<Self>, tenant: &TenantId, sql: &str) -> Result<DataFrame> {
        let ctx = self.sql_session(tenant).await?;
        Ok(ctx.sql(sql).await?)
    }

    /// Plans a statement: its result schema and parameter types.
    pub async fn sql_schema(self: &Arc<Self>, tenant: &TenantId, sql: &str) -> Result<PlannedSql> {
        let frame = self.sql_frame(tenant, sql).await?;
        let mut parameters: Vec<(String, DataType)> = frame
            .logical_plan()
            .get_parameter_types()?
            .into_iter()
            .map(|(name, t)| (name, t.unwrap_or(DataType::Utf8)))
            .collect();
        parameters.sort_by_key(|(name, _)| {
            name.trim_start_matches('$')
                .parse::<usize>()
                .unwrap_or(usize::MAX)
        });
        let parameters = Schema::new(
            parameters
                .into_iter()
                .map(|(name, t)| Field::new(name, t, true))
                .collect::<Vec<_>>(),
        );
        Ok(PlannedSql {
            schema: Arc::new(frame.schema().as_arrow().clone()),
            parameters: Arc::new(parameters),
        })
    }

    /// Runs a statement with its parameter values (in `$1, $2, ...` order).
    pub async fn sql_stream(
        self: &Arc<Self>,
        tenant: &TenantId,
        sql: &str,
        parameters: Vec<ScalarValue>,
    ) -> Result<SendableRecordBatchStream> {
        let mut frame = self.sql_frame(tenant, sql).await?;
        if !parameters.is_empty() {
            frame = frame.with_param_values(ParamValues::List(
                parameters.into_iter().map(Into::into).collect(),
            ))?;
        }
        Ok(frame.execute_stream().await?)
    }

    /// The tables a tenant can query, with their schemas.
    pub fn sql_tables(&self) -> Vec<(&'static str, SchemaRef)> {
        TableKind::ALL
            .iter()
            .map(|kind| (kind.name(), kind.table_schema()))
            .collect()
    }
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
