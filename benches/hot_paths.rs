//! Criterion micro-benchmarks of the hot paths, on google/pprof's `large.cpu` (20,430 samples,
//! 23k locations): pprof decode + normalise, head append with the WAL, symbol dedup, flush to
//! Parquet, flame-graph partial (dense ids to a function tree) and final (merge of encoded
//! trees) phases, tree truncation/rendering, the `/ingest` stack formats (folded, trie,
//! tree, speedscope) read into a pprof, on large.cpu's stacks written in each, OTLP
//! exports of large.cpu (protobuf and JSON) read into normalised batches, and a real JVM's
//! JFR recording (made with the machine's JDK when there is one) read into pprofs.
//!
//! `cargo bench --bench hot_paths` (criterion's own flags follow `--`).

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use hearth_engine::block::write_block;
use hearth_engine::flamegraph::{FunctionTree, add_partition};
use hearth_engine::head::Head;
use hearth_engine::model::{Labels, TenantId};
use hearth_engine::rollup::encode_head;
use hearth_engine::{HeadConfig, ProfileBatch};
use hearth_ingest::Limits;
use hearth_ingest::formats::{decode, encode_nodes, legacy_type, to_pprof};
use hearth_ingest::jfr::{self, JfrParams};
use hearth_ingest::labels::validate_labels;
use hearth_ingest::legacy::Format;
use hearth_ingest::normalize::{NormalizeArgs, normalize};
use hearth_ingest::otlp::{decode_json, prepare_otlp};
use hearth_proto::otlp_collector::ExportProfilesServiceRequest;
use hearth_sql::render::flame_graph;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use prost::Message;

fn labels() -> Labels {
    let pairs = [("__name__", "process_cpu"), ("service_name", "bench")];
    validate_labels(
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        &Limits::default(),
    )
    .unwrap()
}

/// large.cpu decoded, validated and normalised, as ingest hands it to the engine.
fn batch(raw: &[u8], time_nanos: i64) -> ProfileBatch {
    let limits = Limits::default();
    let (pprof, index) = ProfileBatch::decode_pprof(raw, usize::MAX).unwrap();
    normalize(NormalizeArgs {
        labels: labels(),
        raw: bytes::Bytes::copy_from_slice(raw),
        pprof,
        index,
        profile_id: String::new(),
        default_time_nanos: time_nanos,
        limits: &limits,
    })
    .unwrap()
}

fn decode_and_normalise(c: &mut Criterion) {
    let (raw, _) = support::large_cpu();
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Bytes(raw.len() as u64));
    group.bench_function("decode_normalise_large_cpu", |b| b.iter(|| batch(&raw, 1)));
    group.finish();
}

fn head_append(c: &mut Criterion) {
    let (raw, _) = support::large_cpu();
    let batch = batch(&raw, 1);
    let samples = batch.sample_count() as u64;
    let mut group = c.benchmark_group("head");
    group.throughput(Throughput::Elements(samples));
    // Symbols already in the partition: the steady state of a service that keeps pushing.
    group.bench_function("append_known_symbols", |b| {
        let mut head = Head::new();
        head.append(&batch).unwrap();
        b.iter(|| head.append(&batch).unwrap());
    });
    // A fresh partition: every string, function, location and stack is new.
    group.bench_function("append_new_symbols", |b| {
        b.iter_batched(
            Head::new,
            |mut head| head.append(&batch).unwrap(),
            BatchSize::LargeInput,
        )
    });
    // Through the engine: WAL record, fsync (group commit), head.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = runtime.block_on(hearth_engine::testing::open_engine(
        dir.path(),
        HeadConfig {
            max_head_bytes: usize::MAX,
            ..HeadConfig::default()
        },
    ));
    let tenant = TenantId::new("bench").unwrap();
    group.bench_function("engine_append_with_wal", |b| {
        b.iter(|| {
            runtime
                .block_on(engine.append(&tenant, batch.clone()))
                .unwrap()
        })
    });
    group.finish();
}

