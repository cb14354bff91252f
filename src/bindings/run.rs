//! Runs: the small whole messages of one read of a socket (by its task or inline), sent up
//! to JavaScript as one `messages` event instead of one `message` event each. The read's
//! pushes are bracketed (`EventSink::read_start`/`read_end`) under the connection's lock, so
//! the run goes to the hub before anything another thread could push.
//!
//! A message as an event of its own costs its id, its type, its flag and its payload as
//! JavaScript values, a place in the hub's queue and a dispatch to its object; under a
//! steady flow of small messages that was most of a listener's time on its JavaScript
//! thread. A run is one ArrayBuffer: the payloads one after the other, then a 32-bit word
//! per message (its length times two, plus one when binary), then the count, little-endian;
//! `lib/websocket.js` cuts it into Buffer views and emits each message in order. A lone
//! message still goes up as a `message` event, so a sparse socket's round trip is
//! unchanged. A run is copied into the ArrayBuffer JavaScript gets, and its vector serves
//! the JS thread's next run (one built on a tokio thread starts afresh).
//!
//! A run is sent once it reaches [`RUN_MAX`] bytes (payloads and words), so it is at most
//! about 16.5 KiB: a view a handler keeps holds its whole run alive (ws's messages hold the
//! chunk their socket read, up to 64 KiB).

use std::cell::Cell;

use hyco_core::socket::pool;

use crate::bindings::flat::COPY_BELOW;

/// Messages below this size join runs (larger ones are worth an event of their own): the
/// payloads a delivery would copy anyway.
pub const RUN_BELOW: usize = COPY_BELOW;

/// A run is sent once its payloads and words reach this size.
pub const RUN_MAX: usize = 16 * 1024;

