//! The command line's client side: `hearth query`, `hearth upload` and `hearth export` talk to
//! a running server over the same Connect API Grafana and `profilecli` use (protobuf bodies),
//! and print tables, JSON (the API's own protojson), collapsed stacks, SVG or pprof.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use hearth_engine::flamegraph::tree_from_pprof;
use hearth_engine::model::{Labels, ProfileType};
use hearth_engine::time::{now_nanos, parse_attime};
use hearth_proto::pprof::Profile;
use hearth_proto::push::v1::{PushRequest, RawProfileSeries, RawSample};
use hearth_proto::querier::v1 as q;
use hearth_proto::types::v1 as t;
use hearth_sql::render::{NO_FLAME_GRAPH, collapsed, function_totals, pprof_file, svg};
use prost::Message;
use serde::Serialize;

const EXAMPLES: &str = "Examples:
  hearth upload examples/cpu.pb.gz --label service_name=my.app --label env=dev
  hearth query labels
  hearth query labels --name service_name
  hearth query flamegraph --query '{service_name=\"my.app\"}' --from now-1h
  hearth query flamegraph --query '{service_name=\"my.app\"}' --output svg > flame.svg
  hearth query series --query '{service_name=\"my.app\"}' --group-by env
  hearth query profile --query '{service_name=\"my.app\"}' --top 20
  hearth export --query '{service_name=\"my.app\"}' --output-file cpu.pb.gz
  go tool pprof -top cpu.pb.gz";

/// Client commands (`hearth` alone runs the server).
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Ask a running server: flame graph, series, label names and values, merged profile.
    #[command(subcommand, after_help = EXAMPLES)]
    Query(Query),
    /// Send a pprof file (gzipped or not) to a running server through `push.v1.PusherService`.
    #[command(after_help = EXAMPLES)]
    Upload(Upload),
    /// Write the merged profile of a selection to a file: pprof (`go tool pprof` opens it), SVG
    /// flame graph or collapsed stacks, chosen by `--format` or the file's extension.
    #[command(after_help = EXAMPLES)]
    Export(Export),
}

#[derive(Debug, Subcommand)]
pub(crate) enum Query {
    /// The merged flame graph (`querier.v1.QuerierService/SelectMergeStacktraces`).
    #[command(after_help = EXAMPLES)]
    Flamegraph {
        #[command(flatten)]
        selection: Selection,
        /// Largest number of nodes the server keeps (0: its default).
        #[arg(long, default_value_t = 0)]
        max_nodes: i64,
        /// Rows of the table.
        #[arg(long, default_value_t = 20)]
        top: usize,
        #[arg(long, short, value_enum, default_value_t = FlameOutput::Table)]
        output: FlameOutput,
    },
    /// Values over time (`SelectSeries`), one series per distinct `--group-by` labels.
    #[command(after_help = EXAMPLES)]
    Series {
        #[command(flatten)]
        selection: Selection,
        /// Labels to split by.
        #[arg(long, value_delimiter = ',')]
        group_by: Vec<String>,
        /// Seconds between points.
        #[arg(long, default_value_t = 15.0)]
        step: f64,
        #[arg(long, short, value_enum, default_value_t = DataOutput::Table)]
        output: DataOutput,
    },
    /// Label names (`LabelNames`), or with `--name` the values of one label (`LabelValues`).
    #[command(after_help = EXAMPLES)]
    Labels {
        #[command(flatten)]
        server: Server,
        /// The label whose values to list.
        #[arg(long)]
        name: Option<String>,
        /// Only series matching this selector.
        #[arg(long, short)]
        query: Option<String>,
        #[arg(long, default_value = "now-1h")]
        from: String,
        #[arg(long, default_value = "now")]
        to: String,
        #[arg(long, short, value_enum, default_value_t = DataOutput::Table)]
        output: DataOutput,
    },
    /// The merged pprof profile (`SelectMergeProfile`): its top functions, or the profile.
    #[command(after_help = EXAMPLES)]
    Profile {
        #[command(flatten)]
        selection: Selection,
        /// Rows of the table.
        #[arg(long, default_value_t = 20)]
        top: usize,
        #[arg(long, short, value_enum, default_value_t = ProfileOutput::Table)]
        output: ProfileOutput,
    },
}