fn flush(c: &mut Criterion) {
    let (raw, _) = support::large_cpu();
    let mut head = Head::new();
    for i in 0..10 {
        head.append(&batch(&raw, 1 + i * 10_000_000_000)).unwrap();
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let tenant = TenantId::new("bench").unwrap();
    let mut group = c.benchmark_group("flush");
    group.sample_size(10);
    group.throughput(Throughput::Elements(head.sample_count() as u64));
    group.bench_function("head_of_10_large_cpu_to_parquet_with_rollup", |b| {
        b.iter(|| {
            let contents = encode_head(&head).unwrap().unwrap();
            runtime
                .block_on(write_block(&store, &tenant, contents, &[], ""))
                .unwrap()
        })
    });
    group.finish();
}

fn flame_graphs(c: &mut Criterion) {
    let (raw, _) = support::large_cpu();
    let batch = batch(&raw, 1);
    let mut head = Head::new();
    head.append(&batch).unwrap();
    let (_, partition) = head.partitions().next().unwrap();
    let symbols = partition.read();
    // Dense values by stack-trace id, as the partial phase gathers them.
    let samples = head.sample_batches().unwrap();
    let mut values = vec![0i64; symbols.stacktraces.len()];
    let mut rows = 0u64;
    for b in &samples {
        let ids = b
            .column(3)
            .as_any()
            .downcast_ref::<arrow::array::UInt32Array>()
            .unwrap();
        let vals = b
            .column(4)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap();
        for i in 0..b.num_rows() {
            values[ids.value(i) as usize] += vals.value(i);
            rows += 1;
        }
    }
    let mut group = c.benchmark_group("flamegraph");
    group.throughput(Throughput::Elements(rows));
    group.bench_function("partial_resolve_large_cpu", |b| {
        b.iter(|| {
            let mut tree = FunctionTree::new();
            add_partition(&mut tree, &symbols, &values);
            tree
        })
    });
    let mut tree = FunctionTree::new();
    add_partition(&mut tree, &symbols, &values);
    let encoded: Vec<Vec<u8>> = (0..8).map(|_| tree.encode()).collect();
    group.throughput(Throughput::Elements(8 * tree.len() as u64));
    group.bench_function("final_merge_8_partials", |b| {
        b.iter(|| {
            let mut merged = FunctionTree::new();
            for bytes in &encoded {
                merged.merge(&FunctionTree::decode(bytes).unwrap());
            }
            merged
        })
    });
    group.throughput(Throughput::Elements(tree.len() as u64));
    group.bench_function("truncate_render_8192_nodes", |b| {
        b.iter(|| flame_graph(&tree, 8192))
    });
    group.finish();
}

/// large.cpu's samples as stacks of function names (root first) with their first value.
fn large_cpu_stacks() -> Vec<(Vec<String>, u64)> {
    let (_, p) = support::large_cpu();
    let name = |location: u64| -> String {
        let l = p.location.iter().find(|l| l.id == location).unwrap();
        let f = l
            .line
            .first()
            .and_then(|line| p.function.iter().find(|f| f.id == line.function_id));
        f.map_or_else(
            || format!("0x{:x}", l.address),
            |f| p.string_table[f.name as usize].clone(),
        )
    };
    let mut names = std::collections::HashMap::new();
    p.sample
        .iter()
        .map(|s| {
            let frames = s
                .location_id
                .iter()
                .rev()
                .map(|&l| names.entry(l).or_insert_with(|| name(l)).clone())
                .collect();
            (frames, s.value[0].max(0) as u64)
        })
        .collect()
}

/// The stacks as Pyroscope's `tree` (`trie: false`) or `trie` (each inner frame's name ends
/// with `;`) body: nodes in pre-order.
fn tree_body(stacks: &[(Vec<String>, u64)], trie: bool) -> Vec<u8> {
    #[derive(Default)]
    struct Node {
        value: u64,
        children: std::collections::BTreeMap<String, Node>,
    }
    let mut root = Node::default();
    for (frames, value) in stacks {
        let mut node = &mut root;
        for frame in frames {
            node = node.children.entry(frame.clone()).or_default();
        }
        node.value += value;
    }
    fn walk(out: &mut Vec<(String, u64, u64)>, name: &str, node: &Node, trie: bool) {
        let name = if trie && !node.children.is_empty() && !name.is_empty() {
            format!("{name};")
        } else {
            name.to_string()
        };
        out.push((name, node.value, node.children.len() as u64));
        for (child, node) in &node.children {
            walk(out, child, node, trie);
        }
    }
    let mut nodes = Vec::new();
    walk(&mut nodes, "", &root, trie);
    let nodes: Vec<(&str, u64, u64)> = nodes.iter().map(|(n, v, c)| (n.as_str(), *v, *c)).collect();
    encode_nodes(&nodes)
}

/// The stacks as a speedscope file with one sampled profile.
fn speedscope_body(stacks: &[(Vec<String>, u64)]) -> Vec<u8> {
    let mut index = std::collections::HashMap::new();
    let mut frames = Vec::new();
    let samples: Vec<Vec<usize>> = stacks
        .iter()
        .map(|(names, _)| {
            names
                .iter()
                .map(|n| {
                    *index.entry(n.clone()).or_insert_with(|| {
                        frames.push(serde_json::json!({ "name": n }));
                        frames.len() - 1
                    })
                })
                .collect()
        })
        .collect();
    let weights: Vec<u64> = stacks.iter().map(|(_, v)| *v).collect();
    serde_json::to_vec(&serde_json::json!({
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "shared": { "frames": frames },
        "profiles": [{ "type": "sampled", "name": "bench", "unit": "none", "startValue": 0,
                       "endValue": 1, "samples": samples, "weights": weights }],
    }))
    .unwrap()
}

/// large.cpu as an OTLP export: its tables in the dictionary (row 0 empty), a stack per
/// sample, sample counts on its CPU period (the shape the eBPF profiler sends).
fn otlp_request(p: &hearth_proto::pprof::Profile) -> ExportProfilesServiceRequest {
    use hearth_proto::otlp::{
        Function, Line, Location, Mapping, Profile, ProfilesDictionary, ResourceProfiles, Sample,
        ScopeProfiles, Stack, ValueType,
    };
    let index = |ids: Vec<u64>| -> std::collections::HashMap<u64, i32> {
        ids.into_iter().zip(1..).collect()
    };
    let functions = index(p.function.iter().map(|f| f.id).collect());
    let mappings = index(p.mapping.iter().map(|m| m.id).collect());
    let locations = index(p.location.iter().map(|l| l.id).collect());
    let mut dictionary = ProfilesDictionary {
        string_table: p.string_table.clone(),
        mapping_table: vec![Mapping::default()],
        location_table: vec![Location::default()],
        function_table: vec![Function::default()],
        stack_table: vec![Stack::default()],
        ..Default::default()
    };
    dictionary
        .function_table
        .extend(p.function.iter().map(|f| Function {
            name_strindex: f.name as i32,
            system_name_strindex: f.system_name as i32,
            filename_strindex: f.filename as i32,
            start_line: f.start_line,
        }));
    dictionary
        .mapping_table
        .extend(p.mapping.iter().map(|m| Mapping {
            memory_start: m.memory_start,
            memory_limit: m.memory_limit,
            file_offset: m.file_offset,
            filename_strindex: m.filename as i32,
            ..Default::default()
        }));
    dictionary.location_table.extend(p.location.iter().map(|l| {
        Location {
            mapping_index: mappings.get(&l.mapping_id).copied().unwrap_or(0),
            address: l.address,
            lines: l
                .line
                .iter()
                .map(|line| Line {
                    function_index: functions[&line.function_id],
                    line: line.line,
                    column: 0,
                })
                .collect(),
            ..Default::default()
        }
    }));
    let mut samples = Vec::new();
    for sample in &p.sample {
        dictionary.stack_table.push(Stack {
            location_indices: sample.location_id.iter().map(|l| locations[l]).collect(),
        });
        samples.push(Sample {
            stack_index: dictionary.stack_table.len() as i32 - 1,
            values: vec![sample.value[0]],
            ..Default::default()
        });
    }
    let mut string = |s: &str| match dictionary.string_table.iter().position(|t| t == s) {
        Some(i) => i as i32,
        None => {
            dictionary.string_table.push(s.to_string());
            dictionary.string_table.len() as i32 - 1
        }
    };
    let profile = Profile {
        sample_type: Some(ValueType {
            type_strindex: string("samples"),
            unit_strindex: string("count"),
        }),
        period_type: Some(ValueType {
            type_strindex: string("cpu"),
            unit_strindex: string("nanoseconds"),
        }),
        period: p.period,
        samples,
        ..Default::default()
    };
    ExportProfilesServiceRequest {
        resource_profiles: vec![ResourceProfiles {
            scope_profiles: vec![ScopeProfiles {
                profiles: vec![profile],
                ..Default::default()
            }],
            ..Default::default()
        }],
        dictionary: Some(dictionary),
    }
}

/// OTLP exports of large.cpu read into normalised batches, from protobuf and from JSON.
fn otlp(c: &mut Criterion) {
    let (_, p) = support::large_cpu();
    let request = otlp_request(&p);
    let proto = request.encode_to_vec();
    let json = serde_json::to_vec(&request).unwrap();
    let limits = Limits::default();
    let mut group = c.benchmark_group("ingest_formats");
    group.throughput(Throughput::Bytes(proto.len() as u64));
    group.bench_function("otlp_proto_large_cpu_to_batches", |b| {
        b.iter(|| {
            let request = ExportProfilesServiceRequest::decode(&proto[..]).unwrap();
            prepare_otlp(request, &limits, 1).unwrap()
        })
    });
    group.throughput(Throughput::Bytes(json.len() as u64));
    group.bench_function("otlp_json_large_cpu_to_batches", |b| {
        b.iter(|| prepare_otlp(decode_json(&json).unwrap(), &limits, 1).unwrap())
    });
    group.finish();
}

/// A real JVM's recording: `tests/integration/jfr.rs`'s program run for three seconds under
/// JFR's `profile` settings with TLAB events; `None` without a JDK.
fn jvm_recording() -> Option<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let test = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/jfr.rs"),
    )
    .unwrap();
    let program = test.split("r#\"").nth(1)?.split("\"#;").next()?;
    std::fs::write(dir.path().join("Hot.java"), program).unwrap();
    let run = |cmd: &mut std::process::Command| cmd.status().is_ok_and(|s| s.success());
    let recording = dir.path().join("hot.jfr");
    let recorded = run(std::process::Command::new("javac").arg(dir.path().join("Hot.java")))
        && run(std::process::Command::new("java")
            .arg(format!(
                "-XX:StartFlightRecording=filename={},settings=profile,dumponexit=true,\
                 +jdk.ObjectAllocationInNewTLAB#enabled=true",
                recording.display()
            ))
            .arg("-cp")
            .arg(dir.path())
            .args(["Hot", "3000"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()));
    recorded.then(|| std::fs::read(recording).unwrap())
}

