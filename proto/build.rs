//! Generates Rust types (prost) and protojson serde impls (pbjson) from the `.proto` files in
//! this folder, compiled by protox: no system `protoc` is needed.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "google/v1/profile.proto",
    "types/v1/types.proto",
    "push/v1/push.proto",
    "querier/v1/querier.proto",
    "hearth/wal/v1/wal.proto",
    "hearth/cluster/v1/cluster.proto",
    "opentelemetry/proto/collector/profiles/v1development/profiles_service.proto",
    "google/rpc/status.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={}", root.join(proto).display());
    }

    let descriptors = protox::compile(PROTOS, [&root])?;
    let descriptor_path = out_dir.join("descriptors.bin");
    std::fs::write(
        &descriptor_path,
        prost::Message::encode_to_vec(&descriptors),
    )?;

    let mut config = prost_build::Config::new();
    config.file_descriptor_set_path(&descriptor_path);
    config.skip_protoc_run();
    config.bytes(["."]);
    config.compile_fds(descriptors)?;

    let descriptor_bytes = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)?
        .build(&[
            ".google.v1",
            ".google.rpc",
            ".types.v1",
            ".push.v1",
            ".querier.v1",
            ".opentelemetry",
        ])?;
    Ok(())
}
