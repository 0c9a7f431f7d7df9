//! Immutable blocks in object storage: `<tenant>/<block ulid>/` holding `meta.json` and one
//! Parquet file per logical table (see `FORMAT.md`). `meta.json` is written last: a block
//! without it is incomplete and ignored.

pub mod index;
mod meta;
mod reader;
mod symbols;
mod write;

pub use meta::{BLOCK_FORMAT_VERSION, BlockFile, BlockMeta, BlockStats, CompactionMeta};
pub use reader::BlockFileReader;
pub(crate) use symbols::read_whole_table;
pub use symbols::{read_block_symbols, symbols_from_tables};
pub use write::{EncodedBlock, upload_meta, write_block, writer_properties};
pub(crate) use write::{file_properties, upload};

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::error::{Error, Result};
use crate::model::{TenantId, TimeRange};
use crate::schema::TableKind;

/// The rollup's file in a block's folder (see [`crate::rollup`]).
pub const ROLLUP_FILE: &str = "rollup.parquet";

/// The series rollup's file in a block's folder: per series and hour, the profiles' totals
/// (see [`crate::rollup`]).
pub const SERIES_ROLLUP_FILE: &str = "rollup_series.parquet";

/// A block known to the engine.
#[derive(Debug)]
pub struct Block {
    pub meta: BlockMeta,
}

impl Block {
    pub fn id(&self) -> &str {
        &self.meta.ulid
    }

    pub fn overlaps(&self, range: &TimeRange) -> bool {
        range.overlaps(self.meta.min_time_nanos, self.meta.max_time_nanos)
    }

    /// Whether the block has a rollup (blocks written before rollups existed have none).
    pub fn has_rollup(&self) -> bool {
        self.rollup().is_some()
    }

    /// The rollup's file, when the block has one.
    pub fn rollup(&self) -> Option<&BlockFile> {
        self.meta.files.iter().find(|f| f.path == ROLLUP_FILE)
    }

    /// The series rollup's file, when the block has one (blocks written before series
    /// rollups existed have none).
    pub fn series_rollup(&self) -> Option<&BlockFile> {
        self.meta
            .files
            .iter()
            .find(|f| f.path == SERIES_ROLLUP_FILE)
    }

    pub fn file(&self, table: TableKind) -> Option<&BlockFile> {
        self.meta.files.iter().find(|f| f.path == table.file_name())
    }

    /// The object-store path of a table's file.
    pub fn path(&self, tenant: &TenantId, table: TableKind) -> Path {
        block_dir(tenant, &self.meta.ulid).child_path(table.file_name())
    }
}

pub(crate) trait ChildPath {
    fn child_path(&self, relative: &str) -> Path;
}

impl ChildPath for Path {
    fn child_path(&self, relative: &str) -> Path {
        relative
            .split('/')
            .fold(self.clone(), |path, part| path.clone().join(part))
    }
}

pub fn block_dir(tenant: &TenantId, ulid: &str) -> Path {
    Path::from(tenant.as_str()).join(ulid)
}

/// Lists the tenants that have blocks.
pub async fn list_tenants(store: &dyn ObjectStore) -> Result<Vec<TenantId>> {
    let listing = store.list_with_delimiter(None).await?;
    Ok(listing
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().and_then(|name| TenantId::new(name).ok()))
        .collect())
}

/// The block in folder `dir`, from its `meta.json`; `None` while it has none (being written,
/// or an interrupted flush).
pub async fn read_block(store: &dyn ObjectStore, dir: &Path) -> Result<Option<Block>> {
    let meta_path = dir.clone().join(meta::META_FILE);
    let bytes = match store.get(&meta_path).await {
        Ok(result) => result.bytes().await?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let meta: BlockMeta = serde_json::from_slice(&bytes)
        .map_err(|e| Error::corrupt(format!("block meta {meta_path}"), e))?;
    Ok(Some(Block { meta }))
}
