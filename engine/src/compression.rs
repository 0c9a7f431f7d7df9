//! gzip as every surface meets it: sniffed by its magic bytes (clients do not always say), inflated
//! within a limit (a small body can inflate to gigabytes), and compressed for answers.

use std::io::{Read, Write};

use crate::error::{Error, ErrorKind, Result};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Whether `bytes` start with the gzip magic `1f 8b`.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&GZIP_MAGIC)
}

/// Inflates gzip `bytes`, refusing as soon as the output would pass `limit` bytes.
pub fn gunzip_bounded(bytes: &[u8], limit: usize, what: &str) -> Result<Vec<u8>> {
    let mut decoder =
        flate2::read::MultiGzDecoder::new(bytes).take((limit as u64).saturating_add(1));
    let mut out = Vec::with_capacity((bytes.len() * 4).min(limit));
    decoder.read_to_end(&mut out).map_err(|e| {
        Error::invalid(
            ErrorKind::MalformedProfile,
            format!("{what}: invalid gzip data: {e}"),
        )
    })?;
    if out.len() > limit {
        return Err(Error::invalid(
            ErrorKind::PayloadTooLarge,
            format!("{what}: decompressed size exceeds the limit of {limit} bytes"),
        ));
    }
    Ok(out)
}

/// Compresses `bytes` (fast level: answers are compressed on the request path).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("writing to memory");
    encoder.finish().expect("writing to memory")
}
