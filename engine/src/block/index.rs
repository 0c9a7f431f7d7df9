//! The bucket index: one object per tenant, `<tenant>/bucket-index.json.gz`, listing its
//! complete blocks (their whole `meta.json`) and deletion marks, so readers learn a tenant's
//! blocks with one GET instead of listing the bucket and reading every `meta.json`.
//!
//! The compactor writes it (it lists the bucket on every cycle). Blocks uploaded after that
//! listing are found by listing only the keys after it ([`list_tail`]): block ids are ULIDs, so
//! a newer block sorts after `<tenant>/<ULID of the listing time>`; [`TAIL_MARGIN`] covers a
//! flush that took its id before the listing and finished after it, and clock skew.
//!
//! A block leaves in two steps: a deletion mark (`<tenant>/<block>/deletion-mark.json`, and in
//! the index) hides it from new queries; the object is deleted after the compactor's deletion
//! delay, so queries that already hold it finish.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::meta::META_FILE;
use super::{Block, BlockMeta, block_dir, read_block};
use crate::error::{Error, Result};
use crate::model::TenantId;

pub const INDEX_FILE: &str = "bucket-index.json.gz";
pub const DELETION_MARK_FILE: &str = "deletion-mark.json";
const INDEX_VERSION: u32 = 1;

