//! Running test services as an unprivileged system user when we are root
//! (Postgres and PgBouncer refuse to run as root).

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

/// `(uid, gid)` of a system user, or `None` when not root (then services run
/// as ourselves). Panics when root and the user does not exist.
pub fn service_ids(user: &str) -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = CString::new(user).expect("user name");
    // SAFETY: getpwnam returns a pointer to static storage or null.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(
        !pw.is_null(),
        "running as root needs a `{user}` system user (Debian's `postgresql` package creates it)"
    );
    // SAFETY: checked non-null above.
    let pw = unsafe { &*pw };
    Some((pw.pw_uid, pw.pw_gid))
}

/// The ids Postgres and PgBouncer run as.
pub fn postgres_ids() -> Option<(u32, u32)> {
    service_ids("postgres")
}

/// A command for `program` that runs as `ids` (if any).
pub fn command_as(program: &Path, ids: Option<(u32, u32)>) -> Command {
    let mut c = Command::new(program);
    if let Some((uid, gid)) = ids {
        c.uid(uid).gid(gid);
    }
    c
}

/// Gives `path` (not recursively) to `ids`, if any.
pub fn chown(path: &Path, ids: Option<(u32, u32)>) {
    if let Some((uid, gid)) = ids {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {path:?}: {e}"));
    }
}
