//! Bindings for the local relay emulator (`startLocalRelay`). Options arrive checked by
//! `lib/local-relay.js`; events go up through one ThreadsafeFunction, which also keeps the
//! process alive while the relay exists and is released by `close()`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyco_core::relay::{
    self, Entities, EntraConfig, HybridConnectionConfig, LocalRelay, RelayConfig, RelayEvent,
    Right, Rule, TlsPem,
};
use napi::bindgen_prelude::Buffer;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Status;
use napi_derive::napi;

use crate::error::tagged;

/// One Hybrid Connection of `hybridConnections`.
#[napi(object)]
pub struct HybridConnectionOption {
    /// Its path.
    pub name: String,
    /// Whether senders need a token. Default true.
    pub requires_client_authorization: Option<bool>,
}

/// One SAS rule of `rules`.
#[napi(object)]
pub struct RuleOption {
    /// Key name.
    pub name: String,
    /// Key.
    pub key: String,
    /// `Listen`, `Send`, `Manage`.
    pub rights: Vec<String>,
}

/// Options, as `lib/local-relay.js` passes them.
#[napi(object)]
pub struct NativeRelayOptions {
    /// Bind address. Default 127.0.0.1.
    pub host: Option<String>,
    /// Port; 0 picks one.
    pub port: Option<u32>,
    /// The configured Hybrid Connections; absent means "any".
    pub hybrid_connections: Option<Vec<HybridConnectionOption>>,
    /// SAS rules; absent means one random Manage rule.
    pub rules: Option<Vec<RuleOption>>,
    /// PEM certificate chain for wss://.
    pub tls_cert: Option<Buffer>,
    /// PEM private key for wss://.
    pub tls_key: Option<Buffer>,
    /// Accept timeout in milliseconds. Default 30000.
    pub accept_timeout_ms: Option<f64>,
    /// Listeners per Hybrid Connection. Default 25.
    pub max_listeners: Option<u32>,
    /// How long a listener has to answer an HTTP request, in milliseconds. Default 60000.
    pub request_timeout_ms: Option<f64>,
    /// The status of an HTTP request when no listener is connected (404, 502, 503).
    pub no_listener_status: Option<u32>,
    /// Entra ID mode: the secret JWTs are signed with (HS256).
    pub entra_secret: Option<Buffer>,
    /// Entra ID mode: SAS tokens are accepted too. Default true.
    pub entra_local_auth: Option<bool>,
}

/// A relay event, as JavaScript receives it.
#[napi(object)]
pub struct RelayEventJs {
    /// The kind of event.
    #[napi(js_name = "type")]
    pub kind: String,
    /// The Hybrid Connection, if any.
    pub hybrid_connection: Option<String>,
    /// The rendezvous id, if any.
    pub id: Option<String>,
    /// The HTTP status, if any.
    pub status: Option<u32>,
    /// A description.
    pub message: String,
}

/// The counters of `stats()`.
#[napi(object)]
pub struct RelayStatsJs {
    /// Hybrid Connections known.
    pub hybrid_connections: u32,
    /// Control channels open.
    pub listeners: u32,
    /// Rendezvous waiting for an accept.
    pub pending_accepts: u32,
    /// Relayed connections open.
    pub connections: u32,
    /// Bytes held in the relay's buffers.
    pub buffered_bytes: f64,
    /// HTTP requests routed to a listener and not answered yet.
    pub pending_requests: u32,
    /// HTTP requests routed to a listener since the relay started.
    pub http_requests: f64,
}

type EventCallback = ThreadsafeFunction<RelayEventJs, (), RelayEventJs, Status, false>;

/// Holds the event callback until `close()`; dropping it lets the process exit.
type CallbackSlot = Arc<Mutex<Option<EventCallback>>>;

fn to_config(o: NativeRelayOptions) -> napi::Result<RelayConfig> {
    let mut c = RelayConfig::default();
    if let Some(h) = o.host {
        c.host = h;
    }
    if let Some(p) = o.port {
        c.port = u16::try_from(p)
            .map_err(|_| napi::Error::new(Status::InvalidArg, "port out of range"))?;
    }
    if let Some(list) = o.hybrid_connections {
        c.entities = Entities::List(
            list.into_iter()
                .map(|h| HybridConnectionConfig {
                    name: h.name,
                    requires_client_authorization: h.requires_client_authorization.unwrap_or(true),
                })
                .collect(),
        );
    }
    if let Some(rules) = o.rules {
        c.rules = rules
            .into_iter()
            .map(|r| {
                let rights = r
                    .rights
                    .iter()
                    .map(|s| Right::parse(s))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| napi::Error::new(Status::InvalidArg, e.to_string()))?;
                Ok(Rule {
                    name: r.name,
                    key: r.key,
                    rights,
                })
            })
            .collect::<napi::Result<Vec<_>>>()?;
    }
    if let (Some(cert), Some(key)) = (o.tls_cert, o.tls_key) {
        c.tls = Some(TlsPem {
            cert: cert.to_vec(),
            key: key.to_vec(),
        });
    }
    if let Some(ms) = o.accept_timeout_ms {
        c.accept_timeout = Duration::from_millis(ms as u64);
    }
    if let Some(n) = o.max_listeners {
        c.max_listeners = n as usize;
    }
    if let Some(ms) = o.request_timeout_ms {
        c.request_timeout = Duration::from_millis(ms as u64);
    }
    if let Some(secret) = o.entra_secret {
        c.entra = Some(EntraConfig {
            secret: secret.to_vec(),
            local_auth: o.entra_local_auth.unwrap_or(true),
        });
    }
    if let Some(status) = o.no_listener_status {
        c.no_listener_status = u16::try_from(status)
            .map_err(|_| napi::Error::new(Status::InvalidArg, "noListenerStatus out of range"))?;
    }
    Ok(c)
}

