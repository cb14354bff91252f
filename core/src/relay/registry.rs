//! The relay's live state: Hybrid Connections, their listeners (control channels), and the
//! rendezvous waiting for an accept. One mutex, held only for map updates, never across an
//! await.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use rand::Rng;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::Message;

pub use crate::io::IoStream;
use crate::relay::config::{Entities, HybridConnectionConfig};
use crate::socket::error::SocketError;

/// Orders from the relay to one control channel's task.
#[derive(Debug)]
pub enum ControlCommand {
    /// Send this `accept` message.
    Accept {
        /// The sender's pending id: an accept the channel ended before sending is handed
        /// back to its sender ([`AcceptOutcome::Undelivered`]).
        id: String,
        /// The message.
        message: String,
    },
    /// Send an HTTP request's messages back to back: the `request` text message and, for an
    /// inline body, the body message's frames. Skipped if request `id` no longer waits.
    Request {
        /// The request id.
        id: String,
        /// The messages (or raw frames), in order, until the writer takes them or the
        /// request ends (see [`RequestMessages`]).
        messages: RequestMessages,
    },
    /// Close the channel with this code and reason (test hook).
    Drop {
        /// Close code.
        code: u16,
        /// Close reason.
        reason: String,
    },
}

/// A queued request's messages, shared by the queue and the request: whichever comes first
/// takes them, the listener's writer to send them or the request's end to drop them. A
/// request whose sender left or timed out thus frees its body (up to 64 KiB) at once, not
/// when a slow listener's writer reaches its place in the queue (1,024 commands).
#[derive(Debug, Clone, Default)]
pub struct RequestMessages(Arc<Mutex<Option<Vec<Message>>>>);

impl RequestMessages {
    /// Messages to send.
    pub fn new(messages: Vec<Message>) -> Self {
        RequestMessages(Arc::new(Mutex::new(Some(messages))))
    }

    /// The messages, if nobody took them yet.
    pub fn take(&self) -> Option<Vec<Message>> {
        self.0.lock().ok().and_then(|mut m| m.take())
    }
}

/// How a rendezvous ended on the listener's side.
pub enum AcceptOutcome {
    /// The listener opened the accept socket (and got its 101).
    Accepted {
        /// The listener's accept socket.
        stream: IoStream,
        /// Bytes already read from it after its handshake.
        initial: Vec<u8>,
        /// The `Sec-WebSocket-Protocol` the listener chose.
        protocol: Option<String>,
        /// The `Sec-WebSocket-Extensions` the listener answered with (passed to the sender
        /// as is).
        extensions: Option<String>,
    },
    /// The listener's control channel ended before the accept message went out: the
    /// sender is routed again, as if it had just come.
    Undelivered,
    /// The listener rejected the sender.
    Rejected {
        /// Status for the sender.
        status: u16,
        /// Description for the sender.
        description: String,
    },
}

/// How many commands (accepts, requests) may wait for one control channel: a listener that
/// stops reading its channel gets no more than this queued; the senders beyond are refused
/// (503) at once instead of piling up in the relay.
pub const CONTROL_QUEUE: usize = 1024;

/// A listener's queue of commands, bounded ([`CONTROL_QUEUE`]).
#[derive(Clone)]
pub struct ListenerQueue(mpsc::Sender<ControlCommand>);

/// Why a command could not be queued for a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    /// Its control channel has closed.
    Gone,
    /// Its queue is full: it does not read its control channel.
    Full,
}

impl QueueError {
    /// What a sender whose accept or request could not be queued is answered.
    pub fn refusal(self) -> SocketError {
        match self {
            QueueError::Gone => {
                SocketError::status(404, "Endpoint not found: no listener is connected")
            }
            QueueError::Full => SocketError::status(
                503,
                "Service Unavailable: the listener is not reading its control channel",
            ),
        }
    }
}

impl ListenerQueue {
    /// Queues a command without waiting.
    pub fn send(&self, command: ControlCommand) -> Result<(), QueueError> {
        self.0.try_send(command).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => QueueError::Full,
            mpsc::error::TrySendError::Closed(_) => QueueError::Gone,
        })
    }

    /// Whether its control channel has closed.
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    /// Whether a command would be queued now (open, and room left).
    fn has_room(&self) -> bool {
        !self.0.is_closed() && self.0.capacity() > 0
    }
}

