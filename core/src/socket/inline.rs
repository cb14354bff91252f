//! Inline reads: the owner reads a sparse connection on its own thread.
//!
//! A connection's task reads its socket on a tokio thread and hands what it decoded to the
//! owner's thread (JavaScript's). For one small message at a time (a request and its
//! answer) that costs a wake-up of each thread in turn: the kernel wakes the tokio thread,
//! which wakes the owner's. The owner can instead watch the socket itself (its event loop
//! polls the descriptor) and read it when it is readable, under the connection's lock, as
//! the task would: one wake-up per message instead of two.
//!
//! Who reads is the connection's [`Reader`]:
//! - [`Reader::Task`]: the task reads (always, without [`SocketOptions::inline_reads`]).
//! - [`Reader::Wanted`]: a turn of the task read a little ([`SPARSE_READ`] at most) and
//!   then found nothing more, so it asked its sink to start inline reads
//!   ([`EventSink::inline_wanted`]); it goes on reading until the owner does.
//! - [`Reader::Owner`]: the owner watches the socket and reads it
//!   ([`Handle::read_inline`]); the task only writes, and keeps its timers.
//!
//! The owner hands reading back to the task ([`Reader::Task`], and a wake-up) whenever
//! reading inline is not the cheap case: the connection is paused, behind its high-water
//! mark or the process's budget, closing, compressed, busy on the task's thread, or one
//! turn read more than `max` bytes (bulk transfers stay on tokio's threads, where reading
//! overlaps the owner's work). Either way every read goes through the one stream under the
//! one lock, and every event through the one sink, so events keep their order.
//!
//! The owner watches a duplicate of the descriptor: the task may end and drop its stream
//! at any time, and a descriptor that was closed and given to another socket must never
//! be watched. The duplicate keeps the socket open, so a task whose owner ever watched it
//! shuts the connection down when it ends.
//!
//! [`SocketOptions::inline_reads`]: crate::socket::SocketOptions::inline_reads
//! [`EventSink::inline_wanted`]: crate::socket::EventSink::inline_wanted

use std::sync::atomic::Ordering;
use std::sync::Weak;

use crate::io::SocketFd;
use crate::socket::shared::{Handle, Shared};

/// A turn of the task that read at most this many bytes, and then nothing more, asks the
/// owner to read inline: one small message, or a few, at a time.
pub const SPARSE_READ: usize = 16 * 1024;

/// Who reads a connection (see the module's description).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Reader {
    /// The task.
    Task = 0,
    /// The task, until the owner starts reading.
    Wanted = 1,
    /// The owner.
    Owner = 2,
}

impl Reader {
    fn of(n: u8) -> Reader {
        match n {
            1 => Reader::Wanted,
            2 => Reader::Owner,
            _ => Reader::Task,
        }
    }
}

/// What an inline read did (see [`Handle::read_inline`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inline {
    /// Read what there was: keep watching the socket.
    Read,
    /// The task reads from now on (or the connection is gone): stop watching.
    Stop,
}

impl Shared {
    /// Who reads now.
    pub(super) fn reader(&self) -> Reader {
        Reader::of(self.reader.load(Ordering::SeqCst))
    }

    /// Asks the owner to read (from [`Reader::Task`] only); true when it was asked.
    pub(super) fn want_inline(&self) -> bool {
        self.inline_ok
            && self.fd.load(Ordering::SeqCst) >= 0
            && self
                .reader
                .compare_exchange(
                    Reader::Task as u8,
                    Reader::Wanted as u8,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                )
                .is_ok()
    }

    /// Tells the stream whether tokio watches its readability (see `tcp.rs`).
    fn switch_reads(&self, owner: bool) {
        if let Some(s) = self.switch.get() {
            s.store(owner, Ordering::SeqCst);
        }
    }

    /// The task reads again, from its next turn on, which this wakes.
    pub(super) fn hand_back(&self) -> Inline {
        self.switch_reads(false);
        self.reader.store(Reader::Task as u8, Ordering::SeqCst);
        self.wake();
        Inline::Stop
    }
}

impl Handle {
    /// Starts inline reads, when the task asked for them ([`Reader::Wanted`]): `watch` is
    /// given the socket's descriptor, valid for the call, and returns whether it now
    /// watches it (a duplicate of it, see the module's description). From then on the owner
    /// calls [`Handle::read_inline`] whenever the socket is readable. False (the task goes
    /// on reading) when the task did not ask, the connection is gone, or `watch` failed.
    pub fn start_inline(&self, watch: impl FnOnce(SocketFd) -> bool) -> bool {
        let shared = &*self.shared;
        // Held while `watch` runs: the connection, and so its descriptor, cannot go away.
        let Some(conn) = shared.conn.get().and_then(Weak::upgrade) else {
            return false;
        };
        let fd = shared.fd.load(Ordering::SeqCst);
        if shared.reader() != Reader::Wanted || fd < 0 {
            return false;
        }
        // Before the duplicate exists: the task's end must shut the connection down.
        shared.attached.store(true, Ordering::SeqCst);
        if !watch(fd) {
            shared.hand_back();
            return false;
        }
        let started = shared
            .reader
            .compare_exchange(
                Reader::Wanted as u8,
                Reader::Owner as u8,
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_ok();
        if started {
            shared.switch_reads(true);
        }
        drop(conn);
        started
    }

    /// Reads the socket on the calling thread, as the task would, up to `max` bytes: its
    /// events go to the sink as the task's do (in order with them). Never blocks: when the
    /// task is running, or reading inline is not the cheap case (see the module's
    /// description), it hands reading back to the task and returns [`Inline::Stop`].
    pub fn read_inline(&self, max: usize) -> Inline {
        let shared = &*self.shared;
        let Some(conn) = shared.conn.get().and_then(Weak::upgrade) else {
            return Inline::Stop;
        };
        let Ok(mut task) = conn.try_lock() else {
            // The task is running (or a poisoned lock, which the task meets).
            return shared.hand_back();
        };
        task.read_inline(max)
    }
}
