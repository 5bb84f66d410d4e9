//! The journal: what the writer has taken from the queue but not yet settled
//! (written to the store, or to the spool), on disk, so that a crash
//! (`kill -9`) loses only what was still in the queue: at most one drain
//! tick of traffic (see [`super::writer`]).
//!
//! One file per process, `<pid>.journal`, in a directory beside the spool.
//! The writer appends each drained chunk with one `write` (no fsync: a killed
//! process's writes are in the page cache; only a power loss can lose them)
//! and empties the file once the chunk is settled. The next start hands the
//! journals of dead processes to the spool, whose replay writes them; writes
//! are idempotent by record id, so nothing is counted twice.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, Write};
use std::path::{Path, PathBuf};

use super::record::UsageRecord;
use super::spool::{self, Spool};

const EXT: &str = "journal";

pub struct Journal {
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
    len: u64,
}

/// The journal directory for a spool directory: its sibling `<name>.journal`.
pub fn dir_for(spool_dir: &Path) -> PathBuf {
    let mut name = spool_dir.file_name().unwrap_or_default().to_os_string();
    name.push(".journal");
    spool_dir.with_file_name(name)
}

/// Whether a process with this pid runs (ours counts as not running: a
/// journal under our own pid is a previous run's).
fn running(pid: u32) -> bool {
    if pid == std::process::id() {
        return false;
    }
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

impl Journal {
    /// This process's journal, created empty.
    pub fn create(dir: &Path) -> io::Result<Journal> {
        fs::create_dir_all(dir)?;
        let path = dir.join(format!("{}.{EXT}", std::process::id()));
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)?;
        Ok(Journal {
            path,
            file,
            buf: Vec::with_capacity(64 << 10),
            len: 0,
        })
    }

    /// Appends records with one write.
    pub fn append(&mut self, records: &[UsageRecord]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        self.buf.clear();
        for r in records {
            spool::encode(r, &mut self.buf)?;
        }
        self.file.write_all(&self.buf)?;
        self.len += self.buf.len() as u64;
        Ok(())
    }

    /// Everything appended is settled: start over.
    pub fn clear(&mut self) -> io::Result<()> {
        if self.len == 0 {
            return Ok(());
        }
        self.file.set_len(0)?;
        self.file.rewind()?;
        self.len = 0;
        Ok(())
    }
}

impl Journal {
    /// A clean exit: nothing is left to recover.
    pub fn remove(&self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Moves the journals that crashed processes left into the spool (its replay
/// writes them to the store); returns how many records they held.
pub fn recover(dir: &Path, spool: &Spool) -> io::Result<usize> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(0);
    };
    let mut recovered = 0;
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        let pid = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<u32>().ok());
        let ours = path.extension().and_then(|e| e.to_str()) == Some(EXT);
        let Some(pid) = pid.filter(|_| ours) else {
            continue;
        };
        if running(pid) {
            continue; // a live process's (e.g. the one this upgrade replaces)
        }
        let (records, damaged) = Spool::read(&path)?;
        if damaged > 0 {
            tracing::warn!(damaged, path = %path.display(), "usage: torn journal lines skipped");
        }
        let stored = spool.append(&records)?;
        if stored < records.len() {
            tracing::warn!(
                dropped = records.len() - stored,
                "usage: spool full; journal records dropped"
            );
        }
        recovered += stored;
        fs::remove_file(&path)?;
    }
    Ok(recovered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_processs_journal_reaches_the_spool_once() {
        let base = tempfile::tempdir().expect("tmp");
        let spool_dir = base.path().join("spool");
        let jdir = dir_for(&spool_dir);
        assert_eq!(jdir, base.path().join("spool.journal"));
        let spool = Spool::open(&spool_dir, 1 << 20).expect("spool");
        let mut j = Journal::create(&jdir).expect("journal");
        let recs: Vec<UsageRecord> = (0..3).map(spool::tests::rec).collect();
        j.append(&recs[..2]).expect("append");
        j.clear().expect("clear");
        j.append(&recs[2..]).expect("append");
        drop(j); // killed: the file stays, under our (now "previous") pid
        assert_eq!(recover(&jdir, &spool).expect("recover"), 1);
        assert_eq!(recover(&jdir, &spool).expect("again"), 0);
        spool.seal().expect("seal");
        let ids: Vec<u128> = spool
            .segments()
            .expect("segments")
            .iter()
            .flat_map(|p| Spool::read(p).expect("read").0)
            .map(|r| r.id.as_u128())
            .collect();
        assert_eq!(ids, vec![2]);
    }
}