struct ListenerEntry {
    id: u64,
    commands: ListenerQueue,
    /// The origin of the addresses this listener is given (see
    /// [`crate::relay::state::RelayState::origin_for_host`]).
    origin: Arc<str>,
    /// Test hook: the channel's reader stops while this says `true`. Set here, not through
    /// `commands`, so that a freeze holds from the moment `freeze_listeners` returns.
    frozen: watch::Sender<bool>,
}

/// A listener picked for a sender or a request.
#[derive(Clone)]
pub struct PickedListener {
    /// Its id in the registry (HTTP responses are only taken from the control channel
    /// their request went to).
    pub id: u64,
    /// Its control channel's orders.
    pub commands: ListenerQueue,
    /// The origin of the addresses it is given: the host its control channel connected
    /// with.
    pub origin: Arc<str>,
}

/// A registered control channel's ends: its id, its commands, and its frozen flag.
pub type ListenerEnds = (u64, mpsc::Receiver<ControlCommand>, watch::Receiver<bool>);

struct Entity {
    name: String,
    requires_client_authorization: bool,
    listeners: Vec<ListenerEntry>,
    /// Made by a listener in "any" mode (not configured): it routes senders only while it
    /// has listeners (see [`Registry::entity_for_sender`]).
    auto: bool,
}

/// A sender waiting for its listener.
pub struct Pending {
    /// Where the listener's answer goes.
    pub outcome: oneshot::Sender<AcceptOutcome>,
    /// The key of the Hybrid Connection the sender reached: only an accept request that
    /// reaches it too takes the rendezvous.
    entity: String,
}

/// A Hybrid Connection resolved from a request path.
#[derive(Debug, Clone)]
pub struct EntityRef {
    /// Lowercased key.
    pub key: String,
    /// The name as configured (or as first listened on).
    pub name: String,
    /// Whether senders need a token.
    pub requires_client_authorization: bool,
}

#[derive(Default)]
struct Maps {
    entities: HashMap<String, Entity>,
    pending: HashMap<String, Pending>,
    next_listener: u64,
}

/// Counts for `stats()`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegistryCounts {
    /// Hybrid Connections known.
    pub hybrid_connections: usize,
    /// Control channels open.
    pub listeners: usize,
    /// Rendezvous waiting for an accept.
    pub pending_accepts: usize,
}

/// The registry.
pub struct Registry {
    any: bool,
    maps: Mutex<Maps>,
}

fn entity_key(path: &str) -> String {
    path.trim_matches('/').to_lowercase()
}

