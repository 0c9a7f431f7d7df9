//! `ProfileTypes`, `LabelNames`, `LabelValues`, `Series`.

use axum::response::Response;
use hearth_proto::querier::v1 as q;
use hearth_proto::types::v1 as t;
use hearth_sql::MillisRange;

use super::Request;
use crate::connect::ConnectError;

impl Request<'_> {
    pub(super) async fn profile_types(&self) -> Result<Response, ConnectError> {
        let req: q::ProfileTypesRequest = self.decode()?;
        let range = MillisRange::new(req.start, req.end)?;
        let types = self.state.query.profile_types(&self.tenant, range).await?;
        self.respond(&q::ProfileTypesResponse {
            profile_types: types
                .into_iter()
                .map(|p| t::ProfileType {
                    id: p.id(),
                    name: p.name,
                    sample_type: p.sample_type,
                    sample_unit: p.sample_unit,
                    period_type: p.period_type,
                    period_unit: p.period_unit,
                })
                .collect(),
        })
    }

    pub(super) async fn label_names(&self) -> Result<Response, ConnectError> {
        let req: t::LabelNamesRequest = self.decode()?;
        let range = MillisRange::new(req.start, req.end)?;
        let names = self
            .state
            .query
            .label_names(&self.tenant, &req.matchers, range)
            .await?;
        self.respond(&t::LabelNamesResponse { names })
    }

    pub(super) async fn label_values(&self) -> Result<Response, ConnectError> {
        let req: t::LabelValuesRequest = self.decode()?;
        let range = MillisRange::new(req.start, req.end)?;
        let names = self
            .state
            .query
            .label_values(&self.tenant, &req.name, &req.matchers, range)
            .await?;
        self.respond(&t::LabelValuesResponse { names })
    }

    pub(super) async fn series(&self) -> Result<Response, ConnectError> {
        let req: q::SeriesRequest = self.decode()?;
        let range = MillisRange::new(req.start, req.end)?;
        let sets = self
            .state
            .query
            .series(&self.tenant, &req.matchers, &req.label_names, range)
            .await?;
        self.respond(&q::SeriesResponse {
            labels_set: sets
                .into_iter()
                .map(|labels| t::Labels {
                    labels: labels
                        .iter()
                        .map(|l| t::LabelPair {
                            name: l.name.clone(),
                            value: l.value.clone(),
                        })
                        .collect(),
                })
                .collect(),
        })
    }
}
