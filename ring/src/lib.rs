//! hearth-ring: cluster membership and data placement. It depends on no crate of ours.
//!
//! It owns the names of the components a process runs ([`Role`]), where a profile goes: the
//! placement key (tenant and service, so a service's symbols stay together; a key that also
//! splits a service by series exists but is not wired yet) and the token ring ([`Ring`]) that turns a key into a replication set of
//! distinct, writable members, zone aware when asked; and membership over chitchat gossip
//! ([`Membership`]): each node publishes its id, roles, addresses, ring tokens and state
//! (joining, active, leaving), and the rest of the code sees [`Node`] snapshots and a change
//! stream, never chitchat types.

mod membership;
mod role;
mod tokens;

pub use membership::{Membership, MembershipConfig, MembershipError, Node, NodeInfo};
pub use role::{Role, UnknownRole};
pub use tokens::{Member, Ring, RingError, member_tokens, quorum};

/// The lifecycle of a ring member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InstanceState {
    Joining,
    Active,
    Leaving,
}

impl InstanceState {
    /// The name gossiped and shown in `/ring`.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Joining => "joining",
            InstanceState::Active => "active",
            InstanceState::Leaving => "leaving",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [
            InstanceState::Joining,
            InstanceState::Active,
            InstanceState::Leaving,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }
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

/// The ring key of one series of a service split into `shards` shards: the service's profiles
/// spread over `shards` replication sets, and each series stays on one. `shards <= 1` is
/// [`placement_key`]. The distributor uses it for tenants with `shards_per_service` above 1.
pub fn sharded_placement_key(tenant: &str, service_name: &str, series: u64, shards: u32) -> u64 {
    let key = placement_key(tenant, service_name);
    if shards <= 1 {
        return key;
    }
    let shard = series % u64::from(shards);
    xxhash_rust::xxh64::xxh64(&shard.to_le_bytes(), key)
}

/// Rendezvous hashing: which of `members` owns `key` (the highest hash of key and member id).
/// Every node computes the same answer from the same member list, and when a member leaves
/// only its keys move. The compactors share tenants this way.
pub fn rendezvous_owner<'a>(
    key: &str,
    members: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let score = |member: &str| {
        let mut hasher = xxhash_rust::xxh64::Xxh64::new(0);
        hasher.update(key.as_bytes());
        hasher.update(&[0xff]);
        hasher.update(member.as_bytes());
        hasher.digest()
    };
    members.into_iter().max_by_key(|m| (score(m), *m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendezvous_moves_only_the_leavers_keys() {
        let all = ["a", "b", "c"];
        let keys: Vec<String> = (0..200).map(|i| format!("tenant-{i}")).collect();
        let before: Vec<&str> = keys
            .iter()
            .map(|k| rendezvous_owner(k, all).unwrap())
            .collect();
        assert!(
            all.iter().all(|m| before.contains(m)),
            "every member owns some keys"
        );
        for (key, owner) in keys.iter().zip(&before) {
            let after = rendezvous_owner(key, ["a", "c"]).unwrap();
            if *owner != "b" {
                assert_eq!(after, *owner, "{key} moved though its owner stayed");
            }
        }
        assert_eq!(rendezvous_owner("t", []), None);
    }

    #[test]
    fn placement_depends_on_tenant_and_service() {
        let key = placement_key("t", "api");
        assert_eq!(key, placement_key("t", "api"));
        assert_ne!(key, placement_key("u", "api"));
        assert_ne!(key, placement_key("t", "web"));
        // The separator keeps ("ab", "c") apart from ("a", "bc").
        assert_ne!(placement_key("ab", "c"), placement_key("a", "bc"));
    }

    #[test]
    fn shards_split_a_service_by_series() {
        assert_eq!(
            sharded_placement_key("t", "api", 12345, 1),
            placement_key("t", "api")
        );
        let keys: std::collections::HashSet<u64> = (0..100)
            .map(|series| sharded_placement_key("t", "api", series, 4))
            .collect();
        assert_eq!(keys.len(), 4);
        assert_eq!(
            sharded_placement_key("t", "api", 9, 4),
            sharded_placement_key("t", "api", 13, 4)
        );
    }
}
