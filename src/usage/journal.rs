//! The journal: what the writer has taken from the queue but not yet settled
//! (written to the store, or to the spool), on disk, so that a crash
//! (`kill -9`) loses only what was still in the queue: at most one drain
//! tick of traffic (see [`super::writer`]).
//!
//! Files `<pid>-<seq>.journal` in a directory beside the spool. The writer
//! appends each drained chunk to the current file with one `write` (no
//! fsync: a killed process's writes are in the page cache; only a power loss
//! can lose them). When it cuts a batch to write, it [`Journal::cut`]s the
//! file too: the batch's records are in the sealed file, removed once the
//! batch is settled, while what is drained meanwhile goes to a new one. The
//! next start hands the journals of dead processes to the spool, whose replay
//! writes them; writes are idempotent by record id, so a batch written just
//! before a crash is not counted twice.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::record::UsageRecord;
use super::spool::{self, Spool};

const EXT: &str = "journal";

pub struct Journal {
    dir: PathBuf,
    seq: u64,
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
    len: u64,
}

/// A cut journal file: the records of one batch, removed once it is settled.
#[must_use = "a sealed journal is removed when its batch is settled"]
pub struct Sealed(Option<PathBuf>);

impl Sealed {
    /// The batch is in the store or the spool: its journal is not needed.
    pub fn settled(self) {
        if let Some(path) = self.0 {
            if let Err(e) = fs::remove_file(&path) {
                tracing::error!(error = %e, "usage: cannot remove a settled journal");
            }
        }
    }
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

/// The writer's pid of a journal file: `<pid>-<seq>.journal` (or `<pid>.journal`).
fn writer_pid(path: &Path) -> Option<u32> {
    if path.extension().and_then(|e| e.to_str()) != Some(EXT) {
        return None;
    }
    let stem = path.file_stem()?.to_str()?;
    stem.split('-').next()?.parse().ok()
}

fn open(dir: &Path, seq: u64) -> io::Result<(PathBuf, File)> {
    let path = dir.join(format!("{}-{seq}.{EXT}", std::process::id()));
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)?;
    Ok((path, file))
}

impl Journal {
    /// This process's journal, created empty.
    pub fn create(dir: &Path) -> io::Result<Journal> {
        fs::create_dir_all(dir)?;
        let (path, file) = open(dir, 0)?;
        Ok(Journal {
            dir: dir.to_owned(),
            seq: 0,
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

    /// Seals what was appended so far (a batch about to be written) and
    /// continues in a new file. If the new file cannot be made, the current
    /// one goes on: its settled records are replayed after a crash, which
    /// writes nothing twice.
    pub fn cut(&mut self) -> Sealed {
        if self.len == 0 {
            return Sealed(None);
        }
        match open(&self.dir, self.seq + 1) {
            Ok((path, file)) => {
                self.seq += 1;
                self.file = file;
                self.len = 0;
                Sealed(Some(std::mem::replace(&mut self.path, path)))
            }
            Err(e) => {
                tracing::error!(error = %e, "usage: cannot start a new journal file");
                Sealed(None)
            }
        }
    }

    /// A clean exit, everything settled: nothing is left to recover.
    pub fn remove(self) {
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
        let Some(pid) = writer_pid(&path) else {
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
        let recs: Vec<UsageRecord> = (0..4).map(spool::tests::rec).collect();
        j.append(&recs[..2]).expect("append");
        j.cut().settled();
        j.append(&recs[2..3]).expect("append");
        // Cut for a write that the crash interrupts: both files stay.
        let _in_flight = j.cut();
        j.append(&recs[3..]).expect("append");
        drop(j); // killed: the files stay, under our (now "previous") pid
        assert_eq!(recover(&jdir, &spool).expect("recover"), 2);
        assert_eq!(recover(&jdir, &spool).expect("again"), 0);
        spool.seal().expect("seal");
        let mut ids: Vec<u128> = spool
            .segments()
            .expect("segments")
            .iter()
            .flat_map(|p| Spool::read(p).expect("read").0)
            .map(|r| r.id.as_u128())
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, vec![2, 3]);
    }
}
