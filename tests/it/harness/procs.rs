//! Child processes for test services (postgres, redis-server).
//!
//! Children are spawned from one long-lived thread with a parent-death signal,
//! so they die with the test process even if it is killed. Services kept for
//! the whole run (in statics, never dropped) are stopped and their scratch
//! directories removed when the test process exits.

use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::{Mutex, Once, OnceLock};
use std::time::Duration;

type Request = (Command, mpsc::Sender<io::Result<Child>>);

fn spawner() -> &'static Mutex<mpsc::Sender<Request>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("test-service-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
                // Keep this thread (the children's parent) alive for the process.
                loop {
                    std::thread::park();
                }
            })
            .expect("spawner thread");
        Mutex::new(tx)
    })
}

/// Spawns `cmd` so that it receives `death_signal` when the test process ends.
pub fn spawn(mut cmd: Command, death_signal: i32) -> io::Result<Child> {
    // SAFETY: prctl is async-signal-safe; runs in the child before exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, death_signal as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (tx, rx) = mpsc::channel();
    spawner()
        .lock()
        .expect("spawner")
        .send((cmd, tx))
        .map_err(|_| io::Error::other("spawner gone"))?;
    let child = rx.recv().map_err(|_| io::Error::other("spawner gone"))??;
    at_exit_cleanup();
    CHILDREN.lock().expect("children").push(child.id());
    Ok(child)
}

/// Every child spawned, and every scratch directory not yet dropped.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static LIVE_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn at_exit_cleanup() {
    static ONCE: Once = Once::new();
    // SAFETY: registers a plain function with no preconditions.
    ONCE.call_once(|| unsafe {
        libc::atexit(clean_up);
    });
}

/// At exit: SIGKILLs the children still ours (a reaped child's pid may have
/// been reused: only a process whose parent is this one is killed), then
/// removes the scratch directories nothing dropped.
extern "C" fn clean_up() {
    let children = CHILDREN.lock().map(|c| c.clone()).unwrap_or_default();
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    for pid in children {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1));
        if ppid == Some(me.to_string().as_str()) {
            // SAFETY: kill(2) on our own child.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
        }
    }
    let dirs = LIVE_DIRS
        .lock()
        .map(|mut d| std::mem::take(&mut *d))
        .unwrap_or_default();
    if !dirs.is_empty() {
        std::thread::sleep(Duration::from_millis(50));
    }
    for dir in dirs {
        for _ in 0..3 {
            if std::fs::remove_dir_all(&dir).is_ok() || !dir.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Finds an installed program, in PATH or in the given extra directories.
pub fn find(program: &str, extra_globs: &[&str]) -> Option<PathBuf> {
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join(program);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    for pattern in extra_globs {
        // Only "<dir>/*/<rest>" patterns are needed (e.g. /usr/lib/postgresql/*/bin).
        if let Some((base, rest)) = pattern.split_once("/*/") {
            let mut found: Vec<PathBuf> = std::fs::read_dir(base)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path().join(rest).join(program))
                .filter(|p| p.is_file())
                .collect();
            found.sort();
            if let Some(p) = found.pop() {
                return Some(p);
            }
        }
    }
    None
}

/// A free port that this process has not handed out before, so two services
/// started in parallel never race for the same one.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let mut given = GIVEN.lock().expect("ports");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A directory removed on drop.
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    pub fn new(tag: &str) -> ScratchDir {
        let p = std::env::temp_dir().join(format!(
            "keygate-test-{tag}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&p).expect("scratch dir");
        at_exit_cleanup();
        LIVE_DIRS.lock().expect("scratch dirs").push(p.clone());
        ScratchDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Ok(mut live) = LIVE_DIRS.lock() {
            live.retain(|d| d != &self.0);
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on a pid we spawned.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}
