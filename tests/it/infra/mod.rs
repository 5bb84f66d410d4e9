//! Smoke tests for the production-style test infrastructure: each starts one
//! component from the installed binaries and checks it really works.

mod postgres;
mod redis;

/// Runs a blocking harness constructor off the async runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("start service")
}
