//! Responses the owner sends inline while it handles a batch of events go out together.
//!
//! Under load one call into JavaScript hands it many requests, and their handlers answer
//! most of them before it returns. Written one by one, each response would cost the JS
//! thread a system call of its own (on a loopback connection, one that also delivers the
//! bytes to the reader); held until the call returns, a control channel's responses go out
//! in one write. A response sent outside such a call (a handler that answers later) goes
//! out at once.

use std::cell::RefCell;
use std::sync::Arc;

use crate::socket::task::{Direct, Outgoing};
use crate::socket::{Command, Handle};

/// What an exchange does once its response went out (`true`) or could not (`false`).
type Then = Box<dyn FnOnce(bool)>;

/// A response held for its channel.
struct Held {
    channel: Handle,
    batch: Vec<u8>,
    then: Then,
}

thread_local! {
    /// `Some` while this thread holds inline responses (see [`hold_inline_responses`]).
    static HELD: RefCell<Option<Vec<Held>>> = const { RefCell::new(None) };
}

/// Runs `f`, holding the inline responses it sends on this thread, then sends them: one
/// write per control channel. Nested calls hold for the outermost.
pub fn hold_inline_responses<R>(f: impl FnOnce() -> R) -> R {
    let outermost = HELD.with(|h| {
        let mut h = h.borrow_mut();
        if h.is_some() {
            false
        } else {
            *h = Some(Vec::new());
            true
        }
    });
    // Sends what is held even if `f` unwinds.
    struct Release(bool);
    impl Drop for Release {
        fn drop(&mut self) {
            if self.0 {
                flush();
            }
        }
    }
    let _release = Release(outermost);
    f()
}

/// Sends `batch` (a packed [`Command::Batch`]) on `channel`: held if this thread holds
/// responses, else now. `then` learns whether it went out.
pub(crate) fn send(channel: &Handle, batch: Vec<u8>, then: Then) {
    let held = HELD.with(|h| match h.borrow_mut().as_mut() {
        Some(list) => {
            list.push(Held {
                channel: channel.clone(),
                batch,
                then,
            });
            None
        }
        None => Some((batch, then)),
    });
    if let Some((batch, then)) = held {
        then(write(channel, batch));
    }
}

/// Writes a batch on a channel from this thread when it is idle, else queues it.
fn write(channel: &Handle, batch: Vec<u8>) -> bool {
    match channel.send_direct(Outgoing::Batch(&batch)) {
        Direct::Written | Direct::Handed => true,
        Direct::Refused => channel.send(Command::Batch(batch)),
    }
}

/// Sends everything held, one batch per channel (packed batches concatenate), in the order
/// the responses were sent.
fn flush() {
    let Some(list) = HELD.with(|h| h.borrow_mut().take()) else {
        return;
    };
    // One per channel: the channel, its batches concatenated, and their exchanges.
    let mut groups: Vec<Held> = Vec::new();
    let mut thens: Vec<Vec<Then>> = Vec::new();
    for held in list {
        match groups
            .iter()
            .position(|g| Arc::ptr_eq(&g.channel.shared, &held.channel.shared))
        {
            Some(i) => {
                groups[i].batch.extend_from_slice(&held.batch);
                thens[i].push(held.then);
            }
            None => {
                thens.push(Vec::new());
                groups.push(held);
            }
        }
    }
    for (group, more) in groups.into_iter().zip(thens) {
        let ok = write(&group.channel, group.batch);
        (group.then)(ok);
        for then in more {
            then(ok);
        }
    }
}
