//! The bucket as the engine reads it: [`MeteredStore`] counts the requests and bytes that
//! reach object storage (for `/metrics`), and [`CachedStore`] keeps byte ranges of block files
//! on local disk, bounded and least-recently-used first out, so a warm query asks the bucket
//! for nothing. Block files never change once written (a block is replaced, never edited),
//! which is what makes caching them by (path, range) safe.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};
use parking_lot::Mutex;

/// Requests and bytes that reached the bucket since start.
#[derive(Debug, Default)]
pub struct StoreStats {
    pub gets: AtomicU64,
    pub get_bytes: AtomicU64,
    pub heads: AtomicU64,
    pub puts: AtomicU64,
    pub put_bytes: AtomicU64,
    pub lists: AtomicU64,
    pub deletes: AtomicU64,
    /// Ranges served from the local cache instead.
    pub cache_hits: AtomicU64,
    pub cache_hit_bytes: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Counts what passes through to `inner`.
#[derive(Debug)]
pub struct MeteredStore {
    inner: Arc<dyn ObjectStore>,
    stats: Arc<StoreStats>,
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn ObjectStore>, stats: Arc<StoreStats>) -> Self {
        MeteredStore { inner, stats }
    }
}

impl fmt::Display for MeteredStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inner)
    }
}

#[async_trait]
impl ObjectStore for MeteredStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        add(&self.stats.puts, 1);
        add(&self.stats.put_bytes, payload.content_length() as u64);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        add(&self.stats.puts, 1);
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let head = options.head;
        let result = self.inner.get_opts(location, options).await?;
        if head {
            add(&self.stats.heads, 1);
        } else {
            add(&self.stats.gets, 1);
            add(&self.stats.get_bytes, result.range.end - result.range.start);
        }
        Ok(result)
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        // The inner store coalesces nearby ranges into one request (as object_store does for
        // every backend): counted that way.
        add(&self.stats.gets, coalesced(ranges));
        add(
            &self.stats.get_bytes,
            ranges.iter().map(|r| r.end - r.start).sum(),
        );
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let stats = Arc::clone(&self.stats);
        let locations = locations
            .inspect_ok(move |_| add(&stats.deletes, 1))
            .boxed();
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        add(&self.stats.lists, 1);
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        add(&self.stats.lists, 1);
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        add(&self.stats.lists, 1);
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

/// How many requests `ranges` become once ranges less than
/// [`object_store::OBJECT_STORE_COALESCE_DEFAULT`] apart are merged.
fn coalesced(ranges: &[Range<u64>]) -> u64 {
    let mut sorted: Vec<&Range<u64>> = ranges.iter().collect();
    sorted.sort_by_key(|r| r.start);
    let mut requests = 0;
    let mut end: Option<u64> = None;
    for range in sorted {
        match end {
            Some(e)
                if range.start <= e.saturating_add(object_store::OBJECT_STORE_COALESCE_DEFAULT) =>
            {
                end = Some(e.max(range.end));
            }
            _ => {
                requests += 1;
                end = Some(range.end);
            }
        }
    }
    requests
}

/// Whether an object never changes once written: the Parquet files of blocks.
fn immutable(location: &Path) -> bool {
    location.as_ref().ends_with(".parquet")
}

/// One cached range.
#[derive(Debug)]
struct Entry {
    file: PathBuf,
    size: u64,
    meta: ObjectMeta,
    used: u64,
}

#[derive(Debug, Default)]
struct CacheState {
    entries: HashMap<(Path, u64, u64), Entry>,
    bytes: u64,
    clock: u64,
    next_file: u64,
}

/// Byte ranges of block files kept in a local folder, at most `max_bytes` of them.
#[derive(Debug)]
pub struct CachedStore {
    inner: Arc<dyn ObjectStore>,
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<CacheState>,
    stats: Arc<StoreStats>,
}

impl CachedStore {
    /// A cache in `dir` (emptied first: what a previous process left is not trusted).
    pub fn new(
        inner: Arc<dyn ObjectStore>,
        dir: PathBuf,
        max_bytes: u64,
        stats: Arc<StoreStats>,
    ) -> std::io::Result<Self> {
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        Ok(CachedStore {
            inner,
            dir,
            max_bytes,
            state: Mutex::default(),
            stats,
        })
    }

    /// The cached bytes of `range` of `location`, if any.
    async fn lookup(&self, key: &(Path, u64, u64)) -> Option<(Bytes, ObjectMeta)> {
        let (file, meta) = {
            let mut state = self.state.lock();
            state.clock += 1;
            let clock = state.clock;
            let entry = state.entries.get_mut(key)?;
            entry.used = clock;
            (entry.file.clone(), entry.meta.clone())
        };
        let bytes = tokio::fs::read(&file).await.ok()?;
        (bytes.len() as u64 == key.2 - key.1).then(|| (Bytes::from(bytes), meta))
    }

