use super::*;

fn key(source: &str, series: u64, time: i64, id: &str) -> (String, u64, i64, String) {
    (source.into(), series, time, id.into())
}

fn keys<const N: usize>(keys: [(String, u64, i64, String); N]) -> ProfileKeys {
    ProfileKeys {
        keys: keys.into(),
        nodes: HashMap::new(),
    }
}

#[test]
fn each_profile_is_kept_from_one_replica() {
    let sets = KeepSets::assign(keys([
        key("a", 1, 10, "p1"),
        key("b", 1, 10, "p1"),
        key("c", 1, 10, "p1"),
        key("a", 2, 10, "p2"),
        key("b", 2, 10, "p2"),
    ]));
    for (series, time, holders) in [(1, 10, ["a", "b", "c"].as_slice()), (2, 10, &["a", "b"])] {
        let kept = holders
            .iter()
            .filter(|s| sets.keeps(s, series, time))
            .count();
        assert_eq!(kept, 1, "series {series}");
    }
    // A source that was not asked about keeps everything.
    assert!(sets.keeps("other", 1, 10));
    // A key no replica reported is not kept from a listed source.
    assert!(!sets.keeps("a", 3, 10));
}

#[test]
fn the_replica_missing_a_profile_is_not_chosen() {
    // Two profiles share series and time; replica b missed the second.
    let sets = KeepSets::assign(keys([
        key("a", 1, 10, "p1"),
        key("a", 1, 10, "p2"),
        key("b", 1, 10, "p1"),
    ]));
    assert!(sets.keeps("a", 1, 10));
    assert!(!sets.keeps("b", 1, 10));
}

#[test]
fn a_node_gets_the_keep_sets_of_its_own_sources() {
    let mut sets = KeepSets::assign(keys([
        key("head-a", 1, 10, "p1"),
        key("head-b", 1, 10, "p1"),
        key("head-a", 2, 20, "p2"),
        key("block-c", 2, 20, "p2"),
    ]));
    sets.nodes = HashMap::from([
        ("node-a".to_string(), BTreeSet::from(["head-a".to_string()])),
        ("node-b".to_string(), BTreeSet::from(["head-b".to_string()])),
    ]);
    let mut received = Vec::new();
    for node in ["node-a", "node-b"] {
        let sent = sets.for_node(node);
        assert_eq!(sent.len(), 1, "{node}");
        // Through the ticket's encoding and back.
        let sent: Vec<SourceKeys> = sent
            .into_iter()
            .map(|keys| {
                let bytes = prost::Message::encode_to_vec(&wire::SourceKeys::from(keys));
                <wire::SourceKeys as prost::Message>::decode(bytes.as_slice())
                    .unwrap()
                    .into()
            })
            .collect();
        received.push(KeepSets::from_source_keys(sent).unwrap());
    }
    for (series, time, source, node) in [
        (1, 10, "head-a", 0),
        (1, 10, "head-b", 1),
        (2, 20, "head-a", 0),
    ] {
        assert_eq!(
            received[node].keeps(source, series, time),
            sets.keeps(source, series, time),
            "{source} {series} {time}"
        );
    }
    // head-a and head-b tie on (1, 10): one of them holds nothing assigned, and still
    // travels (len 1 above) so that it keeps nothing. Lists must pair up.
    assert!(
        KeepSets::from_source_keys(vec![SourceKeys {
            source: "x".into(),
            series: vec![1],
            times: vec![],
        }])
        .is_err()
    );
    assert_eq!(sets.for_node("node-z"), Vec::new());
}

#[tokio::test]
async fn keep_sets_are_read_once_per_scope() {
    let dedupe = Dedupe::default();
    let reads = std::sync::atomic::AtomicUsize::new(0);
    let read = |range: TimeRange, series: Option<Vec<u64>>| {
        reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        async move {
            // The scope asked for is the scope given.
            assert_eq!(range, TimeRange::new(0, 100));
            let series = series.unwrap_or_default();
            Ok(keys([
                key("a", series.first().copied().unwrap_or(1), 10, "p1"),
                key("b", series.first().copied().unwrap_or(1), 10, "p1"),
            ]))
        }
    };
    let range = TimeRange::new(0, 100);
    let one = BTreeSet::from([1]);
    let first = dedupe.keep_sets(range, Some(&one), read).await.unwrap();
    let again = dedupe.keep_sets(range, Some(&one), read).await.unwrap();
    assert!(
        Arc::ptr_eq(&first, &again),
        "the same scope is computed once"
    );
    assert_eq!(reads.load(std::sync::atomic::Ordering::Relaxed), 1);
    // Exactly one of the two replicas keeps the profile.
    assert_eq!(
        ["a", "b"].iter().filter(|s| first.keeps(s, 1, 10)).count(),
        1
    );
    // Another series is another scope.
    let two = BTreeSet::from([2]);
    let other = dedupe.keep_sets(range, Some(&two), read).await.unwrap();
    assert_eq!(reads.load(std::sync::atomic::Ordering::Relaxed), 2);
    assert_eq!(
        ["a", "b"].iter().filter(|s| other.keeps(s, 2, 10)).count(),
        1
    );
    // A read that fails fails the query and is not remembered.
    let failed = dedupe
        .keep_sets(TimeRange::new(0, 1), None, |_, _| async {
            Err(Error::invalid(ErrorKind::Unavailable, "ingester gone"))
        })
        .await;
    assert_eq!(failed.unwrap_err().kind(), ErrorKind::Unavailable);
}

#[tokio::test]
async fn fixed_keep_sets_never_read() {
    let fixed = Arc::new(KeepSets::assign(keys([key("a", 1, 10, "p1")])));
    let dedupe = Dedupe::fixed(std::sync::Arc::clone(&fixed));
    let got = dedupe
        .keep_sets(TimeRange::ALL, None, |_, _| async {
            Err(Error::invalid(
                ErrorKind::Internal,
                "fixed keep sets must not read keys",
            ))
        })
        .await
        .unwrap();
    assert!(Arc::ptr_eq(&got, &fixed));
}