/// How far before the index's listing the tail listing starts.
pub const TAIL_MARGIN: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketIndex {
    pub version: u32,
    /// When the bucket was listed for this index, Unix nanoseconds.
    pub listed_at_nanos: i64,
    /// Every complete block, oldest first (superseded and marked ones included).
    pub blocks: Vec<BlockMeta>,
    pub deletion_marks: Vec<DeletionMark>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeletionMark {
    pub block: String,
    /// When it was marked, Unix nanoseconds; it is deleted a deletion delay later.
    pub marked_at_nanos: i64,
    /// `compacted` (a newer block holds its data) or `retention`.
    pub reason: String,
}

/// A tenant's folders as one recursive listing shows them.
#[derive(Debug, Default)]
pub struct BucketListing {
    /// Blocks with a `meta.json`.
    pub complete: Vec<String>,
    /// Blocks with a deletion mark.
    pub marked: HashSet<String>,
    /// Folders without `meta.json` (being written, or an interrupted upload), with the time
    /// of their newest object, Unix nanoseconds.
    pub partial: BTreeMap<String, i64>,
}

impl BucketListing {
    /// Lists every object of `tenant` (after `offset`, when given).
    pub async fn list(
        store: &dyn ObjectStore,
        tenant: &TenantId,
        offset: Option<&Path>,
    ) -> Result<Self> {
        let prefix = Path::from(tenant.as_str());
        let objects: Vec<_> = match offset {
            Some(offset) => store.list_with_offset(Some(&prefix), offset),
            None => store.list(Some(&prefix)),
        }
        .try_collect()
        .await?;
        let mut listing = BucketListing::default();
        let mut newest: BTreeMap<String, i64> = BTreeMap::new();
        let mut complete = HashSet::new();
        for object in objects {
            let mut parts = object.location.prefix_match(&prefix).into_iter().flatten();
            let (Some(block), Some(file)) = (parts.next(), parts.next()) else {
                continue; // the index itself, or anything else at the tenant's top level
            };
            let block = block.as_ref().to_string();
            if ulid::Ulid::from_string(&block).is_err() {
                continue;
            }
            let modified = object.last_modified.timestamp_nanos_opt().unwrap_or(0);
            let entry = newest.entry(block.clone()).or_insert(modified);
            *entry = (*entry).max(modified);
            match (file.as_ref(), parts.next()) {
                (META_FILE, None) => {
                    complete.insert(block);
                }
                (DELETION_MARK_FILE, None) => {
                    listing.marked.insert(block);
                }
                _ => {}
            }
        }
        for (block, modified) in newest {
            if complete.contains(&block) {
                listing.complete.push(block);
            } else {
                listing.partial.insert(block, modified);
            }
        }
        Ok(listing)
    }
}

impl BucketIndex {
    pub fn path(tenant: &TenantId) -> Path {
        Path::from(tenant.as_str()).join(INDEX_FILE)
    }

    /// The tenant's index, `None` when none was written yet.
    pub async fn read(store: &dyn ObjectStore, tenant: &TenantId) -> Result<Option<Self>> {
        let path = Self::path(tenant);
        let bytes = match store.get(&path).await {
            Ok(result) => result.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(bytes.as_ref())
            .read_to_end(&mut json)
            .map_err(|e| Error::corrupt(format!("bucket index {path}"), e))?;
        let index: BucketIndex = serde_json::from_slice(&json)
            .map_err(|e| Error::corrupt(format!("bucket index {path}"), e))?;
        Ok(Some(index))
    }

    /// Replaces the tenant's index (one PUT: readers see the old or the new one).
    pub async fn write(&self, store: &dyn ObjectStore, tenant: &TenantId) -> Result<()> {
        let json = serde_json::to_vec(self).map_err(|e| Error::corrupt("bucket index", e))?;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let bytes = gz
            .write_all(&json)
            .and_then(|()| gz.finish())
            .map_err(|e| Error::corrupt("bucket index", e))?;
        store
            .put(&Self::path(tenant), PutPayload::from(Bytes::from(bytes)))
            .await?;
        Ok(())
    }

    /// Builds the index from a full listing, reading only the `meta.json` of blocks `previous`
    /// does not hold. Returns the listing too (its partial folders are for the compactor).
    pub async fn build(
        store: &dyn ObjectStore,
        tenant: &TenantId,
        previous: Option<&BucketIndex>,
        now_nanos: i64,
    ) -> Result<(Self, BucketListing)> {
        let listing = BucketListing::list(store, tenant, None).await?;
        let known: BTreeMap<&str, &BlockMeta> = previous
            .iter()
            .flat_map(|p| &p.blocks)
            .map(|m| (m.ulid.as_str(), m))
            .collect();
        let known_marks: BTreeMap<&str, &DeletionMark> = previous
            .iter()
            .flat_map(|p| &p.deletion_marks)
            .map(|m| (m.block.as_str(), m))
            .collect();
        let mut blocks = Vec::new();
        for id in &listing.complete {
            if let Some(meta) = known.get(id.as_str()) {
                blocks.push((*meta).clone());
            } else if let Some(block) = read_block(store, &block_dir(tenant, id)).await? {
                blocks.push(block.meta);
            }
        }
        let mut deletion_marks = Vec::new();
        for id in &listing.marked {
            match known_marks.get(id.as_str()) {
                Some(mark) => deletion_marks.push((*mark).clone()),
                None => {
                    if let Some(mark) = read_deletion_mark(store, tenant, id).await? {
                        deletion_marks.push(mark);
                    }
                }
            }
        }
        deletion_marks.sort_by(|a, b| a.block.cmp(&b.block));
        let index = BucketIndex {
            version: INDEX_VERSION,
            listed_at_nanos: now_nanos,
            blocks,
            deletion_marks,
        };
        Ok((index, listing))
    }

    /// The blocks queries read: complete, not marked, not replaced by a compacted block.
    pub fn live_blocks(&self) -> Vec<Arc<Block>> {
        let marked: HashSet<&str> = self
            .deletion_marks
            .iter()
            .map(|m| m.block.as_str())
            .collect();
        let blocks = self
            .blocks
            .iter()
            .filter(|m| !marked.contains(m.ulid.as_str()))
            .map(|meta| Arc::new(Block { meta: meta.clone() }))
            .collect();
        live(blocks)
    }
}

/// `blocks` without those a compacted block among them replaces, oldest first.
pub fn live(mut blocks: Vec<Arc<Block>>) -> Vec<Arc<Block>> {
    let replaced: HashSet<String> = blocks
        .iter()
        .filter_map(|b| b.meta.compaction.as_ref())
        .flat_map(|c| c.sources.iter().cloned())
        .collect();
    blocks.retain(|b| !replaced.contains(&b.meta.ulid));
    blocks.sort_by(|a, b| a.meta.ulid.cmp(&b.meta.ulid));
    blocks.dedup_by(|a, b| a.meta.ulid == b.meta.ulid);
    blocks
}

/// Where a listing of the blocks uploaded after `listed_at_nanos` starts.
pub fn tail_offset(tenant: &TenantId, listed_at_nanos: i64) -> Path {
    let from = Duration::from_nanos(listed_at_nanos.max(0) as u64).saturating_sub(TAIL_MARGIN);
    let ulid = ulid::Ulid::from_parts(from.as_millis() as u64, 0);
    Path::from(tenant.as_str()).join(ulid.to_string())
}

/// The complete blocks uploaded since `listed_at_nanos` (and some just before), without
/// listing the rest of the bucket.
pub async fn list_tail(
    store: &dyn ObjectStore,
    tenant: &TenantId,
    listed_at_nanos: i64,
) -> Result<BucketListing> {
    BucketListing::list(store, tenant, Some(&tail_offset(tenant, listed_at_nanos))).await
}

/// Marks a block for deletion (the mark object first, then callers update the index).
pub async fn mark_for_deletion(
    store: &dyn ObjectStore,
    tenant: &TenantId,
    block: &str,
    reason: &str,
    now_nanos: i64,
) -> Result<DeletionMark> {
    let mark = DeletionMark {
        block: block.to_string(),
        marked_at_nanos: now_nanos,
        reason: reason.to_string(),
    };
    let json = serde_json::to_vec_pretty(&mark).map_err(|e| Error::corrupt("deletion mark", e))?;
    store
        .put(
            &block_dir(tenant, block).join(DELETION_MARK_FILE),
            PutPayload::from(Bytes::from(json)),
        )
        .await?;
    Ok(mark)
}

async fn read_deletion_mark(
    store: &dyn ObjectStore,
    tenant: &TenantId,
    block: &str,
) -> Result<Option<DeletionMark>> {
    let path = block_dir(tenant, block).join(DELETION_MARK_FILE);
    let bytes = match store.get(&path).await {
        Ok(result) => result.bytes().await?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mark = serde_json::from_slice(&bytes)
        .map_err(|e| Error::corrupt(format!("deletion mark {path}"), e))?;
    Ok(Some(mark))
}

/// Deletes every object of a block folder, `meta.json` first so that a deletion cut short
/// leaves a partial folder (ignored by readers, collected later), never a block with missing
/// files.
pub async fn delete_block(store: &dyn ObjectStore, tenant: &TenantId, block: &str) -> Result<()> {
    let dir = block_dir(tenant, block);
    match store.delete(&dir.clone().join(META_FILE)).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let objects: Vec<_> = store.list(Some(&dir)).try_collect().await?;
    for object in objects {
        match store.delete(&object.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
