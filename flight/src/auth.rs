//! Who a Flight request reads as: a bearer token's tenant, else `x-scope-orgid` when
//! multi-tenancy is on, else `anonymous`.

use std::collections::HashMap;

use hearth_engine::model::TenantId;
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::config::FlightConfig;
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct Authenticator {
    multitenancy_enabled: bool,
    tokens: HashMap<String, TenantId>,
}

impl Authenticator {
    pub fn new(config: &FlightConfig, multitenancy_enabled: bool) -> Result<Self> {
        let tokens = config
            .tokens
            .iter()
            .map(|(token, tenant)| {
                TenantId::new(tenant)
                    .map(|t| (token.clone(), t))
                    .map_err(|source| Error::TokenTenant {
                        tenant: tenant.clone(),
                        source,
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Authenticator {
            multitenancy_enabled,
            tokens,
        })
    }

    /// Whether requests must carry a bearer token.
    pub fn requires_token(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// The tenant of a token, for the handshake.
    pub fn token_tenant(&self, token: &str) -> Option<&TenantId> {
        self.tokens.get(token)
    }

    pub fn tenant(&self, metadata: &MetadataMap) -> Result<TenantId, Status> {
        if self.requires_token() {
            let header = metadata
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| {
                    Status::unauthenticated("authorization: Bearer <token> is required")
                })?;
            let token = header
                .strip_prefix("Bearer ")
                .or_else(|| header.strip_prefix("bearer "))
                .ok_or_else(|| Status::unauthenticated("authorization must be a Bearer token"))?;
            return self
                .tokens
                .get(token.trim())
                .cloned()
                .ok_or_else(|| Status::unauthenticated("unknown bearer token"));
        }
        if !self.multitenancy_enabled {
            return Ok(TenantId::anonymous());
        }
        let value = metadata
            .get("x-scope-orgid")
            .ok_or_else(|| {
                Status::unauthenticated("no org id: x-scope-orgid metadata is required")
            })?
            .to_str()
            .map_err(|_| Status::invalid_argument("x-scope-orgid is not valid text"))?;
        TenantId::new(value.trim()).map_err(|e| Status::invalid_argument(e.to_string()))
    }
}
