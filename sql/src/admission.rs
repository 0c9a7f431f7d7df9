//! Per-tenant admission of queries: how many a tenant may have outstanding (queued or running;
//! `query.max_outstanding_requests_per_tenant`, refused with `resource_exhausted`, HTTP 429,
//! past it), and, for statements that do not go through the scheduler's queue (Flight SQL),
//! how many may run at once (the tenant's `max_query_parallelism`; later ones wait their turn).
//! A process shares one [`Admission`] between its query-frontend and its Flight SQL service, so
//! both count against the same limits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hearth_engine::ErrorKind;
use hearth_engine::limits::LimitsSource;
use hearth_engine::model::TenantId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, Result};

#[derive(Debug)]
pub struct Admission {
    max_outstanding: usize,
    limits: Arc<dyn LimitsSource>,
    tenants: Arc<Mutex<HashMap<TenantId, TenantState>>>,
}

#[derive(Debug, Default)]
struct TenantState {
    outstanding: usize,
    /// Running statements: the parallelism it was made for, and its permits.
    running: Option<(usize, Arc<Semaphore>)>,
}

/// One admitted query, counted against its tenant until dropped.
#[derive(Debug)]
pub struct Admitted {
    tenants: Arc<Mutex<HashMap<TenantId, TenantState>>>,
    tenant: TenantId,
    _running: Option<OwnedSemaphorePermit>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut tenants = self.tenants.lock().expect("admission state");
        if let Some(state) = tenants.get_mut(&self.tenant) {
            state.outstanding -= 1;
            if state.outstanding == 0 {
                tenants.remove(&self.tenant);
            }
        }
    }
}

impl Admission {
    /// `max_outstanding` 0: no limit.
    pub fn new(max_outstanding: usize, limits: Arc<dyn LimitsSource>) -> Self {
        Admission {
            max_outstanding,
            limits,
            tenants: Arc::default(),
        }
    }

    /// Counts a query of `tenant`, or refuses it when the tenant already has
    /// `max_outstanding_requests_per_tenant` queued or running.
    pub fn admit(&self, tenant: &TenantId) -> Result<Admitted> {
        self.count(tenant).map(|_| self.admitted(tenant))
    }

    /// Counts a statement of `tenant` as [`admit`](Self::admit) does, then waits until fewer
    /// than the tenant's `max_query_parallelism` statements run (0: no limit). Dropping the
    /// future while it waits gives the place back.
    pub async fn admit_statement(&self, tenant: &TenantId) -> Result<Admitted> {
        let running = self.count(tenant)?;
        // Counted from here: dropped while waiting, the guard uncounts it.
        let mut admitted = self.admitted(tenant);
        if let Some(running) = running {
            let permit = running
                .acquire_owned()
                .await
                .map_err(|_| Error::internal("the statement semaphore closed while waiting"))?;
            admitted._running = Some(permit);
        }
        Ok(admitted)
    }

    /// Counts one more outstanding query; returns the tenant's statement semaphore.
    fn count(&self, tenant: &TenantId) -> Result<Option<Arc<Semaphore>>> {
        let max = self.max_outstanding;
        let parallelism = self.limits.limits(tenant).max_query_parallelism;
        let mut tenants = self.tenants.lock().expect("admission state");
        let state = tenants.entry(tenant.clone()).or_default();
        if max > 0 && state.outstanding >= max {
            return Err(Error::Invalid {
                kind: ErrorKind::ResourceExhausted,
                message: format!(
                    "too many outstanding requests: tenant {tenant} has {max} queries queued or running (query.max_outstanding_requests_per_tenant); retry later"
                ),
            });
        }
        state.outstanding += 1;
        if parallelism == 0 {
            return Ok(None);
        }
        // A changed limit (runtime overrides) takes effect for statements admitted after it.
        let running = match &state.running {
            Some((made_for, semaphore)) if *made_for == parallelism => Arc::clone(semaphore),
            _ => {
                let semaphore = Arc::new(Semaphore::new(parallelism));
                state.running = Some((parallelism, Arc::clone(&semaphore)));
                semaphore
            }
        };
        Ok(Some(running))
    }

    fn admitted(&self, tenant: &TenantId) -> Admitted {
        Admitted {
            tenants: Arc::clone(&self.tenants),
            tenant: tenant.clone(),
            _running: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hearth_engine::limits::{FixedLimits, Limits};

    use super::*;

    fn admission(max_outstanding: usize, parallelism: usize) -> Admission {
        let limits = Limits {
            max_query_parallelism: parallelism,
            ..Limits::default()
        };
        Admission::new(max_outstanding, FixedLimits::shared(limits))
    }

    #[test]
    fn past_the_outstanding_limit_a_tenant_is_refused_and_others_are_not() {
        let admission = admission(2, 0);
        let (a, b) = (TenantId::new("a").unwrap(), TenantId::new("b").unwrap());
        let first = admission.admit(&a).unwrap();
        let _second = admission.admit(&a).unwrap();
        let refused = admission.admit(&a).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::ResourceExhausted);
        assert!(
            refused
                .to_string()
                .contains("query.max_outstanding_requests_per_tenant"),
            "{refused}"
        );
        admission.admit(&b).expect("another tenant");
        drop(first);
        admission.admit(&a).expect("a place was given back");
    }

    #[tokio::test]
    async fn statements_past_the_parallelism_wait_and_a_dropped_wait_gives_its_place_back() {
        let admission = admission(3, 1);
        let a = TenantId::new("a").unwrap();
        let running = admission.admit_statement(&a).await.unwrap();
        let waiting =
            tokio::time::timeout(Duration::from_millis(50), admission.admit_statement(&a));
        assert!(waiting.await.is_err(), "a second statement waits");
        // The abandoned wait was uncounted: two more fit under the outstanding limit of 3.
        let next = tokio::spawn({
            let admission = Arc::new(admission);
            let a = a.clone();
            async move {
                let admitted = admission.admit_statement(&a).await;
                (admission, admitted)
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!next.is_finished(), "waits for the running statement");
        drop(running);
        let (admission, admitted) = next.await.unwrap();
        admitted.expect("runs once the first is done");
        assert!(admission.admit(&a).is_ok());
    }
}
