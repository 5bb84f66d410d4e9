//! Whether the rate-limit backend is answering, for readiness and metrics.

use std::sync::atomic::{AtomicU8, Ordering};

use crate::config::OnBackendError;

#[derive(Debug)]
pub struct Health {
    state: AtomicU8,
    on_error: OnBackendError,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendState {
    Healthy,
    Degraded(OnBackendError),
}

impl BackendState {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendState::Healthy => "healthy",
            BackendState::Degraded(OnBackendError::Local) => "degraded_local",
            BackendState::Degraded(OnBackendError::Allow) => "degraded_allow",
            BackendState::Degraded(OnBackendError::Deny) => "degraded_deny",
        }
    }

    /// Whether requests can be served correctly in this state.
    pub fn can_serve(self) -> bool {
        !matches!(self, BackendState::Degraded(OnBackendError::Deny))
    }
}

impl Health {
    pub fn new(on_error: OnBackendError) -> Health {
        Health {
            state: AtomicU8::new(0),
            on_error,
        }
    }

    pub fn set_degraded(&self, degraded: bool) {
        self.state.store(u8::from(degraded), Ordering::Relaxed);
    }

    pub fn state(&self) -> BackendState {
        if self.state.load(Ordering::Relaxed) == 0 {
            BackendState::Healthy
        } else {
            BackendState::Degraded(self.on_error)
        }
    }
}