/// Where the server is.
#[derive(Debug, Args)]
pub(crate) struct Server {
    /// The server's HTTP address.
    #[arg(long, env = "HEARTH_URL", default_value = "http://localhost:4040")]
    url: String,
    /// Tenant, sent as `X-Scope-OrgID` (needed when the server has multitenancy enabled).
    #[arg(long, env = "HEARTH_TENANT")]
    tenant: Option<String>,
}

/// Which profiles.
#[derive(Debug, Args)]
pub(crate) struct Selection {
    #[command(flatten)]
    server: Server,
    /// Label selector.
    #[arg(long, short, default_value = "{}")]
    query: String,
    /// Profile type: name:sample_type:sample_unit:period_type:period_unit.
    #[arg(
        long,
        short = 't',
        default_value = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
    )]
    profile_type: String,
    /// Start: `now-1h`, RFC 3339, or Unix seconds or milliseconds.
    #[arg(long, default_value = "now-1h")]
    from: String,
    /// End, in the same forms.
    #[arg(long, default_value = "now")]
    to: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum FlameOutput {
    Table,
    Json,
    Collapsed,
    Svg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum DataOutput {
    Table,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ProfileOutput {
    Table,
    Json,
    /// Gzipped pprof bytes (redirect them to a file).
    Pprof,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ExportFormat {
    Pprof,
    Svg,
    Collapsed,
}

#[derive(Debug, Args)]
pub(crate) struct Upload {
    #[command(flatten)]
    server: Server,
    /// The pprof file.
    file: PathBuf,
    /// A label of the series, `name=value`; repeat for more. `service_name` defaults to
    /// `hearth-upload` and `__name__` (the profile name) to `process_cpu`.
    #[arg(long = "label", short, value_name = "NAME=VALUE")]
    labels: Vec<String>,
    /// Stamp the profile with the current time, so a file recorded long ago shows up in
    /// `now-1h` queries.
    #[arg(long)]
    override_timestamp: bool,
}

#[derive(Debug, Args)]
pub(crate) struct Export {
    #[command(flatten)]
    selection: Selection,
    /// The file to write.
    #[arg(long, short = 'f', value_name = "FILE")]
    output_file: PathBuf,
    /// The format; by default from the extension (`.svg`, `.txt`/`.folded`, else pprof).
    #[arg(long, value_enum)]
    format: Option<ExportFormat>,
}

/// Runs one client command; errors name what went wrong (the server's own message included).
pub(crate) fn run(command: Command) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let mut out = std::io::stdout().lock();
            match command {
                Command::Query(query) => run_query(query, &mut out).await,
                Command::Upload(upload) => run_upload(upload, &mut out).await,
                Command::Export(export) => run_export(export).await,
            }
        })
}

