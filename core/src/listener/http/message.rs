//! The JSON of HTTP over Hybrid Connections: the service's `request` message, read with the
//! leniency of Microsoft's clients, and the listener's `response` message.

use serde_json::{json, Map, Value};

use crate::listener::http::response::Head;

/// Most request headers accepted; more is answered 431.
pub const MAX_REQUEST_HEADERS: usize = 256;

/// Most bytes of request header names and values accepted (the service sends at most
/// 32 KiB over the control channel); more is answered 431.
pub const MAX_REQUEST_HEADER_BYTES: usize = 64 * 1024;

/// A request's head, as the service describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The request's id, echoed in the response.
    pub id: String,
    /// Its rendezvous address, for a response that goes over a rendezvous.
    pub address: String,
    /// The request target as the sender sent it, `sb-hc-*` parameters removed.
    pub target: String,
    /// The method.
    pub method: String,
    /// The headers (one value per name, as the service folds repeats).
    pub headers: Vec<(String, String)>,
    /// The sender's address and port, where the service says.
    pub remote_address: Option<String>,
    /// See `remote_address`.
    pub remote_port: Option<u16>,
    /// A binary message with the body follows.
    pub body: bool,
}

/// What a `request` message asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestMessage {
    /// The request itself.
    Inline(RequestHead),
    /// Only its address: the request waits there (too large, chunked or slow for the
    /// control channel).
    Rendezvous {
        /// The rendezvous address.
        address: String,
    },
}

/// Why a `request` message cannot be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// Not a request at all (no address): ignored.
    Ignore(&'static str),
    /// A request whose headers are too many or too large: answered 431.
    HeadersTooLarge(Box<RequestHead>),
}

