//! Request bodies read with a limit, for the webhooks the operator tools receive
//! (Alertmanager's, at the alert sink and at the report server): a declared or actual length
//! over the limit is a 413, a broken read a 400, each with why.

use std::io::Read;

use tiny_http::Request;

/// The body of `request`, at most `max` bytes; else the status to answer and why.
pub fn read(request: &mut Request, max: u64) -> Result<Vec<u8>, (u16, String)> {
    if request.body_length().is_some_and(|n| n as u64 > max) {
        return Err((413, format!("body over {max} bytes")));
    }
    let mut bytes = Vec::new();
    request
        .as_reader()
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| (400, format!("reading the body: {e}")))?;
    if bytes.len() as u64 > max {
        return Err((413, format!("body over {max} bytes")));
    }
    Ok(bytes)
}
