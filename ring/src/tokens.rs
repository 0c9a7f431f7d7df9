//! The token ring: each member owns tokens on a `u32` circle; a key belongs to the first tokens
//! clockwise from its hash, and its replication set is the first `rf` distinct members found
//! that way (in distinct zones when the ring is zone aware). Pure data: membership (gossip)
//! builds a [`Ring`] from a snapshot of members and asks it where keys go.

use std::collections::HashSet;

use crate::InstanceState;

/// One member of the ring, as a membership snapshot describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    /// Availability zone, for zone-aware replication; `None` when unknown.
    pub zone: Option<String>,
    pub state: InstanceState,
    /// Whether failure detection currently considers the member alive.
    pub alive: bool,
    pub tokens: Vec<u32>,
}

impl Member {
    /// Takes writes: active and alive. Joining and leaving members are passed over.
    pub fn writable(&self) -> bool {
        self.alive && self.state == InstanceState::Active
    }
}

/// `count` tokens for a member, spread over the circle and the same on every start, so a member
/// that restarts owns the keys it owned before.
pub fn member_tokens(id: &str, count: usize) -> Vec<u32> {
    let mut tokens: Vec<u32> = (0..count as u64)
        .map(|i| {
            let mut hasher = xxhash_rust::xxh64::Xxh64::new(i);
            hasher.update(id.as_bytes());
            (hasher.digest() >> 32) as u32
        })
        .collect();
    tokens.sort_unstable();
    tokens.dedup();
    tokens
}

/// Why a key has no usable replication set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// The ring has no member at all.
    #[error("the ring has no ingesters")]
    Empty,
    /// No member can take writes.
    #[error("none of the ring's {members} ingesters is active and alive")]
    NoHealthyMembers { members: usize },
}

/// A snapshot of the ring: members and their tokens, sorted around the circle.
#[derive(Debug, Clone, Default)]
pub struct Ring {
    members: Vec<Member>,
    /// (token, index into `members`), sorted by token.
    circle: Vec<(u32, usize)>,
    zone_aware: bool,
}

