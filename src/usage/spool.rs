//! The spool: usage records waiting on disk while the database is unreachable
//! (or the in-memory queue is full), replayed in order when it answers.
//!
//! Records are appended to an open segment `<seq>.open`, one line each:
//! `<crc32 hex> <json>`. A segment is sealed (fsync, rename to `<seq>.spool`)
//! before it is replayed; a crash leaves `.open` segments that the next start
//! seals. Replay reads segments oldest first; a line whose checksum does not
//! match (a write torn by a crash) is skipped and counted. The spool is bounded
//! by `usage.spool_max_bytes`; beyond it records are dropped and counted.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::record::UsageRecord;

const OPEN_EXT: &str = "open";
const SEALED_EXT: &str = "spool";
/// Seal and start a new segment past this size, so replay works in pieces.
const SEGMENT_BYTES: u64 = 4 << 20;

struct Open {
    seq: u64,
    file: File,
    bytes: u64,
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    used: AtomicU64,
    state: Mutex<State>,
}

struct State {
    next_seq: u64,
    open: Option<Open>,
}

/// One record as a line: `<crc32 hex> <json>\n` (the spool's and the journal's format).
pub fn encode(r: &UsageRecord, out: &mut Vec<u8>) -> io::Result<()> {
    let start = out.len();
    out.extend_from_slice(b"00000000 ");
    serde_json::to_writer(&mut *out, r).map_err(io::Error::other)?;
    let crc = crc32fast::hash(&out[start + 9..]);
    let mut hex = [0u8; 8];
    for (i, b) in hex.iter_mut().enumerate() {
        *b = b"0123456789abcdef"[((crc >> (28 - 4 * i)) & 0xf) as usize];
    }
    out[start..start + 8].copy_from_slice(&hex);
    out.push(b'\n');
    Ok(())
}

/// A segment's sequence number and, for segments named since processes
/// share a spool (restarts with `serve --upgrade`), the writer's pid.
fn name_of(path: &Path) -> Option<(u64, Option<u32>)> {
    let stem = path.file_stem()?.to_str()?;
    match stem.split_once('-') {
        Some((seq, pid)) => Some((seq.parse().ok()?, Some(pid.parse().ok()?))),
        None => Some((stem.parse().ok()?, None)),
    }
}

fn segment(dir: &Path, seq: u64, ext: &str) -> PathBuf {
    dir.join(format!("{seq:020}-{}.{ext}", std::process::id()))
}

/// Whether another live process owns a segment (it will seal it itself).
fn owned_by_other(pid: Option<u32>) -> bool {
    let Some(pid) = pid.filter(|p| *p != std::process::id()) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    libc::pid_t::try_from(pid).is_ok_and(|p| unsafe { libc::kill(p, 0) } == 0)
}

impl Spool {
    /// Opens (creating) the spool directory and seals segments a crash left
    /// open (not those of another live process writing to the same spool).
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Spool> {
        fs::create_dir_all(dir)?;
        let mut used = 0;
        let mut next_seq = 1;
        for entry in fs::read_dir(dir)? {
            let mut path = entry?.path();
            let Some((seq, pid)) = name_of(&path) else {
                continue;
            };
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            if ext == OPEN_EXT && !owned_by_other(pid) {
                let sealed = path.with_extension(SEALED_EXT);
                fs::rename(&path, &sealed)?;
                path = sealed;
            } else if ext != SEALED_EXT && ext != OPEN_EXT {
                continue;
            }
            used += fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            next_seq = next_seq.max(seq + 1);
        }
        Ok(Spool {
            dir: dir.to_owned(),
            max_bytes,
            used: AtomicU64::new(used),
            state: Mutex::new(State {
                next_seq,
                open: None,
            }),
        })
    }