    /// Keeps `bytes`, evicting the least recently used ranges past the limit.
    async fn insert(&self, key: (Path, u64, u64), bytes: &Bytes, meta: &ObjectMeta) {
        let size = bytes.len() as u64;
        if size == 0 || size > self.max_bytes / 2 {
            return;
        }
        let (file, evicted) = {
            let mut state = self.state.lock();
            if state.entries.contains_key(&key) {
                return;
            }
            state.next_file += 1;
            let file = self.dir.join(format!("{:016x}", state.next_file));
            let mut evicted = Vec::new();
            while state.bytes + size > self.max_bytes {
                let Some(oldest) = state
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.used)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                if let Some(entry) = state.entries.remove(&oldest) {
                    state.bytes -= entry.size;
                    evicted.push(entry.file);
                }
            }
            (file, evicted)
        };
        for old in evicted {
            let _ = tokio::fs::remove_file(old).await;
        }
        if tokio::fs::write(&file, bytes).await.is_err() {
            return; // a full or broken disk only costs the cache
        }
        let mut state = self.state.lock();
        state.clock += 1;
        let used = state.clock;
        state.bytes += size;
        state.entries.insert(
            key,
            Entry {
                file,
                size,
                meta: meta.clone(),
                used,
            },
        );
    }
}

impl fmt::Display for CachedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (cached in {})", self.inner, self.dir.display())
    }
}

#[async_trait]
impl ObjectStore for CachedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let range = match &options.range {
            Some(GetRange::Bounded(range)) if immutable(location) && !options.head => range.clone(),
            _ => return self.inner.get_opts(location, options).await,
        };
        let key = (location.clone(), range.start, range.end);
        if let Some((bytes, meta)) = self.lookup(&key).await {
            add(&self.stats.cache_hits, 1);
            add(&self.stats.cache_hit_bytes, bytes.len() as u64);
            return Ok(GetResult {
                payload: GetResultPayload::Stream(
                    futures::stream::once(async { Ok(bytes) }).boxed(),
                ),
                meta,
                range,
                attributes: Default::default(),
            });
        }
        let result = self.inner.get_opts(location, options).await?;
        let (meta, range, attributes) = (
            result.meta.clone(),
            result.range.clone(),
            result.attributes.clone(),
        );
        let bytes = result.bytes().await?;
        self.insert(key, &bytes, &meta).await;
        Ok(GetResult {
            payload: GetResultPayload::Stream(futures::stream::once(async { Ok(bytes) }).boxed()),
            meta,
            range,
            attributes,
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        // Deleted blocks are never read again; their cached ranges age out.
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn ranges_of_block_files_are_served_from_disk_within_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let stats = Arc::new(StoreStats::default());
        let bucket: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let metered: Arc<dyn ObjectStore> =
            Arc::new(MeteredStore::new(Arc::clone(&bucket), Arc::clone(&stats)));
        let cache =
            CachedStore::new(metered, dir.path().join("cache"), 2500, Arc::clone(&stats)).unwrap();
        let file = Path::from("t/block/samples.parquet");
        let data: Vec<u8> = (0..2048u32).map(|i| i as u8).collect();
        bucket
            .put(&file, PutPayload::from(data.clone()))
            .await
            .unwrap();

        let first = cache.get_range(&file, 100..300).await.unwrap();
        assert_eq!(first.as_ref(), &data[100..300]);
        assert_eq!(stats.gets.load(Ordering::Relaxed), 1);
        let again = cache.get_range(&file, 100..300).await.unwrap();
        assert_eq!(again, first);
        assert_eq!(
            stats.gets.load(Ordering::Relaxed),
            1,
            "served from the cache"
        );
        assert_eq!(stats.cache_hits.load(Ordering::Relaxed), 1);

        // Past the limit the least recently used range goes.
        cache.get_range(&file, 0..1000).await.unwrap();
        cache.get_range(&file, 1000..2000).await.unwrap();
        cache.get_range(&file, 100..300).await.unwrap();
        cache.get_range(&file, 1048..2048).await.unwrap();
        assert!(cache.state.lock().bytes <= 2500);
        let gets = stats.gets.load(Ordering::Relaxed);
        assert_eq!(gets, 4);
        cache.get_range(&file, 100..300).await.unwrap();
        assert_eq!(
            stats.gets.load(Ordering::Relaxed),
            gets,
            "recently used: kept"
        );
        cache.get_range(&file, 0..1000).await.unwrap();
        assert_eq!(
            stats.gets.load(Ordering::Relaxed),
            gets + 1,
            "least recently used: evicted"
        );
        let gets = gets + 1;

        // Mutable objects (meta.json, the index) always go to the bucket.
        let meta = Path::from("t/block/meta.json");
        bucket
            .put(&meta, PutPayload::from(vec![1u8; 10]))
            .await
            .unwrap();
        cache.get_range(&meta, 0..5).await.unwrap();
        cache.get_range(&meta, 0..5).await.unwrap();
        assert_eq!(stats.gets.load(Ordering::Relaxed), gets + 2);
    }
}
