//! Configuration of the local relay emulator, with its defaults.

use std::time::Duration;

use crate::error::{Error, Result};
pub use crate::relay::entra::EntraConfig;

/// A SAS right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Right {
    /// Open control channels and accept connections.
    Listen,
    /// Connect as a sender.
    Send,
    /// Everything; implies `Listen` and `Send`.
    Manage,
}

impl Right {
    /// Parses `Listen`, `Send` or `Manage` (case-insensitive).
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "listen" => Ok(Right::Listen),
            "send" => Ok(Right::Send),
            "manage" => Ok(Right::Manage),
            _ => Err(Error::arg_type(
                "rules",
                "must list rights among 'Listen', 'Send' and 'Manage'",
            )),
        }
    }
}

/// A shared access authorization rule: a key name, its key and its rights.
#[derive(Clone)]
pub struct Rule {
    /// The key name (`skn` in tokens).
    pub name: String,
    /// The key. Never logged.
    pub key: String,
    /// What tokens signed with this key may do.
    pub rights: Vec<Right>,
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rule")
            .field("name", &self.name)
            .field("key", &"<redacted>")
            .field("rights", &self.rights)
            .finish()
    }
}

impl Rule {
    /// True when this rule confers `right` (`Manage` confers all).
    pub fn grants(&self, right: Right) -> bool {
        self.rights
            .iter()
            .any(|r| *r == right || *r == Right::Manage)
    }
}

/// A Hybrid Connection known to the relay.
#[derive(Debug, Clone)]
pub struct HybridConnectionConfig {
    /// The entity path, e.g. `hyco` or `a/b`. Matched case-insensitively.
    pub name: String,
    /// Whether senders need a token with `Send`. Default `true`; listeners always need one.
    pub requires_client_authorization: bool,
}

/// Which Hybrid Connections exist.
#[derive(Debug, Clone)]
pub enum Entities {
    /// Any path is a Hybrid Connection, created on its first listener (requiring client
    /// authorization). The default.
    Any,
    /// Only these; others give 404.
    List(Vec<HybridConnectionConfig>),
}

/// PEM certificate chain and private key for `wss://`.
#[derive(Clone)]
pub struct TlsPem {
    /// PEM certificate chain, leaf first.
    pub cert: Vec<u8>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Vec<u8>,
}

/// Everything the relay emulator can be told.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Address to bind. Default `127.0.0.1`.
    pub host: String,
    /// Port to bind; `0` picks a free one. Default `0`.
    pub port: u16,
    /// Which Hybrid Connections exist. Default [`Entities::Any`].
    pub entities: Entities,
    /// SAS rules. Default: one `RootManageSharedAccessKey` rule with `Manage` and a random key.
    pub rules: Vec<Rule>,
    /// Serve `wss://` with this certificate. Default: plain `ws://`.
    pub tls: Option<TlsPem>,
    /// How long a sender waits for a listener to accept (and how long an accept address
    /// stays valid). Default 30 s, the service's documented maximum.
    pub accept_timeout: Duration,
    /// Control channels allowed per Hybrid Connection. Default 25, the service's quota.
    pub max_listeners: usize,
    /// Time allowed for a client to send its request head. Default 15 s.
    pub handshake_timeout: Duration,
    /// Largest request head accepted; larger gets 431. Default 16 KiB.
    pub max_header_bytes: usize,
    /// Largest read buffer per direction of a relayed connection: the most the relay holds
    /// for a peer that is not reading. Buffers start at 16 KiB and double while reads fill
    /// them, so idle connections stay small and bulk transfers take few system calls.
    /// Default 256 KiB.
    pub relay_buffer_bytes: usize,
    /// Largest message accepted on a control channel. Default 64 KiB.
    pub max_control_message_bytes: usize,
    /// How long a listener has to answer a relayed HTTP request (until its `response`
    /// message reaches the relay), and the longest a streamed response body may stay idle.
    /// Default 60 s, the service's fixed deadline.
    pub request_timeout: Duration,
    /// The status a relayed HTTP request gets when no listener is connected: 404 (the
    /// default, as the service answers WebSocket senders), 502 (the protocol article's prose)
    /// or 503 (the article's table).
    pub no_listener_status: u16,
    /// Entra ID mode: JWTs signed with this secret are accepted (see `entra.rs`). Default:
    /// off (SAS tokens only).
    pub entra: Option<EntraConfig>,
}

impl std::fmt::Debug for TlsPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsPem { .. }")
    }
}

/// The name of the rule created when none is configured, as in the Azure portal.
pub const DEFAULT_RULE_NAME: &str = "RootManageSharedAccessKey";

/// A random base64 key of 32 bytes, like the portal's.
pub fn random_key() -> String {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            host: "127.0.0.1".into(),
            port: 0,
            entities: Entities::Any,
            rules: vec![Rule {
                name: DEFAULT_RULE_NAME.into(),
                key: random_key(),
                rights: vec![Right::Manage],
            }],
            tls: None,
            accept_timeout: Duration::from_secs(30),
            max_listeners: 25,
            handshake_timeout: Duration::from_secs(15),
            max_header_bytes: 16 * 1024,
            relay_buffer_bytes: 256 * 1024,
            max_control_message_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(60),
            no_listener_status: 404,
            entra: None,
        }
    }
}

impl RelayConfig {
    /// Checks the configuration for values that cannot work.
    pub fn validate(&self) -> Result<()> {
        if self.rules.is_empty() {
            return Err(Error::arg_type("rules", "must hold at least one rule"));
        }
        for r in &self.rules {
            if r.name.is_empty() || r.key.is_empty() {
                return Err(Error::arg_type(
                    "rules",
                    "must give every rule a non-empty name and key",
                ));
            }
            if r.rights.is_empty() {
                return Err(Error::arg_type(
                    "rules",
                    "must give every rule at least one right",
                ));
            }
        }
        if let Entities::List(list) = &self.entities {
            for hc in list {
                let n = hc.name.trim_matches('/');
                if n.is_empty() || n.starts_with('$') {
                    return Err(Error::arg_type(
                        "hybridConnections",
                        "must name every Hybrid Connection (not empty, not starting with '$')",
                    ));
                }
            }
        }
        if self.max_listeners == 0 {
            return Err(Error::out_of_range("maxListeners", "an integer >= 1"));
        }
        if self.accept_timeout.is_zero() {
            return Err(Error::out_of_range("acceptTimeoutMs", "a number > 0"));
        }
        if self.request_timeout.is_zero() {
            return Err(Error::out_of_range("requestTimeoutMs", "a number > 0"));
        }
        if !matches!(self.no_listener_status, 404 | 502 | 503) {
            return Err(Error::out_of_range("noListenerStatus", "404, 502 or 503"));
        }
        Ok(())
    }
}