thread_local! {
    /// A run's vector, back from JavaScript's copy of it (on the JS thread), for the next.
    static SPARE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Takes back a run's vector once JavaScript has its copy, to build the thread's next run in.
pub fn give_back(mut bytes: Vec<u8>) {
    bytes.clear();
    if bytes.capacity() <= 2 * RUN_MAX {
        let _ = SPARE.try_with(|s| s.set(bytes));
    }
}

/// What a socket holds back during a read.
#[derive(Default)]
pub struct Pending {
    /// The read's first small message, while it is alone.
    first: Option<(Vec<u8>, bool)>,
    /// Its run, from the second small message on.
    run: Option<Box<Run>>,
}

/// A run being built.
struct Run {
    /// The payloads, then (once finished) the words and the count.
    bytes: Vec<u8>,
    /// One word per message: its length times two, plus one when binary.
    words: Vec<u32>,
}

/// What a socket sends up once its read's small messages end.
#[derive(Debug, PartialEq, Eq)]
pub enum Flush {
    /// One message: its payload and whether it is binary.
    One(Vec<u8>, bool),
    /// A run (see the module's description) and the payloads' total size.
    Run(Vec<u8>, usize),
}

impl Pending {
    /// Whether `payload` may join the read's run.
    pub fn joins(payload: &[u8]) -> bool {
        payload.len() < RUN_BELOW
    }

    /// Adds a small message; returns the run to send when it is full.
    pub fn add(&mut self, payload: Vec<u8>, binary: bool) -> Option<Flush> {
        let run = match (self.run.as_mut(), self.first.take()) {
            (Some(run), _) => run,
            (None, None) => {
                self.first = Some((payload, binary));
                return None;
            }
            (None, Some((first, first_binary))) => {
                let mut run = Box::new(Run {
                    bytes: SPARE.try_with(|s| s.take()).unwrap_or_default(),
                    words: Vec::with_capacity(16),
                });
                run.push(&first, first_binary);
                pool::give_back_small_if_kept(first);
                self.run.insert(run)
            }
        };
        run.push(&payload, binary);
        pool::give_back_small_if_kept(payload);
        if run.size() >= RUN_MAX {
            self.take()
        } else {
            None
        }
    }

    /// Takes what is held, if anything.
    pub fn take(&mut self) -> Option<Flush> {
        if let Some(run) = self.run.take() {
            return Some((*run).finish());
        }
        self.first.take().map(|(p, b)| Flush::One(p, b))
    }
}

impl Run {
    /// Its size once finished, less the count.
    fn size(&self) -> usize {
        self.bytes.len() + 4 * self.words.len()
    }

    fn push(&mut self, payload: &[u8], binary: bool) {
        self.bytes.extend_from_slice(payload);
        // Below RUN_BELOW: the length fits, twice over.
        self.words
            .push(((payload.len() as u32) << 1) | u32::from(binary));
    }

    fn finish(self) -> Flush {
        let Run { mut bytes, words } = self;
        let payloads = bytes.len();
        bytes.reserve_exact(4 * words.len() + 4);
        for w in &words {
            bytes.extend_from_slice(&w.to_le_bytes());
        }
        bytes.extend_from_slice(&(words.len() as u32).to_le_bytes());
        Flush::Run(bytes, payloads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The messages of a run, as `lib/websocket.js` reads it.
    fn read(run: &[u8]) -> Vec<(Vec<u8>, bool)> {
        let word = |at: usize| u32::from_le_bytes(run[at..at + 4].try_into().unwrap());
        let end = run.len() - 4;
        let count = word(end) as usize;
        let words = end - 4 * count;
        let mut offset = 0;
        (0..count)
            .map(|k| {
                let w = word(words + 4 * k);
                let len = (w >> 1) as usize;
                let m = (run[offset..offset + len].to_vec(), w & 1 == 1);
                offset += len;
                m
            })
            .collect()
    }

    #[test]
    fn a_lone_message_goes_up_as_it_is() {
        let mut p = Pending::default();
        assert_eq!(p.add(b"one".to_vec(), false), None);
        assert_eq!(p.take(), Some(Flush::One(b"one".to_vec(), false)));
        assert_eq!(p.take(), None);
    }

    #[test]
    fn messages_of_a_read_go_up_as_one_run_in_order() {
        let mut p = Pending::default();
        let sent: Vec<(Vec<u8>, bool)> = (0..10u8)
            .map(|i| (vec![i; usize::from(i) * 7], i % 3 != 0))
            .collect();
        for (m, b) in &sent {
            assert_eq!(p.add(m.clone(), *b), None);
        }
        let Some(Flush::Run(run, payloads)) = p.take() else {
            panic!("no run");
        };
        assert_eq!(payloads, sent.iter().map(|(m, _)| m.len()).sum::<usize>());
        assert_eq!(read(&run), sent);
        assert_eq!(p.take(), None);
    }

    #[test]
    fn a_full_run_is_sent_and_the_next_starts_afresh() {
        let mut p = Pending::default();
        let mut runs = Vec::new();
        for i in 0..100u32 {
            if let Some(f) = p.add(vec![(i % 256) as u8; 500], true) {
                runs.push(f);
            }
        }
        // 504 bytes a message with its word: the 33rd reaches 16 KiB.
        assert_eq!(runs.len(), 3);
        for f in &runs {
            let Flush::Run(run, payloads) = f else {
                panic!("not a run");
            };
            assert_eq!(*payloads, 33 * 500);
            assert_eq!(read(run).len(), 33);
        }
        assert_eq!(p.take(), Some(Flush::One(vec![99; 500], true)));
    }

    #[test]
    fn a_run_of_empty_messages_is_bounded_too() {
        let mut p = Pending::default();
        let full = (0..10_000).find_map(|_| p.add(Vec::new(), true));
        let Some(Flush::Run(run, 0)) = full else {
            panic!("no full run");
        };
        assert_eq!(read(&run).len(), RUN_MAX / 4);
    }

    #[test]
    fn empty_messages_have_their_place() {
        let mut p = Pending::default();
        p.add(Vec::new(), true);
        p.add(b"x".to_vec(), false);
        p.add(Vec::new(), false);
        let Some(Flush::Run(run, 1)) = p.take() else {
            panic!("no run");
        };
        assert_eq!(
            read(&run),
            vec![
                (Vec::new(), true),
                (b"x".to_vec(), false),
                (Vec::new(), false)
            ]
        );
    }
}
