//! Where a checked request goes: the local engine (`ProfileSink` for [`Engine`]), or, in a
//! cluster, the distributor ([`crate::Distributor`]).

use async_trait::async_trait;
use hearth_engine::model::TenantId;
use hearth_engine::{Engine, ProfileBatch};

use crate::error::Result;

/// What one request stored.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PushOutcome {
    pub profiles: usize,
    pub samples: usize,
}

/// Stores checked batches.
#[async_trait]
pub trait ProfileSink: Send + Sync {
    async fn store(&self, tenant: &TenantId, batches: Vec<ProfileBatch>) -> Result<PushOutcome>;
}

#[async_trait]
impl ProfileSink for Engine {
    async fn store(&self, tenant: &TenantId, batches: Vec<ProfileBatch>) -> Result<PushOutcome> {
        let mut outcome = PushOutcome::default();
        for batch in batches {
            let stats = self.append(tenant, batch).await?;
            outcome.profiles += stats.profiles;
            outcome.samples += stats.samples;
        }
        Ok(outcome)
    }
}
