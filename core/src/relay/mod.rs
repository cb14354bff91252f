//! The local relay emulator: the service side of the Hybrid Connections protocol
//! (`PROTOCOL.md`), WebSocket relaying and HTTP requests, for tests, benchmarks and offline
//! development.
//!
//! [`LocalRelay::start`] binds a port and serves listeners and senders; [`LocalRelay::stop`]
//! closes everything and [`LocalRelay::resume`] listens again on the same port (the tests of
//! reconnecting listeners need both). Test hooks drop or freeze control channels.

pub mod auth;
#[cfg(test)]
mod buffering_stream;
pub mod config;
pub mod control;
pub mod entra;
pub mod forward;
pub mod http;
pub mod http_body;
pub mod http_exchange;
pub mod http_message;
pub mod http_pending;
pub mod http_relay;
pub mod registry;
pub mod rendezvous;
pub mod server;
pub mod state;
pub mod tls;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{Entities, EntraConfig, HybridConnectionConfig, RelayConfig, Right, Rule, TlsPem};
pub use state::{EventSink, RelayEvent};

use crate::error::{Error, Result};
use state::RelayState;

/// Counters of a running relay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Hybrid Connections known.
    pub hybrid_connections: usize,
    /// Control channels open.
    pub listeners: usize,
    /// Rendezvous waiting for an accept.
    pub pending_accepts: usize,
    /// Relayed sender/listener pairs open.
    pub connections: usize,
    /// Bytes held inside the relay's buffers now.
    pub buffered_bytes: usize,
    /// HTTP requests routed to a listener and not answered yet.
    pub pending_requests: usize,
    /// HTTP requests routed to a listener since the relay started.
    pub http_requests: u64,
}

struct Running {
    cancel: CancellationToken,
    tracker: TaskTracker,
}

/// A running (or stopped) local relay.
pub struct LocalRelay {
    state: Arc<RelayState>,
    tls: Option<TlsAcceptor>,
    port: u16,
    running: Mutex<Option<Running>>,
}

impl LocalRelay {
    /// Validates `config`, binds its port and starts serving. Must run inside a tokio runtime.
    pub async fn start(config: RelayConfig, events: Option<EventSink>) -> Result<Arc<LocalRelay>> {
        config.validate()?;
        let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
        let listener = bind(&config.host, config.port).await?;
        let port = listener.local_addr()?.port();
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        let host = if config.host.contains(':') {
            format!("[{}]", config.host)
        } else {
            config.host.clone()
        };
        let state = Arc::new(RelayState::new(config, events));
        state.set_origin(format!("{scheme}://{host}:{port}"));
        let relay = Arc::new(LocalRelay {
            state,
            tls,
            port,
            running: Mutex::new(None),
        });
        relay.serve(listener);
        Ok(relay)
    }

    /// Starts the accept loop on `listener`.
    fn serve(&self, listener: TcpListener) {
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let (state, tls, token, conns) = (
            self.state.clone(),
            self.tls.clone(),
            cancel.clone(),
            tracker.clone(),
        );
        tracker.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = token.cancelled() => break,
                    a = listener.accept() => a,
                };
                match accepted {
                    Ok((tcp, peer)) => {
                        let (state, tls, token) = (state.clone(), tls.clone(), token.clone());
                        conns.spawn(async move {
                            tokio::select! {
                                _ = token.cancelled() => {}
                                _ = server::serve(state, tcp, peer, tls) => {}
                            }
                        });
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: say so, and back off instead
                        // of spinning.
                        log::warn!("relay: accept failed: {e}");
                        state.emit(RelayEvent::new(
                            "acceptFailed",
                            format!("cannot accept a connection: {e}"),
                        ));
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                }
            }
        });
        if let Ok(mut r) = self.running.lock() {
            *r = Some(Running { cancel, tracker });
        }
    }

    /// Closes every connection and the port. Idempotent.
    pub async fn stop(&self) {
        let running = self.running.lock().ok().and_then(|mut r| r.take());
        if let Some(Running { cancel, tracker }) = running {
            cancel.cancel();
            tracker.close();
            tracker.wait().await;
            self.state.registry.clear();
            self.state
                .emit(RelayEvent::new("relayClosed", "relay stopped"));
        }
    }

    /// Listens again on the same port after [`LocalRelay::stop`]. Does nothing if running.
    pub async fn resume(&self) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        let listener = bind(&self.state.config.host, self.port).await?;
        self.serve(listener);
        self.state.emit(RelayEvent::new(
            "relayStarted",
            format!("relay listening on {}", self.origin()),
        ));
        Ok(())
    }

    /// True between start/resume and stop.
    pub fn is_running(&self) -> bool {
        self.running.lock().map(|r| r.is_some()).unwrap_or(false)
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `ws://host:port` (`wss://` with TLS): the namespace argument for the URI helpers.
    pub fn origin(&self) -> String {
        self.state.origin()
    }

    /// The configuration in force.
    pub fn config(&self) -> &RelayConfig {
        &self.state.config
    }

    /// Current counters.
    pub fn stats(&self) -> RelayStats {
        let c = self.state.registry.counts();
        RelayStats {
            hybrid_connections: c.hybrid_connections,
            listeners: c.listeners,
            pending_accepts: c.pending_accepts,
            connections: self.state.open_connections(),
            buffered_bytes: self
                .state
                .forward_stats
                .buffered_bytes
                .load(Ordering::Relaxed),
            pending_requests: self.state.http.awaiting_count(),
            http_requests: self.state.http.routed_count(),
        }
    }

    /// Test hook: closes the control channels of `hybrid_connection` (all when `None`) with
    /// `code` and `reason`. Returns how many were told to close.
    pub fn drop_listeners(
        &self,
        hybrid_connection: Option<&str>,
        code: u16,
        reason: &str,
    ) -> usize {
        self.state
            .registry
            .drop_listeners(hybrid_connection, code, reason)
    }

    /// Test hook: stops (or resumes) reading the control channels of `hybrid_connection`:
    /// pings go unanswered and no sender is routed to them. Returns how many.
    pub fn freeze_listeners(&self, hybrid_connection: Option<&str>, frozen: bool) -> usize {
        self.state
            .registry
            .freeze_listeners(hybrid_connection, frozen)
    }
}

async fn bind(host: &str, port: u16) -> Result<TcpListener> {
    let addr: SocketAddr = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port),
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| Error::Io(format!("cannot resolve {host}: {e}")))?
            .next()
            .ok_or_else(|| Error::Io(format!("cannot resolve {host}")))?,
    };
    TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Io(format!("cannot listen on {addr}: {e}")))
}