/// True when the path key `key` names the entity `entity` or something under it.
fn under(key: &str, entity: &str) -> bool {
    key.strip_prefix(entity)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

impl Registry {
    /// A registry for the configured entities.
    pub fn new(entities: &Entities) -> Self {
        let mut maps = Maps::default();
        let any = match entities {
            Entities::Any => true,
            Entities::List(list) => {
                for HybridConnectionConfig {
                    name,
                    requires_client_authorization,
                } in list
                {
                    maps.entities.insert(
                        entity_key(name),
                        Entity {
                            name: name.trim_matches('/').to_owned(),
                            requires_client_authorization: *requires_client_authorization,
                            listeners: Vec::new(),
                            auto: false,
                        },
                    );
                }
                false
            }
        };
        Registry {
            any,
            maps: Mutex::new(maps),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Maps> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters (each update is a single insert or remove), so a poisoned lock is used as is.
        self.maps.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn entity_ref(key: &str, e: &Entity) -> EntityRef {
        EntityRef {
            key: key.to_owned(),
            name: e.name.clone(),
            requires_client_authorization: e.requires_client_authorization,
        }
    }

    /// The name of the entity a listener names by `path` (exact match), if it exists or
    /// would be created ("any" mode), without creating it: a listener must be authorized
    /// first ([`Registry::entity_for_listener`] creates it).
    pub fn listener_entity_name(&self, path: &str) -> Option<String> {
        let key = entity_key(path);
        let maps = self.lock();
        match maps.entities.get(&key) {
            Some(e) => Some(e.name.clone()),
            None if self.any => Some(path.trim_matches('/').to_owned()),
            None => None,
        }
    }

    /// The entity a listener names by `path` (exact match); created on first use in "any" mode.
    pub fn entity_for_listener(&self, path: &str) -> Option<EntityRef> {
        let key = entity_key(path);
        let mut maps = self.lock();
        if let Some(e) = maps.entities.get(&key) {
            return Some(Self::entity_ref(&key, e));
        }
        if !self.any {
            return None;
        }
        let e = Entity {
            name: path.trim_matches('/').to_owned(),
            requires_client_authorization: true,
            listeners: Vec::new(),
            auto: true,
        };
        let r = Self::entity_ref(&key, &e);
        maps.entities.insert(key, e);
        Some(r)
    }

    /// The entity a sender's `path` reaches (the longest known name that is a prefix at a
    /// `/` boundary) and the rest of the path (the suffix, with its leading `/`).
    ///
    /// In "any" mode an entity that a listener made and no listener holds any more does not
    /// count while another name matches: a listener that once listened on `hc/x` would
    /// otherwise take `hc/x/...` senders from `hc`'s listeners for ever.
    pub fn entity_for_sender(&self, path: &str) -> Option<(EntityRef, String)> {
        let trimmed = path.trim_start_matches('/');
        let lower = trimmed.to_lowercase();
        let maps = self.lock();
        // The longest match among live entities, else among all (its "no listener" answer).
        let mut best: Option<(&String, &Entity)> = None;
        let mut best_any: Option<(&String, &Entity)> = None;
        for (key, e) in &maps.entities {
            let matches = lower == *key
                || (lower.starts_with(key.as_str())
                    && lower.as_bytes().get(key.len()) == Some(&b'/'));
            if !matches {
                continue;
            }
            if best_any.is_none_or(|(k, _)| k.len() < key.len()) {
                best_any = Some((key, e));
            }
            let live = !e.auto || !e.listeners.is_empty();
            if live && best.is_none_or(|(k, _)| k.len() < key.len()) {
                best = Some((key, e));
            }
        }
        best.or(best_any).map(|(key, e)| {
            // `to_lowercase` can change byte lengths outside ASCII; fall back to no suffix then.
            let suffix = trimmed.get(key.len()..).unwrap_or("").to_owned();
            (Self::entity_ref(key, e), suffix)
        })
    }

    /// Registers a control channel, whose addresses have `origin`; an error when the
    /// entity is gone or full.
    pub fn add_listener(
        &self,
        entity: &str,
        max: usize,
        origin: Arc<str>,
    ) -> Result<ListenerEnds, &'static str> {
        self.add_listener_with_queue(entity, max, origin, CONTROL_QUEUE)
    }

    /// [`Registry::add_listener`] with a queue of `queue` commands.
    pub fn add_listener_with_queue(
        &self,
        entity: &str,
        max: usize,
        origin: Arc<str>,
        queue: usize,
    ) -> Result<ListenerEnds, &'static str> {
        let mut maps = self.lock();
        maps.next_listener += 1;
        let id = maps.next_listener;
        let e = maps.entities.get_mut(entity).ok_or("Endpoint not found")?;
        if e.listeners.len() >= max {
            return Err("Forbidden: the listener quota of this Hybrid Connection is reached");
        }
        let (tx, rx) = mpsc::channel(queue.max(1));
        let (frozen, frozen_rx) = watch::channel(false);
        e.listeners.push(ListenerEntry {
            id,
            commands: ListenerQueue(tx),
            origin,
            frozen,
        });
        Ok((id, rx, frozen_rx))
    }

    /// Unregisters a control channel.
    pub fn remove_listener(&self, entity: &str, id: u64) {
        if let Some(e) = self.lock().entities.get_mut(entity) {
            e.listeners.retain(|l| l.id != id);
        }
    }

    /// A random listener of `entity` that is not frozen, as the service spreads senders;
    /// one whose queue has room when there is one (a listener that does not read its
    /// channel gets the 503 only when every other is as full).
    pub fn pick_listener(&self, entity: &str) -> Option<PickedListener> {
        let maps = self.lock();
        let live: Vec<&ListenerEntry> = maps
            .entities
            .get(entity)?
            .listeners
            .iter()
            .filter(|l| !*l.frozen.borrow())
            .collect();
        if live.is_empty() {
            return None;
        }
        let ready: Vec<&ListenerEntry> = live
            .iter()
            .copied()
            .filter(|l| l.commands.has_room())
            .collect();
        let pool = if ready.is_empty() { &live } else { &ready };
        let l = pool[rand::rng().random_range(0..pool.len())];
        Some(PickedListener {
            id: l.id,
            commands: l.commands.clone(),
            origin: l.origin.clone(),
        })
    }

    /// Registers a rendezvous under an id unique among those pending: `wanted` when free,
    /// else `wanted` with a `_N` suffix (the service's ids carry such suffixes too).
    pub fn insert_pending(
        &self,
        wanted: &str,
        entity: &str,
    ) -> (String, oneshot::Receiver<AcceptOutcome>) {
        let (tx, rx) = oneshot::channel();
        let mut maps = self.lock();
        let mut id = wanted.to_owned();
        let mut n = 1;
        while maps.pending.contains_key(&id) {
            n += 1;
            id = format!("{wanted}_{n}");
        }
        maps.pending.insert(
            id.clone(),
            Pending {
                outcome: tx,
                entity: entity.to_owned(),
            },
        );
        (id, rx)
    }

    /// Hands the accepts still queued for a listener whose channel ended back to their
    /// senders, which are routed again (another listener, or 404 when none is left) rather
    /// than wait for the accept timeout: that listener never heard of them. Call it after
    /// [`Registry::remove_listener`], so that none is routed to it again.
    pub fn hand_back_accepts(&self, commands: &mut mpsc::Receiver<ControlCommand>) {
        commands.close();
        while let Ok(cmd) = commands.try_recv() {
            if let ControlCommand::Accept { id, .. } = cmd {
                if let Some(pending) = self.take_pending(&id) {
                    let _ = pending.outcome.send(AcceptOutcome::Undelivered);
                }
            }
        }
    }

    /// Forgets a rendezvous (the sender gave up, or the listener did not answer in time).
    pub fn take_pending(&self, id: &str) -> Option<Pending> {
        self.lock().pending.remove(id)
    }

    /// Takes the rendezvous `id` for an accept request on `path` (an accept address is
    /// valid once, and only on the Hybrid Connection the sender reached: on its name or
    /// under it, as a URL parser may normalise the rest of the address).
    pub fn take_pending_at(&self, id: &str, path: &str) -> Option<Pending> {
        let mut maps = self.lock();
        if !under(&entity_key(path), &maps.pending.get(id)?.entity) {
            return None;
        }
        maps.pending.remove(id)
    }

    /// True when a rendezvous with this id is waiting for an accept request on `path` (see
    /// [`Registry::take_pending_at`]).
    pub fn has_pending_at(&self, id: &str, path: &str) -> bool {
        let key = entity_key(path);
        self.lock()
            .pending
            .get(id)
            .is_some_and(|p| under(&key, &p.entity))
    }

    /// Sends `make(code, reason)` to the listeners of `entity` (all when `None`).
    fn for_listeners(
        &self,
        entity: Option<&str>,
        mut f: impl FnMut(&mut ListenerEntry) -> bool,
    ) -> usize {
        let wanted = entity.map(entity_key);
        let mut maps = self.lock();
        let mut n = 0;
        for (key, e) in maps.entities.iter_mut() {
            if wanted.as_ref().is_some_and(|w| w != key) {
                continue;
            }
            for l in e.listeners.iter_mut() {
                if f(l) {
                    n += 1;
                }
            }
        }
        n
    }

    /// Test hook: closes matching control channels with `code`.
    pub fn drop_listeners(&self, entity: Option<&str>, code: u16, reason: &str) -> usize {
        self.for_listeners(entity, |l| {
            l.commands
                .send(ControlCommand::Drop {
                    code,
                    reason: reason.to_owned(),
                })
                .is_ok()
        })
    }

    /// Test hook: freezes (or thaws) matching control channels.
    pub fn freeze_listeners(&self, entity: Option<&str>, frozen: bool) -> usize {
        self.for_listeners(entity, |l| {
            l.frozen.send_replace(frozen);
            !l.commands.is_closed()
        })
    }

    /// Forgets every listener and rendezvous (the relay stopped). Configured entities stay.
    pub fn clear(&self) {
        let mut maps = self.lock();
        maps.pending.clear();
        if self.any {
            maps.entities.clear();
        } else {
            for e in maps.entities.values_mut() {
                e.listeners.clear();
            }
        }
    }

    /// Current counts.
    pub fn counts(&self) -> RegistryCounts {
        let maps = self.lock();
        RegistryCounts {
            hybrid_connections: maps.entities.len(),
            listeners: maps.entities.values().map(|e| e.listeners.len()).sum(),
            pending_accepts: maps.pending.len(),
        }
    }
}

/// A random (version 4) UUID, as the service generates tracking ids.
pub fn new_uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_find_the_longest_entity_and_keep_the_suffix() {
        let r = Registry::new(&Entities::List(vec![
            HybridConnectionConfig {
                name: "a".into(),
                requires_client_authorization: true,
            },
            HybridConnectionConfig {
                name: "a/b".into(),
                requires_client_authorization: false,
            },
        ]));
        let (e, suffix) = r.entity_for_sender("A/B/c/d").unwrap();
        assert_eq!((e.name.as_str(), suffix.as_str()), ("a/b", "/c/d"));
        assert!(!e.requires_client_authorization);
        let (e, suffix) = r.entity_for_sender("a").unwrap();
        assert_eq!((e.name.as_str(), suffix.as_str()), ("a", ""));
        assert!(r.entity_for_sender("ab").is_none());
        assert!(r.entity_for_listener("zzz").is_none());
    }

    #[test]
    fn an_accept_takes_a_rendezvous_only_on_its_senders_hybrid_connection() {
        let r = Registry::new(&Entities::Any);
        let (id, _rx) = r.insert_pending("s", "hc");
        for other in ["other", "hc2", "hc2/sub", "h", ""] {
            assert!(!r.has_pending_at(&id, other), "{other}");
            assert!(r.take_pending_at(&id, other).is_none(), "{other}");
        }
        // Its name, any case, or anything under it (a suffix, as a URL parser left it).
        assert!(r.has_pending_at(&id, "/HC/"));
        assert!(r.has_pending_at(&id, "hc/sub/x"));
        assert!(r.take_pending_at(&id, "hc/b").is_some());
        assert!(r.take_pending_at(&id, "hc").is_none(), "taken once");
    }

    #[test]
    fn listener_quota_and_pending_ids() {
        let r = Registry::new(&Entities::Any);
        let e = r.entity_for_listener("Hyco").unwrap();
        assert_eq!(e.name, "Hyco");
        let origin: Arc<str> = Arc::from("ws://ns.test:80");
        let _a = r.add_listener(&e.key, 2, origin.clone()).unwrap();
        let _b = r.add_listener(&e.key, 2, origin.clone()).unwrap();
        assert!(r.add_listener(&e.key, 2, origin).is_err());
        assert_eq!(r.counts().listeners, 2);
        let (id1, _rx1) = r.insert_pending("x", "hc");
        let (id2, _rx2) = r.insert_pending("x", "hc");
        assert_eq!((id1.as_str(), id2.as_str()), ("x", "x_2"));
        assert!(r.take_pending("x").is_some());
        assert!(r.take_pending("x").is_none());
    }

    #[test]
    fn senders_go_to_a_listener_with_room_while_there_is_one() {
        let r = Registry::new(&Entities::Any);
        let e = r.entity_for_listener("hc").unwrap();
        let origin: Arc<str> = Arc::from("ws://ns.test:80");
        let (stuck, _stuck_rx, _f1) = r
            .add_listener_with_queue(&e.key, 2, origin.clone(), 1)
            .unwrap();
        let (reading, _reading_rx, _f2) = r.add_listener_with_queue(&e.key, 2, origin, 1).unwrap();
        let accept = || ControlCommand::Accept {
            id: "a".into(),
            message: "{}".into(),
        };
        // Fill the first one's queue.
        loop {
            let picked = r.pick_listener(&e.key).unwrap();
            if picked.id == stuck {
                assert_eq!(picked.commands.send(accept()), Ok(()));
                break;
            }
        }
        for _ in 0..50 {
            assert_eq!(r.pick_listener(&e.key).unwrap().id, reading);
        }
    }

    #[test]
    fn accepts_a_closed_channel_never_sent_go_back_to_their_senders() {
        let r = Registry::new(&Entities::Any);
        let e = r.entity_for_listener("hc").unwrap();
        let origin: Arc<str> = Arc::from("ws://ns.test:80");
        let (listener, mut rx, _frozen) = r.add_listener_with_queue(&e.key, 2, origin, 8).unwrap();
        let q = r.pick_listener(&e.key).unwrap().commands;
        let (a, mut a_rx) = r.insert_pending("a", &e.key);
        let (b, mut b_rx) = r.insert_pending("b", &e.key);
        for id in [&a, &b] {
            let accept = ControlCommand::Accept {
                id: id.clone(),
                message: "{}".into(),
            };
            assert_eq!(q.send(accept), Ok(()));
        }
        // The first went out; the channel ends with the second still queued.
        assert!(matches!(rx.try_recv(), Ok(ControlCommand::Accept { .. })));
        r.remove_listener(&e.key, listener);
        r.hand_back_accepts(&mut rx);
        assert!(matches!(b_rx.try_recv(), Ok(AcceptOutcome::Undelivered)));
        assert!(
            !r.has_pending_at(&b, "hc"),
            "b is routed again, not left pending"
        );
        // The one the listener heard of keeps waiting for its answer.
        assert!(a_rx.try_recv().is_err());
        assert!(r.has_pending_at(&a, "hc"));
        assert_eq!(
            q.send(ControlCommand::Drop {
                code: 1000,
                reason: String::new()
            }),
            Err(QueueError::Gone)
        );
    }

    #[test]
    fn a_listener_that_does_not_read_gets_a_bounded_queue() {
        let r = Registry::new(&Entities::Any);
        let e = r.entity_for_listener("hc").unwrap();
        let origin: Arc<str> = Arc::from("ws://ns.test:80");
        let (_id, rx, _frozen) = r.add_listener_with_queue(&e.key, 1, origin, 2).unwrap();
        let q = r.pick_listener(&e.key).unwrap().commands;
        let accept = || ControlCommand::Accept {
            id: "a".into(),
            message: "{}".into(),
        };
        assert_eq!(q.send(accept()), Ok(()));
        assert_eq!(q.send(accept()), Ok(()));
        assert_eq!(q.send(accept()), Err(QueueError::Full));
        assert_eq!(QueueError::Full.refusal().status_code, Some(503));
        drop(rx);
        assert_eq!(q.send(accept()), Err(QueueError::Gone));
        assert!(q.is_closed());
        assert_eq!(QueueError::Gone.refusal().status_code, Some(404));
    }

    #[test]
    fn a_listener_gone_from_a_sub_path_no_longer_takes_its_parents_senders() {
        let r = Registry::new(&Entities::Any);
        let origin: Arc<str> = Arc::from("ws://ns.test:80");
        let hc = r.entity_for_listener("hc").unwrap();
        let _parent = r.add_listener(&hc.key, 5, origin.clone()).unwrap();
        let sub = r.entity_for_listener("hc/x").unwrap();
        let (id, _rx, _frozen) = r.add_listener(&sub.key, 5, origin).unwrap();
        let (e, suffix) = r.entity_for_sender("hc/x/y").unwrap();
        assert_eq!(
            (e.name.as_str(), suffix.as_str()),
            ("hc/x", "/y"),
            "while it listens"
        );
        r.remove_listener(&sub.key, id);
        let (e, suffix) = r.entity_for_sender("hc/x/y").unwrap();
        assert_eq!(
            (e.name.as_str(), suffix.as_str()),
            ("hc", "/x/y"),
            "once it is gone"
        );
        // With no listener anywhere, the longest name still answers (no listener: 404).
        let lone = r.entity_for_listener("lone/deep").unwrap();
        assert_eq!(r.entity_for_sender("lone/deep/z").unwrap().0.key, lone.key);
    }

    #[test]
    fn a_queued_requests_messages_go_to_whichever_takes_them_first() {
        let queued = RequestMessages::new(vec![Message::text("request")]);
        let request = queued.clone();
        // The request ended (its sender left) before the writer reached it: its messages
        // are freed then, and the writer finds none.
        assert_eq!(request.take().map(|m| m.len()), Some(1));
        assert!(queued.take().is_none());
        let queued = RequestMessages::new(vec![Message::text("request")]);
        let request = queued.clone();
        assert!(queued.take().is_some(), "the writer first");
        assert!(request.take().is_none());
    }

    #[test]
    fn uuids_look_like_uuids() {
        let u = new_uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }
}
