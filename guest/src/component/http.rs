//! The refresh request over `wasi:http/outgoing-handler`, written and finished before it is
//! handed over. A body of known length passed on while the component still writes it can be
//! dropped by the sender once its bytes are out; the component's last flush then fails after the
//! endpoint has already answered — and a retry presents a spent refresh token. Written first,
//! nothing is left to fail once the request leaves. (waki writes after handing over, so the
//! request is made here, on the bindings of this world.)

use std::time::Duration;

use super::wasi::http::outgoing_handler;
use super::wasi::http::types::{
    ErrorCode, Fields, IncomingResponse, Method, OutgoingBody, OutgoingRequest, RequestOptions,
    Scheme,
};
use super::wasi::io::streams::StreamError;
use crate::error_words;
use crate::ports::{GrantRequest, HttpAnswer, HttpFailure};
use crate::scrub::scrub;
use crate::target::Target;

/// Largest request body written in one go (the stream's single-write limit).
const MAX_BODY: usize = 4096;

/// POST `request` as JSON with a `Content-Length`, bounding connect, first byte and each pause
/// by `timeout`, and reading at most `max_answer` bytes of the answer.
pub(super) fn post_json(
    request: &GrantRequest,
    timeout: Duration,
    max_answer: usize,
) -> Result<HttpAnswer, HttpFailure> {
    let target = Target::parse(&request.url).map_err(|why| HttpFailure::Unreachable(why.into()))?;
    let body = request.body.as_bytes();
    if body.len() > MAX_BODY {
        return Err(HttpFailure::Unreachable(
            "the request body is too large".into(),
        ));
    }
    let outgoing = outgoing_request(&target, &request.user_agent, body.len())?;
    write_body(&outgoing, body)?;
    let response = send(outgoing, timeout)?;
    read_answer(&response, max_answer)
}

/// The request's head: a JSON POST of `length` bytes to `target`.
fn outgoing_request(
    target: &Target,
    user_agent: &str,
    length: usize,
) -> Result<OutgoingRequest, HttpFailure> {
    let headers = Fields::from_list(&[
        ("content-type".into(), b"application/json".to_vec()),
        ("accept".into(), b"application/json".to_vec()),
        ("user-agent".into(), user_agent.as_bytes().to_vec()),
        ("content-length".into(), length.to_string().into_bytes()),
    ])
    .map_err(|e| failed(format!("a request header is invalid ({e:?})")))?;
    let outgoing = OutgoingRequest::new(headers);
    let scheme = if target.https {
        Scheme::Https
    } else {
        Scheme::Http
    };
    outgoing
        .set_method(&Method::Post)
        .and_then(|()| outgoing.set_scheme(Some(&scheme)))
        .and_then(|()| outgoing.set_authority(Some(&target.authority)))
        .and_then(|()| outgoing.set_path_with_query(Some(&target.path)))
        .map_err(|()| failed("the token URL cannot be requested".into()))?;
    Ok(outgoing)
}

/// The whole body, then `finish`, before the request is handed over: the host sees a complete
/// request or none.
fn write_body(outgoing: &OutgoingRequest, body: &[u8]) -> Result<(), HttpFailure> {
    let sink = outgoing
        .body()
        .map_err(|()| failed("the request has no body".into()))?;
    {
        let stream = sink
            .write()
            .map_err(|()| failed("the request body cannot be written".into()))?;
        stream
            .blocking_write_and_flush(body)
            .map_err(stream_failed)?;
    }
    OutgoingBody::finish(sink, None).map_err(code_failed)
}

/// Hand `outgoing` over and wait for the answer's head.
fn send(outgoing: OutgoingRequest, timeout: Duration) -> Result<IncomingResponse, HttpFailure> {
    let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
    let options = RequestOptions::new();
    // Each is only a request: the host may hold the exchange to tighter bounds.
    let _ = options.set_connect_timeout(Some(nanos));
    let _ = options.set_first_byte_timeout(Some(nanos));
    let _ = options.set_between_bytes_timeout(Some(nanos));
    let pending = outgoing_handler::handle(outgoing, Some(options)).map_err(code_failed)?;
    loop {
        match pending.get() {
            Some(Ok(Ok(response))) => return Ok(response),
            Some(Ok(Err(code))) => return Err(code_failed(code)),
            Some(Err(())) => return Err(failed("the answer was already taken".into())),
            None => pending.subscribe().block(),
        }
    }
}

/// Status, `Retry-After` and the body, capped at `max` bytes.
fn read_answer(response: &IncomingResponse, max: usize) -> Result<HttpAnswer, HttpFailure> {
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .into_iter()
        .next()
        .and_then(|value| String::from_utf8(value).ok());
    let incoming = response
        .consume()
        .map_err(|()| failed("the answer's body was already taken".into()))?;
    let mut body = Vec::new();
    {
        let stream = incoming
            .stream()
            .map_err(|()| failed("the answer's body cannot be read".into()))?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => {
                    body.extend_from_slice(&chunk);
                    if body.len() > max {
                        return Err(HttpFailure::TooLarge { limit: max });
                    }
                }
                Err(StreamError::Closed) => break,
                Err(e) => return Err(stream_failed(e)),
            }
        }
    }
    drop(incoming);
    Ok(HttpAnswer {
        status,
        retry_after,
        body,
    })
}

fn failed(why: String) -> HttpFailure {
    HttpFailure::Unreachable(scrub(&why))
}

fn code_failed(code: ErrorCode) -> HttpFailure {
    // Debug prints the case as `ErrorCode::ConnectionRefused`, which `describe` puts in words.
    let words = scrub(&error_words::describe(&format!("{code:?}")));
    match code {
        ErrorCode::TlsCertificateError => HttpFailure::Untrusted(words),
        _ => HttpFailure::Unreachable(words),
    }
}

fn stream_failed(error: StreamError) -> HttpFailure {
    let text = match error {
        StreamError::Closed => "StreamError::Closed".to_owned(),
        StreamError::LastOperationFailed(e) => {
            format!("StreamError::LastOperationFailed ({})", e.to_debug_string())
        }
    };
    failed(error_words::describe(&text))
}