async fn run_query(query: Query, out: &mut impl Write) -> anyhow::Result<()> {
    match query {
        Query::Flamegraph {
            selection,
            max_nodes,
            top,
            output,
        } => {
            if output == FlameOutput::Json {
                let request = q::SelectMergeStacktracesRequest {
                    profile_type_id: selection.profile_type.clone(),
                    label_selector: selection.query.clone(),
                    start: millis(&selection.from)?,
                    end: millis(&selection.to)?,
                    max_nodes: (max_nodes != 0).then_some(max_nodes),
                    ..Default::default()
                };
                let answer: q::SelectMergeStacktracesResponse = selection
                    .server
                    .call("querier.v1.QuerierService/SelectMergeStacktraces", &request)
                    .await?;
                return json(out, &answer);
            }
            let profile = merged_profile(&selection).await?;
            let tree = tree_from_pprof(&profile)?;
            match output {
                FlameOutput::Collapsed => out.write_all(collapsed(&tree).as_bytes())?,
                FlameOutput::Svg => out.write_all(&svg_of(&tree, &selection)?)?,
                _ => top_table(out, &tree, top)?,
            }
            Ok(())
        }
        Query::Series {
            selection,
            group_by,
            step,
            output,
        } => {
            let request = q::SelectSeriesRequest {
                profile_type_id: selection.profile_type.clone(),
                label_selector: selection.query.clone(),
                start: millis(&selection.from)?,
                end: millis(&selection.to)?,
                group_by,
                step,
                ..Default::default()
            };
            let answer: q::SelectSeriesResponse = selection
                .server
                .call("querier.v1.QuerierService/SelectSeries", &request)
                .await?;
            if output == DataOutput::Json {
                return json(out, &answer);
            }
            for series in &answer.series {
                writeln!(out, "{}", selector(&series.labels))?;
                for point in &series.points {
                    let time = UNIX_EPOCH + Duration::from_millis(point.timestamp.max(0) as u64);
                    writeln!(
                        out,
                        "  {}  {}",
                        humantime::format_rfc3339_seconds(time),
                        point.value
                    )?;
                }
            }
            Ok(())
        }
        Query::Labels {
            server,
            name,
            query,
            from,
            to,
            output,
        } => {
            let (start, end) = (millis(&from)?, millis(&to)?);
            let matchers = query.into_iter().collect();
            let names = match name {
                Some(name) => {
                    let request = t::LabelValuesRequest {
                        name,
                        matchers,
                        start,
                        end,
                    };
                    let answer: t::LabelValuesResponse = server
                        .call("querier.v1.QuerierService/LabelValues", &request)
                        .await?;
                    if output == DataOutput::Json {
                        return json(out, &answer);
                    }
                    answer.names
                }
                None => {
                    let request = t::LabelNamesRequest {
                        matchers,
                        start,
                        end,
                    };
                    let answer: t::LabelNamesResponse = server
                        .call("querier.v1.QuerierService/LabelNames", &request)
                        .await?;
                    if output == DataOutput::Json {
                        return json(out, &answer);
                    }
                    answer.names
                }
            };
            for name in names {
                writeln!(out, "{name}")?;
            }
            Ok(())
        }
        Query::Profile {
            selection,
            top,
            output,
        } => {
            let profile = merged_profile(&selection).await?;
            match output {
                ProfileOutput::Json => json(out, &profile),
                ProfileOutput::Pprof => Ok(out.write_all(&pprof_file(&profile))?),
                ProfileOutput::Table => top_table(out, &tree_from_pprof(&profile)?, top),
            }
        }
    }
}

async fn run_upload(upload: Upload, out: &mut impl Write) -> anyhow::Result<()> {
    let raw = std::fs::read(&upload.file)
        .with_context(|| format!("reading {}", upload.file.display()))?;
    let mut labels: Vec<t::LabelPair> = Vec::new();
    for label in &upload.labels {
        let Some((name, value)) = label.split_once('=') else {
            bail!("--label {label:?}: expected name=value");
        };
        labels.retain(|l| l.name != name);
        labels.push(t::LabelPair {
            name: name.to_string(),
            value: value.to_string(),
        });
    }
    for (name, value) in [
        ("service_name", "hearth-upload"),
        ("__name__", "process_cpu"),
    ] {
        if !labels.iter().any(|l| l.name == name) {
            labels.push(t::LabelPair {
                name: name.to_string(),
                value: value.to_string(),
            });
        }
    }
    let raw_profile = if upload.override_timestamp {
        let mut profile = hearth_engine::pprof::decode(&raw, usize::MAX)
            .with_context(|| format!("{} is not a pprof profile", upload.file.display()))?;
        profile.time_nanos = now_nanos();
        pprof_file(&profile)
    } else {
        raw
    };
    let request = PushRequest {
        series: vec![RawProfileSeries {
            labels: labels.clone(),
            samples: vec![RawSample {
                raw_profile: raw_profile.into(),
                id: uuid::Uuid::new_v4().to_string(),
            }],
            ..Default::default()
        }],
    };
    let _: hearth_proto::push::v1::PushResponse = upload
        .server
        .call("push.v1.PusherService/Push", &request)
        .await?;
    writeln!(
        out,
        "uploaded {} as {}",
        upload.file.display(),
        selector(&labels)
    )?;
    Ok(())
}