    pub fn used_bytes(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Appends records in order; returns how many were stored. The rest did not
    /// fit under the bound and are the caller's to count as dropped.
    pub fn append(&self, records: &[UsageRecord]) -> io::Result<usize> {
        let mut lines = Vec::with_capacity(records.len() * 256);
        let mut stored = 0;
        // Held from the bound check to the write: concurrent appenders (proxy
        // threads with a full queue, the writer) cannot overshoot the bound.
        let mut st = self.state.lock();
        let mut used = self.used_bytes();
        for r in records {
            let before = lines.len();
            encode(r, &mut lines)?;
            let line_len = (lines.len() - before) as u64;
            if used + line_len > self.max_bytes {
                lines.truncate(before);
                break;
            }
            used += line_len;
            stored += 1;
        }
        if stored == 0 {
            return Ok(0);
        }
        if st.open.is_none() {
            let seq = st.next_seq;
            st.next_seq += 1;
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(segment(&self.dir, seq, OPEN_EXT))?;
            st.open = Some(Open {
                seq,
                file,
                bytes: 0,
            });
        }
        if let Some(open) = st.open.as_mut() {
            open.file.write_all(&lines)?;
            open.bytes += lines.len() as u64;
        }
        self.used.fetch_add(lines.len() as u64, Ordering::Relaxed);
        if st.open.as_ref().is_some_and(|o| o.bytes >= SEGMENT_BYTES) {
            Self::seal_locked(&self.dir, &mut st)?;
        }
        Ok(stored)
    }

    fn seal_locked(dir: &Path, st: &mut State) -> io::Result<()> {
        if let Some(open) = st.open.take() {
            open.file.sync_all()?;
            fs::rename(
                segment(dir, open.seq, OPEN_EXT),
                segment(dir, open.seq, SEALED_EXT),
            )?;
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    /// Makes everything appended so far durable and replayable.
    pub fn seal(&self) -> io::Result<()> {
        Self::seal_locked(&self.dir, &mut self.state.lock())
    }

    /// Sealed segments, oldest first.
    pub fn segments(&self) -> io::Result<Vec<PathBuf>> {
        let mut segs: Vec<((u64, Option<u32>), PathBuf)> = fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().and_then(|e| e.to_str()) == Some(SEALED_EXT))
            .filter_map(|p| name_of(&p).map(|s| (s, p)))
            .collect();
        segs.sort();
        Ok(segs.into_iter().map(|(_, p)| p).collect())
    }

    /// Reads a segment: its records, and how many lines were damaged.
    pub fn read(path: &Path) -> io::Result<(Vec<UsageRecord>, usize)> {
        let mut records = Vec::new();
        let mut damaged = 0;
        for line in BufReader::new(File::open(path)?).split(b'\n') {
            let line = line?;
            let parsed = (line.len() > 9 && line[8] == b' ')
                .then(|| {
                    let crc =
                        u32::from_str_radix(std::str::from_utf8(&line[..8]).ok()?, 16).ok()?;
                    (crc32fast::hash(&line[9..]) == crc).then_some(())?;
                    serde_json::from_slice::<UsageRecord>(&line[9..]).ok()
                })
                .flatten();
            match parsed {
                Some(r) => records.push(r),
                None => damaged += 1,
            }
        }
        Ok((records, damaged))
    }

    /// Deletes a replayed segment (another process sharing the spool may
    /// have replayed and removed it already).
    pub fn remove(&self, path: &Path) -> io::Result<()> {
        let len = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        match fs::remove_file(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            r => r?,
        }
        self.used
            .fetch_sub(len.min(self.used_bytes()), Ordering::Relaxed);
        Ok(())
    }

    pub fn has_open_data(&self) -> bool {
        self.state.lock().open.as_ref().is_some_and(|o| o.bytes > 0)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::outcome::Outcome;
    use uuid::Uuid;

    pub fn rec(i: u128) -> UsageRecord {
        UsageRecord {
            id: Uuid::from_u128(i),
            request_id: format!("r{i}"),
            ts_ms: 1_700_000_000_000 + i as i64,
            key_id: None,
            owner_id: Some("o".into()),
            route: Some("api".into()),
            method: "GET".into(),
            status: 200,
            outcome: Outcome::Ok,
            latency_us: 120,
            upstream_latency_us: Some(80),
            bytes_in: 0,
            bytes_out: 12,
            client_ip: Some("127.0.0.1".parse().expect("ip")),
            deprecated_key: false,
            credits: 0,
            charged_to: None,
        }
    }

    #[test]
    fn records_survive_in_order_across_reopen() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Spool::open(dir.path(), 1 << 20).expect("open");
        assert_eq!(s.append(&[rec(1), rec(2)]).expect("append"), 2);
        assert_eq!(s.append(&[rec(3)]).expect("append"), 1);
        drop(s); // a crash: the segment is still .open
        let s = Spool::open(dir.path(), 1 << 20).expect("reopen");
        s.append(&[rec(4)]).expect("append");
        s.seal().expect("seal");
        let segs = s.segments().expect("segments");
        assert_eq!(segs.len(), 2);
        let all: Vec<u128> = segs
            .iter()
            .flat_map(|p| Spool::read(p).expect("read").0)
            .map(|r| r.id.as_u128())
            .collect();
        assert_eq!(all, vec![1, 2, 3, 4]);
        for p in &segs {
            s.remove(p).expect("remove");
        }
        assert_eq!(s.used_bytes(), 0);
    }

    #[test]
    fn torn_lines_are_skipped_and_counted() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Spool::open(dir.path(), 1 << 20).expect("open");
        s.append(&[rec(1), rec(2)]).expect("append");
        s.seal().expect("seal");
        let path = s.segments().expect("segments").remove(0);
        let mut data = fs::read(&path).expect("read");
        data.extend_from_slice(b"0badc0de {\"id\":\"trunc");
        let mid = data.iter().position(|b| *b == b'{').expect("json") + 5;
        data[mid] ^= 0x20; // corrupt the first record
        fs::write(&path, data).expect("write");
        let (records, damaged) = Spool::read(&path).expect("read");
        assert_eq!(records.len(), 1);
        assert_eq!(damaged, 2);
    }

    #[test]
    fn the_bound_is_respected() {
        let dir = tempfile::tempdir().expect("tmp");
        let one = serde_json::to_vec(&rec(1)).expect("json").len() as u64 + 10;
        let s = Spool::open(dir.path(), one * 3).expect("open");
        let batch: Vec<_> = (0..5).map(rec).collect();
        assert_eq!(s.append(&batch).expect("append"), 3);
        assert_eq!(s.append(&batch).expect("append"), 0);
        assert!(s.used_bytes() <= one * 3);
    }
}
