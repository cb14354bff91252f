//! The event format between Rust and JavaScript, in one place.
//!
//! An event goes up as flat values in the hub's list (see `hub.rs`): the object's id, the
//! event's number, then its fields. [`events!`] declares every event once, with its
//! JavaScript name and its fields: it makes the number ([`Ev`]), the table JavaScript reads
//! when it loads ([`event_table`]), and one constructor per event that takes exactly the
//! declared fields, so a constructor and the table cannot disagree. `lib/native-events.js`
//! checks the table against the fields its handlers read, by name, and refuses to load on a
//! mismatch.

use napi_derive::napi;

use crate::bindings::flat::Flat;

/// Counts identifiers, for the constructors' array length.
macro_rules! count {
    () => { 0usize };
    ($head:ident $($tail:ident)*) => { 1usize + count!($($tail)*) };
}

/// Declares the events: `Variant = "jsName" (field, ...)`.
macro_rules! events {
    ($($(#[$doc:meta])* $variant:ident = $js:literal ($($field:ident),*);)*) => {
        /// An event's number in the flat list.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(u8)]
        pub enum Ev {
            $($(#[$doc])* $variant,)*
        }

        /// Every event's JavaScript name and field names, indexed by [`Ev`].
        pub const TABLE: &[(&str, &[&str])] = &[$(($js, &[$(stringify!($field)),*])),*];

        /// The constructors: an event's number and fields as flat values, ready for the hub
        /// (an array: no allocation per event).
        #[allow(non_snake_case)]
        pub mod up {
            use super::{Ev, Flat};
            $(
                $(#[$doc])*
                #[allow(clippy::too_many_arguments)]
                pub fn $variant($($field: Flat),*) -> [Flat; 1 + count!($($field)*)] {
                    [Flat::Num(Ev::$variant as u8 as f64), $($field),*]
                }
            )*
        }
    };
}

events! {
    /// A socket's handshake succeeded: the subprotocol and the agreed extensions (a
    /// `Sec-WebSocket-Extensions` value, `""` for none).
    Open = "open" (protocol, extensions);
    /// A whole message: one Buffer, or an array of a fragmented binary message's frames.
    Message = "message" (data, binary);
    /// Small whole messages read in one turn, as one ArrayBuffer (see `run`).
    Messages = "messages" (run);
    /// A ping (already answered when auto-pong is on).
    Ping = "ping" (data);
    /// A pong.
    Pong = "pong" (data);
    /// Bytes written to the network, and the send callbacks now complete or failed.
    Written = "written" (bytes, acks, failed);
    /// The peer's close frame arrived.
    CloseReceived = "closeReceived" ();
    /// A socket's error; its close follows.
    Error = "error" (message, code, rangeError, statusCode, statusDescription);
    /// A socket is gone: always its last event.
    Closed = "closed" (code, reason, frameReceived, frameSent);
    /// A socket a listener accepts by itself is open (under the socket's id), as `open`.
    Accepted = "accepted" (protocol, extensions);
    /// A listener starts accepting a sender by itself (under the listener's id): the new
    /// socket's id and the sender's request.
    Accepting = "accepting" (socket, headers, id, url, remoteAddress, remotePort);
    /// A listener needs a token (for a (re)connect, or a renewal).
    NeedToken = "needToken" (request, renewal);
    /// A listener is about to connect, after `error` (null at start), in `delayMs`.
    Connecting = "connecting" (delayMs, error);
    /// A listener's control channel is open.
    Online = "online" ();
    /// A listener's control channel was lost.
    Offline = "offline" (error);
    /// A sender wants in, and the owner decides.
    Accept = "accept" (id, address, headers, url, remoteAddress, remotePort);
    /// A listener's token was renewed.
    Renewed = "renewed" ();
    /// A listener's fixed token expires soon.
    TokenExpiring = "tokenExpiring" (expiresAt);
    /// A listener's token provider failed.
    TokenError = "tokenError" (message);
    /// A text message the service sent on a listener's control channel (control tap on).
    ControlMessage = "controlMessage" (text);
    /// A listener stopped: always its last event. `error` is null after a close request.
    ListenerClosed = "listenerClosed" (error);
    /// An HTTP request (under the listener's id): the new exchange's id, the request's
    /// method, `req.url`, headers (flat: name, value, ...), tracking id, the sender's
    /// address and port, its whole body (a Buffer, or null), and whether the body follows
    /// in pieces instead.
    Request = "request" (exchange, method, url, headers, id, remoteAddress, remotePort, body, streamed);
    /// A piece of an exchange's streamed request body.
    HttpBody = "httpBody" (data);
    /// The exchange's streamed request body is complete.
    HttpBodyEnd = "httpBodyEnd" ();
    /// The exchange may take more of its response.
    HttpDrained = "httpDrained" ();
    /// The exchange's response went out: its last event.
    HttpFinished = "httpFinished" ();
    /// The exchange failed (`error`: message, code, statusCode, statusDescription): its
    /// last event.
    HttpAborted = "httpAborted" (error);
}

/// One entry of the table JavaScript checks when it loads.
#[napi(object)]
pub struct EventSpec {
    /// The event's name.
    pub name: String,
    /// Its fields' names, in order.
    pub fields: Vec<String>,
}

/// `eventTable()`: every event, indexed by its number.
#[napi(js_name = "eventTable", catch_unwind)]
pub fn event_table() -> Vec<EventSpec> {
    TABLE
        .iter()
        .map(|(name, fields)| EventSpec {
            name: (*name).to_owned(),
            fields: fields.iter().map(|f| (*f).to_owned()).collect(),
        })
        .collect()
}