fn to_js(e: RelayEvent) -> RelayEventJs {
    RelayEventJs {
        kind: e.kind.to_owned(),
        hybrid_connection: e.hybrid_connection,
        id: e.id,
        status: e.status.map(u32::from),
        message: e.message,
    }
}

/// A running local relay.
#[napi]
pub struct NativeRelay {
    inner: Arc<LocalRelay>,
    callback: CallbackSlot,
}

/// Starts a relay. Resolves once the port is bound.
#[napi(js_name = "startLocalRelay")]
pub async fn start_local_relay(
    options: NativeRelayOptions,
    on_event: EventCallback,
) -> napi::Result<NativeRelay> {
    let config = to_config(options)?;
    let callback: CallbackSlot = Arc::new(Mutex::new(Some(on_event)));
    let slot = callback.clone();
    let sink: relay::EventSink = Arc::new(move |event| {
        if let Ok(guard) = slot.lock() {
            if let Some(cb) = guard.as_ref() {
                cb.call(to_js(event), ThreadsafeFunctionCallMode::NonBlocking);
            }
        }
    });
    let inner = LocalRelay::start(config, Some(sink))
        .await
        .map_err(tagged)?;
    Ok(NativeRelay { inner, callback })
}

#[napi]
impl NativeRelay {
    /// The bound port.
    #[napi(getter, catch_unwind)]
    pub fn port(&self) -> u32 {
        u32::from(self.inner.port())
    }

    /// `ws://host:port` or `wss://host:port`.
    #[napi(getter, catch_unwind)]
    pub fn origin(&self) -> String {
        self.inner.origin()
    }

    /// The first rule's name.
    #[napi(getter, catch_unwind)]
    pub fn key_name(&self) -> String {
        self.inner
            .config()
            .rules
            .first()
            .map(|r| r.name.clone())
            .unwrap_or_default()
    }

    /// The first rule's key.
    #[napi(getter, catch_unwind)]
    pub fn key(&self) -> String {
        self.inner
            .config()
            .rules
            .first()
            .map(|r| r.key.clone())
            .unwrap_or_default()
    }

    /// Current counters.
    #[napi(catch_unwind)]
    pub fn stats(&self) -> RelayStatsJs {
        let s = self.inner.stats();
        RelayStatsJs {
            hybrid_connections: s.hybrid_connections as u32,
            listeners: s.listeners as u32,
            pending_accepts: s.pending_accepts as u32,
            connections: s.connections as u32,
            buffered_bytes: s.buffered_bytes as f64,
            pending_requests: s.pending_requests as u32,
            http_requests: s.http_requests as f64,
        }
    }

    /// A token signed as this relay's in Entra ID mode, with `roles`, valid `ttl_secs`, for
    /// `audience` (default: the relay's own, a token it accepts); `null` when the mode is off.
    #[napi(catch_unwind)]
    pub fn create_entra_token(
        &self,
        roles: Vec<String>,
        ttl_secs: f64,
        audience: Option<String>,
    ) -> Option<String> {
        let entra = self.inner.config().entra.as_ref()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let ttl = ttl_secs.max(1.0) as u64;
        Some(match audience {
            Some(a) => relay::entra::mint_for(entra, &a, &roles, ttl, now),
            None => relay::entra::mint(entra, &roles, ttl, now),
        })
    }

    /// Test hook: closes control channels with `code`.
    #[napi(catch_unwind)]
    pub fn drop_listeners(
        &self,
        hybrid_connection: Option<String>,
        code: u32,
        reason: String,
    ) -> u32 {
        let code = u16::try_from(code).unwrap_or(1011);
        self.inner
            .drop_listeners(hybrid_connection.as_deref(), code, &reason) as u32
    }

    /// Test hook: freezes or thaws control channels.
    #[napi(catch_unwind)]
    pub fn freeze_listeners(&self, hybrid_connection: Option<String>, frozen: bool) -> u32 {
        self.inner
            .freeze_listeners(hybrid_connection.as_deref(), frozen) as u32
    }

    /// Closes every connection and the port; the relay can `resume()`.
    #[napi]
    pub async fn stop(&self) {
        self.inner.stop().await;
    }

    /// Listens again on the same port.
    #[napi]
    pub async fn resume(&self) -> napi::Result<()> {
        self.inner.resume().await.map_err(tagged)
    }

    /// Stops for good and releases the event callback, so the process may exit.
    #[napi]
    pub async fn close(&self) {
        self.inner.stop().await;
        if let Ok(mut slot) = self.callback.lock() {
            slot.take();
        }
    }
}