/// Reads the value of a `request` message. Microsoft's clients disagree on what marks an
/// address-only message (hyco-https: no `method`; .NET: no `body`), so a request is
/// inline only when it has both.
pub fn parse_request(r: &Value) -> Result<RequestMessage, Unusable> {
    let text = |k: &str| r.get(k).and_then(Value::as_str);
    let address = text("address").ok_or(Unusable::Ignore("a request without an address"))?;
    let (Some(method), Some(body)) = (text("method"), r.get("body").and_then(Value::as_bool))
    else {
        return Ok(RequestMessage::Rendezvous {
            address: address.to_owned(),
        });
    };
    let id = text("id").ok_or(Unusable::Ignore("a request without an id"))?;
    let mut headers = Vec::new();
    let mut bytes = 0;
    if let Some(map) = r.get("requestHeaders").and_then(Value::as_object) {
        for (k, v) in map {
            let value = match v {
                Value::String(s) => s.clone(),
                Value::Null => continue,
                other => other.to_string(),
            };
            bytes += k.len() + value.len();
            headers.push((k.clone(), value));
        }
    }
    let remote = r.get("remoteEndpoint");
    let head = RequestHead {
        id: id.to_owned(),
        address: address.to_owned(),
        target: text("requestTarget").unwrap_or("/").to_owned(),
        method: method.to_owned(),
        headers,
        remote_address: remote
            .and_then(|e| e.get("address"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        remote_port: remote
            .and_then(|e| e.get("port"))
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok()),
        body,
    };
    if head.headers.len() > MAX_REQUEST_HEADERS || bytes > MAX_REQUEST_HEADER_BYTES {
        return Err(Unusable::HeadersTooLarge(Box::new(head)));
    }
    Ok(RequestMessage::Inline(head))
}

/// The status the listener sends for `status`: 502 and 504 mean "the relay failed" to a
/// sender, and the protocol article forbids a listener to send them, so a handler's 502 or
/// 504 goes out as 500 (with the handler's reason phrase, e.g. `Bad Gateway`).
pub fn relayed_status(status: u16) -> u16 {
    match status {
        502 | 504 => 500,
        s => s,
    }
}

/// The `response` message for request `id`: the status (see [`relayed_status`]), the
/// reason and the headers of `head` (a repeated header joined with `", "`: the message
/// holds one string per name), and whether a body follows.
pub fn response_message(id: &str, head: &Head, body: bool) -> String {
    let mut headers = Map::new();
    let mut names: Vec<String> = Vec::new();
    for (name, value) in &head.headers {
        let key = match names.iter().find(|n| n.eq_ignore_ascii_case(name)) {
            Some(first) => first.clone(),
            None => {
                names.push(name.clone());
                name.clone()
            }
        };
        match headers.get_mut(&key) {
            Some(Value::String(s)) => {
                s.push_str(", ");
                s.push_str(value);
            }
            _ => {
                headers.insert(key, Value::String(value.clone()));
            }
        }
    }
    json!({
        "response": {
            "requestId": id,
            "statusCode": relayed_status(head.status),
            "statusDescription": head.reason,
            "responseHeaders": headers,
            "body": body,
        }
    })
    .to_string()
}

/// A response of the listener's own (501 without a handler, 431, 500), without a body.
pub fn status_message(id: &str, status: u16, reason: &str) -> String {
    let head = Head {
        status,
        reason: reason.to_owned(),
        headers: Vec::new(),
    };
    response_message(id, &head, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_and_address_only_requests() {
        let inline = json!({
            "address": "wss://h/$hc/hc?sb-hc-action=request&sb-hc-id=1",
            "id": "1", "requestTarget": "/hc/a?x=1", "method": "POST", "body": true,
            "requestHeaders": { "Host": "h", "X-N": 5, "X-Null": null },
            "remoteEndpoint": { "address": "10.0.0.1", "port": 5000 }
        });
        let RequestMessage::Inline(h) = parse_request(&inline).unwrap() else {
            panic!("inline");
        };
        assert_eq!(
            (h.id.as_str(), h.method.as_str(), h.target.as_str(), h.body),
            ("1", "POST", "/hc/a?x=1", true)
        );
        assert_eq!(
            h.headers,
            vec![("Host".into(), "h".into()), ("X-N".into(), "5".into())]
        );
        assert_eq!(
            (h.remote_address.as_deref(), h.remote_port),
            (Some("10.0.0.1"), Some(5000))
        );
        // hyco-https's test (no method) and .NET's (no body) both mean "address only".
        for r in [
            json!({"address": "wss://a"}),
            json!({"address": "wss://a", "id": "1", "body": true}),
            json!({"address": "wss://a", "id": "1", "method": "GET"}),
        ] {
            assert_eq!(
                parse_request(&r),
                Ok(RequestMessage::Rendezvous {
                    address: "wss://a".into()
                })
            );
        }
        assert!(matches!(
            parse_request(&json!({"id": "1"})),
            Err(Unusable::Ignore(_))
        ));
        assert!(matches!(
            parse_request(&json!({"address": "a", "method": "GET", "body": false})),
            Err(Unusable::Ignore(_))
        ));
        let many: Map<String, Value> = (0..MAX_REQUEST_HEADERS + 1)
            .map(|i| (format!("h{i}"), json!("v")))
            .collect();
        let big = json!({"address": "a", "id": "1", "method": "GET", "body": false, "requestHeaders": many});
        assert!(matches!(
            parse_request(&big),
            Err(Unusable::HeadersTooLarge(_))
        ));
    }

    #[test]
    fn responses_join_repeated_headers() {
        let head = Head {
            status: 200,
            reason: "OK".into(),
            headers: vec![
                ("Set-Cookie".into(), "a=1".into()),
                ("Content-Type".into(), "text/plain".into()),
                ("set-cookie".into(), "b=2".into()),
            ],
        };
        let v: Value = serde_json::from_str(&response_message("r1", &head, true)).unwrap();
        assert_eq!(
            v,
            json!({"response": {"requestId": "r1", "statusCode": 200, "statusDescription": "OK",
                "responseHeaders": {"Set-Cookie": "a=1, b=2", "Content-Type": "text/plain"}, "body": true}})
        );
        let gateway = Head {
            status: 502,
            reason: "Bad Gateway".into(),
            headers: Vec::new(),
        };
        let v: Value = serde_json::from_str(&response_message("r3", &gateway, false)).unwrap();
        assert_eq!(
            (
                v["response"]["statusCode"].clone(),
                v["response"]["statusDescription"].clone()
            ),
            (json!(500), json!("Bad Gateway"))
        );
        assert_eq!(relayed_status(504), 500);
        assert_eq!(relayed_status(503), 503);
        let v: Value = serde_json::from_str(&status_message("r2", 501, "Not Implemented")).unwrap();
        assert_eq!(v["response"]["body"], json!(false));
        assert_eq!(v["response"]["statusCode"], json!(501));
    }
}