impl Ring {
    pub fn new(mut members: Vec<Member>, zone_aware: bool) -> Self {
        members.sort_by(|a, b| a.id.cmp(&b.id));
        let mut circle: Vec<(u32, usize)> = members
            .iter()
            .enumerate()
            .flat_map(|(i, m)| m.tokens.iter().map(move |&t| (t, i)))
            .collect();
        // Equal tokens of two members: the smaller id wins the position, deterministically.
        circle.sort_unstable();
        Ring {
            members,
            circle,
            zone_aware,
        }
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    pub fn member(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    /// The members that hold `key`: up to `rf` distinct writable members clockwise from the
    /// key's position (distinct zones first when zone aware). Fewer than `rf` when fewer are
    /// writable; an error when none is.
    pub fn replication_set(&self, key: u64, rf: usize) -> Result<Vec<&Member>, RingError> {
        let writable = self.members.iter().filter(|m| m.writable()).count();
        if self.members.is_empty() {
            return Err(RingError::Empty);
        }
        if writable == 0 {
            return Err(RingError::NoHealthyMembers {
                members: self.members.len(),
            });
        }
        let want = rf.min(writable);
        let position = (key >> 32) as u32 ^ key as u32;
        let start = self.circle.partition_point(|&(t, _)| t < position);
        let mut chosen: Vec<usize> = Vec::with_capacity(want);
        let mut zones: HashSet<Option<&str>> = HashSet::new();
        let zone_count = self
            .members
            .iter()
            .filter(|m| m.writable())
            .map(|m| m.zone.as_deref())
            .collect::<HashSet<_>>()
            .len();
        // First pass: distinct zones (when zone aware); second: anything still missing.
        for distinct_zones in [self.zone_aware, false] {
            for step in 0..self.circle.len() {
                if chosen.len() == want {
                    break;
                }
                let (_, index) = self.circle[(start + step) % self.circle.len()];
                let member = &self.members[index];
                if !member.writable() || chosen.contains(&index) {
                    continue;
                }
                let zone = member.zone.as_deref();
                if distinct_zones && zones.len() < zone_count && zones.contains(&zone) {
                    continue;
                }
                zones.insert(zone);
                chosen.push(index);
            }
        }
        Ok(chosen.into_iter().map(|i| &self.members[i]).collect())
    }
}

/// The number of acknowledgements a write to `replicas` members needs: a majority.
pub fn quorum(replicas: usize) -> usize {
    replicas / 2 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, zone: Option<&str>) -> Member {
        Member {
            id: id.into(),
            zone: zone.map(str::to_string),
            state: InstanceState::Active,
            alive: true,
            tokens: member_tokens(id, 128),
        }
    }

    fn keys() -> impl Iterator<Item = u64> {
        (0..2000u64).map(|i| crate::placement_key("tenant", &format!("service-{i}")))
    }

    #[test]
    fn tokens_are_stable_per_member() {
        assert_eq!(member_tokens("a", 64), member_tokens("a", 64));
        assert_ne!(member_tokens("a", 64), member_tokens("b", 64));
        assert_eq!(member_tokens("a", 64).len(), 64);
    }

    #[test]
    fn a_replication_set_is_rf_distinct_writable_members() {
        let mut members: Vec<Member> = ["a", "b", "c", "d"]
            .iter()
            .map(|id| member(id, None))
            .collect();
        members[3].state = InstanceState::Leaving;
        let ring = Ring::new(members, false);
        for key in keys() {
            let set = ring.replication_set(key, 3).unwrap();
            let ids: HashSet<&str> = set.iter().map(|m| m.id.as_str()).collect();
            assert_eq!(ids.len(), 3);
            assert!(!ids.contains("d"), "a leaving member takes no writes");
        }
        assert_eq!(quorum(3), 2);
        assert_eq!(quorum(1), 1);
    }

    #[test]
    fn dead_members_shrink_the_set_and_none_is_an_error() {
        let mut members: Vec<Member> = ["a", "b", "c"].iter().map(|id| member(id, None)).collect();
        members[0].alive = false;
        let ring = Ring::new(members.clone(), false);
        assert_eq!(ring.replication_set(7, 3).unwrap().len(), 2);
        for m in &mut members {
            m.alive = false;
        }
        let err = Ring::new(members, false).replication_set(7, 3).unwrap_err();
        assert_eq!(
            err.to_string(),
            "none of the ring's 3 ingesters is active and alive"
        );
        assert_eq!(
            Ring::new(Vec::new(), false)
                .replication_set(7, 3)
                .unwrap_err()
                .to_string(),
            "the ring has no ingesters"
        );
    }

    #[test]
    fn a_joining_member_takes_a_fair_share_and_moves_little() {
        let three: Vec<Member> = ["a", "b", "c"].iter().map(|id| member(id, None)).collect();
        let mut four = three.clone();
        four.push(member("d", None));
        let (before, after) = (Ring::new(three, false), Ring::new(four, false));
        let (mut moved, mut on_d) = (0, 0);
        for key in keys() {
            let owner_before = &before.replication_set(key, 1).unwrap()[0].id;
            let owner_after = &after.replication_set(key, 1).unwrap()[0].id;
            if owner_before != owner_after {
                moved += 1;
                assert_eq!(owner_after, "d", "keys move only to the new member");
            }
            on_d += usize::from(owner_after == "d");
        }
        assert_eq!(moved, on_d);
        // About a quarter of the keys, with generous slack for 2,000 keys.
        assert!(
            (300..=700).contains(&on_d),
            "{on_d} of 2000 keys on the new member"
        );
    }

    #[test]
    fn zone_awareness_spreads_replicas_over_zones() {
        let members = vec![
            member("a1", Some("a")),
            member("a2", Some("a")),
            member("b1", Some("b")),
            member("b2", Some("b")),
            member("c1", Some("c")),
        ];
        let ring = Ring::new(members.clone(), true);
        for key in keys() {
            let zones: HashSet<_> = ring
                .replication_set(key, 3)
                .unwrap()
                .iter()
                .map(|m| m.zone.clone())
                .collect();
            assert_eq!(zones.len(), 3);
        }
        // Without zone awareness some sets repeat a zone.
        let plain = Ring::new(members, false);
        assert!(keys().any(|key| {
            let zones: HashSet<_> = plain
                .replication_set(key, 3)
                .unwrap()
                .iter()
                .map(|m| m.zone.clone())
                .collect();
            zones.len() < 3
        }));
    }
}
