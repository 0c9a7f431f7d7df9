//! hearth-ring: cluster membership and data placement. It depends on no crate of ours.
//!
//! In the cluster issue this crate wraps chitchat gossip (each node publishes its id, roles,
//! addresses, ring tokens and state: joining, active, leaving) and exposes only snapshots and a
//! change stream, never chitchat types. Today it holds what placement needs and what the single
//! binary already uses: the placement key of a profile and the instance states.

/// The lifecycle of a ring member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InstanceState {
    Joining,
    Active,
    Leaving,
}

/// The ring key of a profile: a hash of the tenant and the service, so one service's profiles,
/// and therefore its symbols, land on the same replicas.
pub fn placement_key(tenant: &str, service_name: &str) -> u64 {
    let mut hasher = xxhash_rust::xxh64::Xxh64::new(0);
    hasher.update(tenant.as_bytes());
    hasher.update(&[0xff]);
    hasher.update(service_name.as_bytes());
    hasher.digest()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_depends_on_tenant_and_service() {
        let key = placement_key("t", "api");
        assert_eq!(key, placement_key("t", "api"));
        assert_ne!(key, placement_key("u", "api"));
        assert_ne!(key, placement_key("t", "web"));
        // The separator keeps ("ab", "c") apart from ("a", "bc").
        assert_ne!(placement_key("ab", "c"), placement_key("a", "bc"));
    }
}