/// A JVM recording read into Pyroscope's profiles (pprofs, before normalisation).
fn jfr(c: &mut Criterion) {
    let Some(recording) = jvm_recording() else {
        eprintln!("ingest_formats/jfr: skipped (no JDK: javac and java are needed)");
        return;
    };
    let params = JfrParams {
        sample_rate: 100,
        from_nanos: 1,
        until_nanos: 2,
    };
    let mut group = c.benchmark_group("ingest_formats");
    group.throughput(Throughput::Bytes(recording.len() as u64));
    group.bench_function("jfr_jvm_recording_to_pprofs", |b| {
        b.iter(|| jfr::decode(&recording, None, params).unwrap())
    });
    group.finish();
}

fn stack_formats(c: &mut Criterion) {
    let stacks = large_cpu_stacks();
    let folded: String = stacks
        .iter()
        .map(|(frames, value)| format!("{} {value}\n", frames.join(";")))
        .collect();
    let bodies = [
        (Format::Groups, folded.into_bytes()),
        (Format::Trie, tree_body(&stacks, true)),
        (Format::Tree, tree_body(&stacks, false)),
        (Format::Speedscope, speedscope_body(&stacks)),
    ];
    let (_, cpu) = legacy_type("bench.cpu").unwrap();
    let mut group = c.benchmark_group("ingest_formats");
    for (format, body) in &bodies {
        group.throughput(Throughput::Bytes(body.len() as u64));
        let name = match format {
            Format::Groups => "folded",
            other => other.name(),
        };
        group.bench_function(format!("{name}_large_cpu_to_pprof"), |b| {
            b.iter(|| {
                for piece in decode(*format, body, "bench.cpu", 100, usize::MAX).unwrap() {
                    to_pprof(&piece, cpu, 100, 1).unwrap();
                }
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    stack_formats,
    otlp,
    jfr,
    decode_and_normalise,
    head_append,
    flush,
    flame_graphs
);
criterion_main!(benches);
