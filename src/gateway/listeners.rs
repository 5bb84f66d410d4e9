//! The gateway's listening sockets: bound here, or taken over from the
//! process it replaces (`keygate serve --upgrade`), and handed on to the next
//! one. Sockets travel over a Unix socket with SCM_RIGHTS (Pingora's `Fds`);
//! the kernel keeps every accepted-but-not-served connection in the queue
//! while they change hands, so a restart drops none.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::path::Path;

use pingora_core::server::Fds;

use super::GatewayError;
use crate::config::Config;
use crate::proxy::listener;

/// Names the sockets travel under.
const PROXY: &str = "proxy";
const TLS: &str = "tls";
const ADMIN: &str = "admin";

pub struct Listeners {
    pub proxy: TcpListener,
    pub tls: Option<TcpListener>,
    pub admin: TcpListener,
}

/// The raw descriptors of a serving gateway's sockets, to hand over.
#[derive(Debug, Clone, Copy)]
pub struct Handover {
    proxy: RawFd,
    tls: Option<RawFd>,
    admin: RawFd,
}

#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("upgrade socket {path}: {source}")]
    Dir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("upgrade socket {path} is too long for a Unix socket (at most 100 bytes)")]
    PathTooLong { path: std::path::PathBuf },
    #[error("upgrade: handing the sockets over failed: {0}")]
    Transfer(#[source] nix::Error),
    #[error("upgrade: the old process did not hand over the {0} socket")]
    Missing(&'static str),
}

fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, GatewayError> {
    listener::bind(addr).map_err(|source| GatewayError::Bind { what, addr, source })
}

impl Listeners {
    pub fn bind(config: &Config) -> Result<Listeners, GatewayError> {
        Ok(Listeners {
            proxy: bind("gateway.listen", config.gateway.listen)?,
            tls: match &config.gateway.tls {
                Some(t) => Some(bind("gateway.tls.listen", t.listen)?),
                None => None,
            },
            admin: bind("admin.listen", config.admin.listen)?,
        })
    }

    pub fn handover(&self) -> Handover {
        Handover {
            proxy: self.proxy.as_raw_fd(),
            tls: self.tls.as_ref().map(AsRawFd::as_raw_fd),
            admin: self.admin.as_raw_fd(),
        }
    }

    /// Receives the sockets of the process being replaced; blocks until it
    /// sends them (Pingora retries for about 5 s). The socket's directory is
    /// made private first: whoever connects to it could hand us sockets.
    pub fn receive(config: &Config) -> Result<Listeners, UpgradeError> {
        let path = &config.gateway.upgrade_socket;
        let text = private_socket_path(path)?;
        let mut fds = Fds::new();
        fds.get_from_sock(text.as_str())
            .map_err(UpgradeError::Transfer)?;
        let take = |name: &'static str| -> Result<TcpListener, UpgradeError> {
            let fd = *fds.get(name).ok_or(UpgradeError::Missing(name))?;
            // SAFETY: the fd was just received over SCM_RIGHTS for us alone.
            Ok(unsafe { TcpListener::from_raw_fd(fd) })
        };
        Ok(Listeners {
            proxy: take(PROXY)?,
            tls: match config.gateway.tls {
                Some(_) => Some(take(TLS)?),
                None => None,
            },
            admin: take(ADMIN)?,
        })
    }
}

impl Handover {
    /// Sends the sockets to the process listening on `path` (which must
    /// already wait there; Pingora retries for about 5 s).
    pub fn send(&self, path: &Path) -> Result<usize, UpgradeError> {
        let text = private_socket_path(path)?;
        let mut fds = Fds::new();
        fds.add(PROXY.into(), self.proxy);
        if let Some(tls) = self.tls {
            fds.add(TLS.into(), tls);
        }
        fds.add(ADMIN.into(), self.admin);
        fds.send_to_sock(text.as_str())
            .map_err(UpgradeError::Transfer)
    }
}

/// The socket path as text, its directory created with mode 0700.
fn private_socket_path(path: &Path) -> Result<String, UpgradeError> {
    use std::os::unix::fs::PermissionsExt;
    let text = path.to_string_lossy().into_owned();
    if text.len() > 100 {
        return Err(UpgradeError::PathTooLong {
            path: path.to_owned(),
        });
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let err = |source| UpgradeError::Dir {
            path: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(text)
}
