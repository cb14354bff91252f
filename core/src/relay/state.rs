//! State shared by every task of one relay: configuration, registry, counters, events.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use crate::relay::config::RelayConfig;
use crate::relay::forward::ForwardStats;
use crate::relay::http;
use crate::relay::http_pending::PendingRequests;
use crate::relay::registry::Registry;

/// Something that happened in the relay, for logs and the CLI. Never holds a key or token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayEvent {
    /// `listen`, `listenerClosed`, `connect`, `accept`, `reject`, `timeout`, `denied`,
    /// `renew`, `relayClosed`, `relayStarted`, `acceptFailed`; for HTTP requests `request`,
    /// `response`, `requestTimeout`, `requestFailed`.
    pub kind: &'static str,
    /// The Hybrid Connection concerned, if any.
    pub hybrid_connection: Option<String>,
    /// The rendezvous or request id, if any.
    pub id: Option<String>,
    /// The HTTP status given, if any.
    pub status: Option<u16>,
    /// A one-line description.
    pub message: String,
}

impl RelayEvent {
    /// An event of `kind` with `message`.
    pub fn new(kind: &'static str, message: impl Into<String>) -> Self {
        RelayEvent {
            kind,
            hybrid_connection: None,
            id: None,
            status: None,
            message: message.into(),
        }
    }

    /// Sets the Hybrid Connection.
    pub fn hc(mut self, name: &str) -> Self {
        self.hybrid_connection = Some(name.to_owned());
        self
    }

    /// Sets the rendezvous id.
    pub fn id(mut self, id: &str) -> Self {
        self.id = Some(id.to_owned());
        self
    }

    /// Sets the status.
    pub fn status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }
}

/// Where events go.
pub type EventSink = Arc<dyn Fn(RelayEvent) + Send + Sync>;

/// Shared by all tasks of a relay.
pub struct RelayState {
    /// The configuration.
    pub config: RelayConfig,
    /// Hybrid Connections, listeners, rendezvous.
    pub registry: Registry,
    /// Relayed-byte counters.
    pub forward_stats: Arc<ForwardStats>,
    /// Relayed connections open now.
    pub connections: AtomicUsize,
    /// Relayed HTTP requests waiting for their listener, and the HTTP counters.
    pub http: Arc<PendingRequests>,
    /// `ws://host:port` or `wss://host:port`, known once bound.
    origin: RwLock<String>,
    events: Option<EventSink>,
}

impl RelayState {
    /// New state for `config`.
    pub fn new(config: RelayConfig, events: Option<EventSink>) -> Self {
        RelayState {
            registry: Registry::new(&config.entities),
            config,
            forward_stats: Arc::new(ForwardStats::default()),
            connections: AtomicUsize::new(0),
            http: Arc::new(PendingRequests::default()),
            origin: RwLock::new(String::new()),
            events,
        }
    }

    /// Logs `event` and hands it to the event sink.
    pub fn emit(&self, event: RelayEvent) {
        log::debug!("relay: {}: {}", event.kind, event.message);
        if let Some(sink) = &self.events {
            sink(event);
        }
    }

    /// The relay's origin, `ws://127.0.0.1:PORT`.
    pub fn origin(&self) -> String {
        self.origin.read().map(|o| o.clone()).unwrap_or_default()
    }

    /// The origin to give a client that connected with `Host: host_header`, for the
    /// addresses the relay hands it (accept and request rendezvous addresses): the relay's
    /// scheme, that host, and the port it names (the scheme's default when it names none,
    /// as HTTP has it). As the service's addresses name a host whose certificate the client
    /// can verify, these name the host the client reached the relay by, not the address the
    /// relay is bound to. The relay's own origin when the header is missing or is anything
    /// but `host[:port]`.
    pub fn origin_for_host(&self, host_header: Option<&str>) -> String {
        let Some(value) = host_header else {
            return self.origin();
        };
        let Some((host, port)) = http::parse_host_header(value) else {
            log::debug!("relay: a Host header that is not host[:port]: using the relay's origin");
            return self.origin();
        };
        let (scheme, default_port) = if self.config.tls.is_some() {
            ("wss", 443)
        } else {
            ("ws", 80)
        };
        format!("{scheme}://{host}:{}", port.unwrap_or(default_port))
    }

    pub(crate) fn set_origin(&self, origin: String) {
        if let Ok(mut o) = self.origin.write() {
            *o = origin;
        }
    }

    /// Relayed connections open now.
    pub fn open_connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::config::TlsPem;

    fn state(tls: bool) -> RelayState {
        let mut config = RelayConfig::default();
        if tls {
            config.tls = Some(TlsPem {
                cert: Vec::new(),
                key: Vec::new(),
            });
        }
        let s = RelayState::new(config, None);
        s.set_origin("wss://127.0.0.1:9000".into());
        s
    }

    #[test]
    fn origins_name_the_host_clients_connected_with() {
        let tls = state(true);
        let for_host = |h| tls.origin_for_host(Some(h));
        assert_eq!(for_host("NS.example.net"), "wss://ns.example.net:443");
        assert_eq!(for_host("ns.example.net:9000"), "wss://ns.example.net:9000");
        assert_eq!(for_host("[::1]:9000"), "wss://[::1]:9000");
        assert_eq!(for_host("[::1]"), "wss://[::1]:443");
        assert_eq!(state(false).origin_for_host(Some("ns")), "ws://ns:80");
        // Anything else falls back to the relay's origin.
        for bad in ["evil.test/x?y", "a@b", "ns:99999", ""] {
            assert_eq!(
                tls.origin_for_host(Some(bad)),
                "wss://127.0.0.1:9000",
                "{bad}"
            );
        }
        assert_eq!(tls.origin_for_host(None), "wss://127.0.0.1:9000");
    }
}
