//! The write-ahead log: every acknowledged push is on disk (fsynced) before it is applied.
//!
//! Layout: `<wal dir>/<tenant>/<segment ulid>.wal`. A segment is a sequence of records, each
//! `u32 length (LE) | u32 crc32 of payload (LE) | payload`. One writer thread serves all
//! segments and commits in groups: it drains every pending record, writes them, then fsyncs each
//! touched file once before acknowledging them all.
//!
//! A segment belongs to one head generation; once that head is in a block whose `meta.json`
//! lists the segment, the segment is deleted. Replay skips segments a block already lists and
//! truncates a torn tail (a record cut by a crash was never acknowledged).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;

use parking_lot::Mutex;
use tokio::sync::oneshot;
use ulid::Ulid;

use crate::error::{Error, Result};
use crate::model::TenantId;

const HEADER_LEN: usize = 8;
/// Refuse to read a record claiming more than this (a corrupt length).
const MAX_RECORD_LEN: usize = 1 << 30;

/// A segment id: a ULID, so ids are never reused and sort by creation time.
pub type SegmentId = Ulid;

/// An open segment file, appended to only by the writer thread.
#[derive(Debug)]
pub struct Segment {
    pub id: SegmentId,
    path: PathBuf,
    file: Mutex<File>,
}

struct WriteRequest {
    segment: Arc<Segment>,
    record: Vec<u8>,
    done: oneshot::Sender<io::Result<()>>,
}

/// The WAL of one process: its folder and the group-commit writer thread.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    sender: Mutex<Option<mpsc::Sender<WriteRequest>>>,
    writer: Mutex<Option<thread::JoinHandle<()>>>,
}

impl Wal {
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display(), e))?;
        let (sender, receiver) = mpsc::channel::<WriteRequest>();
        let writer = thread::Builder::new()
            .name("hearth-wal".into())
            .spawn(move || group_commit_loop(receiver))
            .map_err(|e| Error::io("wal writer thread", e))?;
        Ok(Wal {
            dir,
            sender: Mutex::new(Some(sender)),
            writer: Mutex::new(Some(writer)),
        })
    }

    fn tenant_dir(&self, tenant: &TenantId) -> PathBuf {
        self.dir.join(tenant.as_str())
    }

    /// Tenants that have a WAL folder.
    pub fn tenants(&self) -> Result<Vec<TenantId>> {
        let mut tenants = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(|e| Error::io(self.dir.display(), e))? {
            let entry = entry.map_err(|e| Error::io(self.dir.display(), e))?;
            if entry.path().is_dir()
                && let Some(name) = entry.file_name().to_str()
                && let Ok(tenant) = TenantId::new(name)
            {
                tenants.push(tenant);
            }
        }
        tenants.sort();
        Ok(tenants)
    }

    /// A tenant's segments, oldest first.
    pub fn segments(&self, tenant: &TenantId) -> Result<Vec<SegmentId>> {
        let dir = self.tenant_dir(tenant);
        if !dir.exists() {
            return Ok(Vec::new());
        }
        let mut ids = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| Error::io(dir.display(), e))? {
            let entry = entry.map_err(|e| Error::io(dir.display(), e))?;
            let name = entry.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".wal")) else {
                continue;
            };
            match Ulid::from_string(stem) {
                Ok(id) => ids.push(id),
                Err(_) => {
                    tracing::warn!(file = %entry.path().display(), "ignoring a file that is not a wal segment")
                }
            }
        }
        ids.sort();
        Ok(ids)
    }

    fn segment_path(&self, tenant: &TenantId, id: SegmentId) -> PathBuf {
        self.tenant_dir(tenant).join(format!("{id}.wal"))
    }

    /// Creates a new, empty segment and makes its directory entry durable.
    pub fn create_segment(&self, tenant: &TenantId) -> Result<Arc<Segment>> {
        let dir = self.tenant_dir(tenant);
        fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display(), e))?;
        let id = Ulid::new();
        let path = self.segment_path(tenant, id);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(path.display(), e))?;
        sync_dir(&dir)?;
        Ok(Arc::new(Segment {
            id,
            path,
            file: Mutex::new(file),
        }))
    }

    /// Appends a record and returns once it is fsynced.
    pub async fn append(&self, segment: &Arc<Segment>, record: Vec<u8>) -> Result<()> {
        let (done, wait) = oneshot::channel();
        let request = WriteRequest {
            segment: Arc::clone(segment),
            record,
            done,
        };
        let sent = match self.sender.lock().as_ref() {
            Some(sender) => sender.send(request).is_ok(),
            None => false,
        };
        if !sent {
            return Err(Error::ShuttingDown);
        }
        match wait.await {
            Ok(result) => result.map_err(|e| Error::io(segment.path.display(), e)),
            Err(_) => Err(Error::ShuttingDown),
        }
    }

    /// Reads a segment's records in order. A torn or corrupt tail is cut off the file.
    pub fn replay(
        &self,
        tenant: &TenantId,
        id: SegmentId,
        mut apply: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<usize> {
        let path = self.segment_path(tenant, id);
        let file = File::open(&path).map_err(|e| Error::io(path.display(), e))?;
        let mut reader = BufReader::new(file);
        let mut good_len = 0u64;
        let mut records = 0;
        let mut payload = Vec::new();
        loop {
            match read_record(&mut reader, &mut payload) {
                Ok(true) => {
                    apply(&payload)?;
                    good_len += (HEADER_LEN + payload.len()) as u64;
                    records += 1;
                }
                Ok(false) => break,
                Err(reason) => {
                    tracing::warn!(
                        segment = %path.display(),
                        offset = good_len,
                        reason,
                        "truncating the wal segment after its last complete record"
                    );
                    let file = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(|e| Error::io(path.display(), e))?;
                    file.set_len(good_len)
                        .and_then(|_| file.sync_all())
                        .map_err(|e| Error::io(path.display(), e))?;
                    break;
                }
            }
        }
        Ok(records)
    }

    pub fn delete_segment(&self, tenant: &TenantId, id: SegmentId) -> Result<()> {
        let path = self.segment_path(tenant, id);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(path.display(), e)),
        }
    }

    /// Stops the writer thread after it has written everything already sent.
    pub fn close(&self) {
        self.sender.lock().take();
        if let Some(writer) = self.writer.lock().take() {
            let _ = writer.join();
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.close();
    }
}

