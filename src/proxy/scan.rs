//! The secret-scanning endpoint on the proxy listener: answered before
//! routing, by keygate itself. Reads the body (bounded in size and time),
//! hands it to the [`Scanner`] on the main runtime and waits for its answer
//! (GitHub expects the feedback in the response).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;
use serde_json::json;

use super::ctx::RequestCtx;
use crate::leak::signature::SignatureError;
use crate::leak::{Label, ScanError, Scanner};
use crate::metrics::{Metrics, ScanResult};

/// How long the whole body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
pub const KEY_ID_HEADER: &str = "github-public-key-identifier";
pub const SIGNATURE_HEADER: &str = "github-public-key-signature";

/// Why a report was refused before the scanner saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    Method,
    TooLarge,
    Unreadable,
    Unsigned,
}

/// How a request for the endpoint ends.
enum Answer {
    Feedback(Vec<crate::leak::Feedback>),
    Refused(Refused),
    Failed(ScanError),
}

impl Scanner {
    /// Whether the request is for the endpoint.
    pub fn serves(&self, req: &RequestHeader) -> bool {
        req.uri.path() == self.config.path
    }
}

/// Answers a request for the endpoint.
pub async fn serve(
    scanner: &Arc<Scanner>,
    session: &mut Session,
    ctx: &RequestCtx,
    metrics: &Metrics,
) {
    let (mut tp, mut fp) = (0, 0);
    let (status, body) = match report(scanner, session).await {
        Answer::Feedback(feedback) => {
            tp = feedback
                .iter()
                .filter(|f| f.label == Label::TruePositive)
                .count() as u64;
            fp = feedback.len() as u64 - tp;
            (200, Bytes::from(json!(feedback).to_string()))
        }
        Answer::Refused(r) => refused(r, ctx),
        Answer::Failed(e) => failed(&e, ctx),
    };
    metrics.scan_report(ScanResult::of_status(status), tp, fp);
    let mut h = match ResponseHeader::build(status, Some(5)) {
        Ok(h) => h,
        Err(_) => return,
    };
    let written = h
        .insert_header("content-type", "application/json")
        .and_then(|_| h.insert_header("content-length", body.len()))
        .and_then(|_| h.insert_header("cache-control", "no-store"))
        .and_then(|_| h.insert_header(super::headers::REQUEST_ID, ctx.request_id.clone()));
    if status == 405 {
        let _ = h.insert_header("allow", "POST");
    }
    if written.is_err() {
        return;
    }
    if !session.is_body_done() {
        session.set_keepalive(None);
    }
    if session
        .write_response_header(Box::new(h), false)
        .await
        .is_ok()
    {
        let _ = session.write_response_body(Some(body), true).await;
    }
}

/// The report's feedback, or why there is none.
async fn report(scanner: &Arc<Scanner>, session: &mut Session) -> Answer {
    let req = session.req_header();
    if req.method != http::Method::POST {
        return Answer::Refused(Refused::Method);
    }
    let header = |name: &str| {
        req.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (key_id, signature) = (header(KEY_ID_HEADER), header(SIGNATURE_HEADER));
    let max = scanner.config.max_body;
    let declared = req
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Answer::Refused(Refused::TooLarge);
    }
    let (Some(key_id), Some(signature)) = (key_id, signature) else {
        return Answer::Refused(Refused::Unsigned);
    };
    let body = match tokio::time::timeout(BODY_TIMEOUT, read_body(session, max)).await {
        Ok(Ok(b)) => b,
        Ok(Err(r)) => return Answer::Refused(r),
        Err(_) => return Answer::Refused(Refused::Unreadable),
    };
    match scanner.handle(key_id, signature, body).await {
        Ok(feedback) => Answer::Feedback(feedback),
        Err(e) => Answer::Failed(e),
    }
}

/// The whole body, at most `max` bytes.
async fn read_body(session: &mut Session, max: usize) -> Result<Bytes, Refused> {
    let mut body = BytesMut::new();
    while let Some(chunk) = session
        .read_request_body()
        .await
        .map_err(|_| Refused::Unreadable)?
    {
        if body.len() + chunk.len() > max {
            return Err(Refused::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn refused(r: Refused, ctx: &RequestCtx) -> (u16, Bytes) {
    let (status, message) = match r {
        Refused::Method => (405, "use POST".to_string()),
        Refused::TooLarge => (413, "the report is too large".to_string()),
        Refused::Unreadable => (400, "the report body could not be read".to_string()),
        Refused::Unsigned => (401, SignatureError::Unsigned.to_string()),
    };
    (status, error_body(&message, ctx))
}

/// The scanner's failure; a store failure is logged here (it names no
/// token) and GitHub gets only "try again".
fn failed(e: &ScanError, ctx: &RequestCtx) -> (u16, Bytes) {
    let message = match e {
        ScanError::Store(_) | ScanError::Task => {
            tracing::warn!(error = %e, request_id = ctx.request_id(), "secret scanning: report not handled");
            "temporarily unavailable; retry".to_string()
        }
        _ => e.to_string(),
    };
    (e.status(), error_body(&message, ctx))
}

fn error_body(message: &str, ctx: &RequestCtx) -> Bytes {
    let body = json!({"error": {"message": message, "request_id": ctx.request_id()}});
    Bytes::from(body.to_string())
}