async fn run_export(export: Export) -> anyhow::Result<()> {
    let path = &export.output_file;
    let format = export.format.unwrap_or_else(|| {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default()
        {
            "svg" => ExportFormat::Svg,
            "txt" | "folded" | "collapsed" => ExportFormat::Collapsed,
            _ => ExportFormat::Pprof,
        }
    });
    let profile = merged_profile(&export.selection).await?;
    let bytes = match format {
        ExportFormat::Pprof => pprof_file(&profile),
        ExportFormat::Svg => svg_of(&tree_from_pprof(&profile)?, &export.selection)?,
        ExportFormat::Collapsed => collapsed(&tree_from_pprof(&profile)?).into_bytes(),
    };
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

impl Server {
    /// One Connect unary call with protobuf bodies; a Connect error becomes its message.
    async fn call<Req: Message, Resp: Message + Default>(
        &self,
        method: &str,
        request: &Req,
    ) -> anyhow::Result<Resp> {
        let url = format!("{}/{method}", self.url.trim_end_matches('/'));
        let mut builder = reqwest::Client::new()
            .post(&url)
            .header("content-type", "application/proto")
            .header("connect-protocol-version", "1")
            .body(request.encode_to_vec());
        if let Some(tenant) = &self.tenant {
            builder = builder.header("x-scope-orgid", tenant);
        }
        let response = builder
            .send()
            .await
            .with_context(|| format!("no answer from {url} (is hearth running there?)"))?;
        let status = response.status();
        let body = response.bytes().await?;
        if !status.is_success() {
            let error: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let message = error["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            let code = error["code"].as_str().unwrap_or("error");
            bail!("{method}: {code} ({status}): {message}");
        }
        Resp::decode(body.as_ref()).with_context(|| format!("{method}: undecodable answer"))
    }
}

/// The merged profile of a selection, untruncated.
async fn merged_profile(selection: &Selection) -> anyhow::Result<Profile> {
    let request = q::SelectMergeProfileRequest {
        profile_type_id: selection.profile_type.clone(),
        label_selector: selection.query.clone(),
        start: millis(&selection.from)?,
        end: millis(&selection.to)?,
        ..Default::default()
    };
    selection
        .server
        .call("querier.v1.QuerierService/SelectMergeProfile", &request)
        .await
}

/// `now-1h`, RFC 3339 or Unix seconds/milliseconds, as Unix milliseconds.
fn millis(value: &str) -> anyhow::Result<i64> {
    let nanos = parse_attime(value, now_nanos()).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(nanos / 1_000_000)
}

fn svg_of(
    tree: &hearth_engine::flamegraph::FunctionTree,
    selection: &Selection,
) -> anyhow::Result<Vec<u8>> {
    if tree.len() <= 1 {
        bail!(NO_FLAME_GRAPH);
    }
    let profile_type =
        ProfileType::parse(&selection.profile_type).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(svg(
        tree,
        &format!("{} {}", selection.query, selection.profile_type),
        &profile_type.sample_unit,
    )?)
}

fn json(out: &mut impl Write, value: &impl Serialize) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

/// `{a="1", b="2"}`.
fn selector(labels: &[t::LabelPair]) -> String {
    Labels::from_pairs(labels.iter().map(|l| (l.name.as_str(), l.value.as_str()))).to_string()
}

/// The `top` functions by self value, with self and total and their shares.
fn top_table(
    out: &mut impl Write,
    tree: &hearth_engine::flamegraph::FunctionTree,
    top: usize,
) -> anyhow::Result<()> {
    let rows = function_totals(tree);
    let all: i64 = rows.iter().map(|r| r.1).sum();
    let share = |v: i64| {
        if all == 0 {
            0.0
        } else {
            100.0 * v as f64 / all as f64
        }
    };
    writeln!(
        out,
        "{:>14} {:>7} {:>14} {:>7}  function",
        "self", "self%", "total", "total%"
    )?;
    for (name, self_value, total) in rows.iter().take(top) {
        writeln!(
            out,
            "{self_value:>14} {:>6.2}% {total:>14} {:>6.2}%  {name}",
            share(*self_value),
            share(*total)
        )?;
    }
    if rows.is_empty() {
        writeln!(out, "(no samples match this selection in this range)")?;
    }
    Ok(())
}
