//! HTTP over Hybrid Connections, the listener's side: requests the service routes to the
//! listener (on the control channel, or at a rendezvous), and the responses to them.
//!
//! The owner (`RelayedServer`'s `'request'`) receives an [`HttpRequest`] and an [`Exchange`]
//! for each request, through [`crate::listener::ListenerSink::http_request`]; it writes the
//! response to the exchange as Node.js serializes it, and hears what happens to it as
//! [`ExchangeEvent`]s. Each request has its own task (started when needed, see
//! `exchange.rs`): a slow handler holds up no other.
//!
//! - `message.rs`: the `request` and `response` JSON;
//! - `response.rs`: reading a serialized HTTP/1.1 response;
//! - `exchange.rs`: one request's response, inline or over a rendezvous;
//! - `held.rs`: inline responses sent during one call into the owner, written together;
//! - `rendezvous.rs`: a rendezvous socket and the requests that come over it.

mod exchange;
mod held;
pub mod message;
mod rendezvous;
pub mod response;

use std::sync::Arc;

pub(crate) use exchange::{answer, Route};
pub use exchange::{Exchange, INLINE_BODY_MAX, STREAM_AFTER};
pub use held::hold_inline_responses;
pub(crate) use rendezvous::{end_inline_tasks_until_closed, fetch, start, HttpContext};

use crate::socket::{Shared, SocketError};

/// A request's body, as far as it is known when the request is handed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestBody {
    /// None.
    Empty,
    /// All of it (it came on the control channel).
    Complete(Vec<u8>),
    /// It follows as [`ExchangeEvent::Body`] pieces, then [`ExchangeEvent::BodyEnd`].
    Streamed,
}

/// An HTTP request the service routed to the listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// The request's id (the service's tracking id).
    pub id: String,
    /// The method.
    pub method: String,
    /// `req.url`: the path below the Hybrid Connection and the query, `sb-hc-*` parameters
    /// removed, percent-encoding kept (e.g. `/orders/7?x=1`, or `/`).
    pub url: String,
    /// The headers as the service passed them (names as sent; the service has folded
    /// repeats and removed hop-by-hop headers and the token).
    pub headers: Vec<(String, String)>,
    /// The sender's address, where the service says.
    pub remote_address: Option<String>,
    /// The sender's port, where the service says.
    pub remote_port: Option<u16>,
    /// The body.
    pub body: RequestBody,
}

/// What happens to an exchange, for its owner, in order. `Finished` or `Aborted` is the
/// last, exactly once.
pub enum ExchangeEvent {
    /// A piece of a streamed request body. Its bytes count against the rendezvous
    /// socket's backlog until `source` hears they were consumed.
    Body {
        /// The bytes.
        data: Vec<u8>,
        /// The socket they came from.
        source: Arc<Shared>,
    },
    /// The streamed body is complete.
    BodyEnd,
    /// A waiting owner may write again (see [`Exchange::write`]).
    Drained,
    /// The response went out.
    Finished,
    /// The exchange failed: the sender left, the relay stopped waiting, the listener
    /// closed, or the response could not be sent.
    Aborted(SocketError),
}

/// Receives an exchange's events. Must not block.
pub trait ExchangeSink: Send + Sync + 'static {
    /// Takes one event.
    fn push(&self, event: ExchangeEvent);
}
