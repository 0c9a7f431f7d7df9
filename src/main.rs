//! `hearth`: the continuous-profiling database in one binary.
//!
//! With no arguments it runs every component in one process (`--target all`), serves HTTP on
//! `0.0.0.0:4040` and Arrow Flight SQL on `0.0.0.0:4041`, and keeps its data under `./data`.
//! `hearth query|upload|export` are clients of a running server ([`cli`]).
//! This file parses flags and loads the config; [`server::run`] binds the listeners and has
//! [`roles`] build the services of the target (one file per role), and `status` is the one
//! mapping from error kinds to HTTP and Connect statuses.

mod cli;
mod cluster;
mod config;
mod connect;
mod http;
mod metrics;
mod overrides;
mod roles;
mod scrape;
mod server;
mod status;
mod storage;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use hearth_ring::Role;

use crate::config::{Config, Flags, LogFormat};

/// jemalloc returns freed memory to the system by decay and keeps few arenas; with glibc's
/// malloc a compactor's RSS grew to twice the heap its merges used.
#[cfg(all(unix, not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(
    name = "hearth",
    version,
    about = "Continuous-profiling database, Pyroscope-compatible",
    after_help = "Without a command, runs the server. `hearth query --help`, `hearth upload --help` \
and `hearth export --help` show the clients, with examples.",
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<cli::Command>,
    /// YAML config file; flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The components to run: all, distributor, ingester, querier, query-frontend,
    /// query-scheduler, compactor or scraper.
    #[arg(long, value_name = "TARGET")]
    target: Option<Role>,
    /// The HTTP listen address (default 0.0.0.0:4040).
    #[arg(long, value_name = "HOST:PORT")]
    http_addr: Option<SocketAddr>,
    /// The Arrow Flight SQL listen address (default 0.0.0.0:4041).
    #[arg(long, value_name = "HOST:PORT")]
    flight_addr: Option<SocketAddr>,
    /// Where the WAL and local blocks live (default ./data).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Require X-Scope-OrgID on every request.
    #[arg(long)]
    multitenancy_enabled: Option<bool>,
    /// Log format.
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    /// The block bucket folder (default <data-dir>/blocks); shared by a cluster's nodes.
    #[arg(long, value_name = "DIR")]
    blocks_dir: Option<PathBuf>,
    /// This node's id in the cluster (default: target and HTTP port).
    #[arg(long, value_name = "ID")]
    node_id: Option<String>,
    /// UDP address for cluster gossip (default 0.0.0.0:7946).
    #[arg(long, value_name = "HOST:PORT")]
    gossip_addr: Option<SocketAddr>,
    /// Gossip addresses of nodes to join through, comma separated.
    #[arg(long, value_name = "HOST:PORT,...", value_delimiter = ',')]
    gossip_seeds: Option<Vec<String>>,
    /// IP address other nodes reach this one at, when it listens on 0.0.0.0 (default
    /// 127.0.0.1; gossip publishes an address, so not a host name).
    #[arg(long, value_name = "IP", env = "HEARTH_ADVERTISE_HOST")]
    advertise_host: Option<String>,
    /// Copies of every profile in a cluster (default 3).
    #[arg(long, value_name = "N")]
    replication_factor: Option<usize>,
    #[command(flatten)]
    storage: storage::StorageFlags,
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if let Some(command) = args.command.take() {
        // A client's error is for a person at a terminal: the cause chain on one line, no
        // backtrace, exit status 1.
        if let Err(error) = cli::run(command) {
            eprintln!("error: {error:#}");
            std::process::exit(1);
        }
        return Ok(());
    }
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    config.apply_flags(Flags {
        target: args.target,
        http_addr: args.http_addr,
        flight_addr: args.flight_addr,
        data_dir: args.data_dir,
        multitenancy_enabled: args.multitenancy_enabled,
        log_format: args.log_format,
        blocks_dir: args.blocks_dir,
        node_id: args.node_id,
        gossip_addr: args.gossip_addr,
        gossip_seeds: args.gossip_seeds,
        replication_factor: args.replication_factor,
        advertise_host: args.advertise_host,
    });
    args.storage.apply(&mut config.storage);
    config.validate()?;
    init_logging(config.server.log_format);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("hearth")
        .build()?
        .block_on(server::run(config))
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