/// Reads one record into `payload`: `Ok(false)` at a clean end, `Err` on a torn or bad record.
fn read_record(reader: &mut impl Read, payload: &mut Vec<u8>) -> Result<bool, &'static str> {
    let mut header = [0u8; HEADER_LEN];
    let mut filled = 0;
    while filled < HEADER_LEN {
        match reader.read(&mut header[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err("torn record header"),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err("read error"),
        }
    }
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    if len > MAX_RECORD_LEN {
        return Err("record length out of range");
    }
    payload.resize(len, 0);
    reader
        .read_exact(payload)
        .map_err(|_| "torn record payload")?;
    if crc32fast::hash(payload) != crc {
        return Err("record checksum mismatch");
    }
    Ok(true)
}

fn frame(record: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(record.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(record).to_le_bytes());
    out.extend_from_slice(record);
}

fn group_commit_loop(receiver: mpsc::Receiver<WriteRequest>) {
    while let Ok(first) = receiver.recv() {
        let mut group = vec![first];
        group.extend(receiver.try_iter());
        // Write each segment's records in one go, then fsync each segment once.
        let mut order: Vec<Arc<Segment>> = Vec::new();
        for request in &group {
            if !order.iter().any(|s| Arc::ptr_eq(s, &request.segment)) {
                order.push(Arc::clone(&request.segment));
            }
        }
        let mut results: Vec<(Arc<Segment>, io::Result<()>)> = Vec::new();
        let mut buffer = Vec::new();
        for segment in order {
            buffer.clear();
            for request in group.iter().filter(|r| Arc::ptr_eq(&r.segment, &segment)) {
                frame(&request.record, &mut buffer);
            }
            let result = {
                let mut file = segment.file.lock();
                file.write_all(&buffer).and_then(|_| file.sync_data())
            };
            results.push((segment, result));
        }
        for request in group {
            let result = results
                .iter()
                .find(|(s, _)| Arc::ptr_eq(s, &request.segment))
                .map(|(_, r)| match r {
                    Ok(()) => Ok(()),
                    Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                })
                .unwrap_or(Ok(()));
            let _ = request.done.send(result);
        }
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir.display(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_survive_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path()).unwrap();
        let tenant = TenantId::new("t").unwrap();
        let segment = wal.create_segment(&tenant).unwrap();
        wal.append(&segment, b"one".to_vec()).await.unwrap();
        wal.append(&segment, b"two".to_vec()).await.unwrap();
        // A crash in the middle of a third record.
        {
            let mut file = OpenOptions::new().append(true).open(&segment.path).unwrap();
            file.write_all(&[9, 0, 0, 0, 1, 2]).unwrap();
        }
        let mut seen = Vec::new();
        let n = wal
            .replay(&tenant, segment.id, |r| {
                seen.push(r.to_vec());
                Ok(())
            })
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(seen, vec![b"one".to_vec(), b"two".to_vec()]);
        let len = fs::metadata(&segment.path).unwrap().len();
        assert_eq!(len, 2 * HEADER_LEN as u64 + 6);
        assert_eq!(wal.segments(&tenant).unwrap(), vec![segment.id]);
    }

    #[tokio::test]
    async fn a_flipped_bit_stops_replay() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path()).unwrap();
        let tenant = TenantId::new("t").unwrap();
        let segment = wal.create_segment(&tenant).unwrap();
        wal.append(&segment, b"good".to_vec()).await.unwrap();
        wal.append(&segment, b"flipped".to_vec()).await.unwrap();
        let mut bytes = fs::read(&segment.path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&segment.path, bytes).unwrap();
        let n = wal.replay(&tenant, segment.id, |_| Ok(())).unwrap();
        assert_eq!(n, 1);
    }
}
