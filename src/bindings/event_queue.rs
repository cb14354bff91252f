//! The one way events go up to JavaScript: a queue drained by a ThreadsafeFunction.
//!
//! Tokio threads push events; at most one JS call is scheduled at a time, and that call
//! drains everything queued, so under load one call carries many events, in order. The
//! ThreadsafeFunction keeps the process alive until the owner's last event (its close) has
//! been delivered; then it is released and the process may exit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::{Function, ToNapiValue};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Status;

/// A batch converted for JavaScript, and whether it holds the owner's last event.
pub struct Batch<J> {
    /// What the JS callback receives.
    pub items: Vec<J>,
    /// The last event is in this batch: release the function afterwards.
    pub last: bool,
}

type EventsFn<J> = ThreadsafeFunction<(), (), Vec<J>, Status, false>;

/// The queue between tokio and the JS thread.
pub struct EventQueue<E: Send + 'static, J: ToNapiValue + 'static> {
    events: Mutex<Vec<E>>,
    scheduled: AtomicBool,
    tsfn: Mutex<Option<EventsFn<J>>>,
}

impl<E: Send + 'static, J: ToNapiValue + 'static> EventQueue<E, J> {
    /// A queue delivering to `callback`, each batch converted on the JS thread by `convert`.
    pub fn new(
        callback: Function<Vec<J>, ()>,
        mut convert: impl FnMut(Vec<E>) -> Batch<J> + 'static,
    ) -> napi::Result<Arc<Self>> {
        let queue = Arc::new(EventQueue {
            events: Mutex::new(Vec::new()),
            scheduled: AtomicBool::new(false),
            tsfn: Mutex::new(None),
        });
        let q = queue.clone();
        let tsfn: EventsFn<J> = callback
            .build_threadsafe_function::<()>()
            .callee_handled::<false>()
            .build_callback(move |_ctx| {
                // Cleared before draining, so that an event pushed meanwhile schedules a call.
                q.scheduled.store(false, Ordering::Release);
                let drained = q
                    .events
                    .lock()
                    .map(|mut e| std::mem::take(&mut *e))
                    .unwrap_or_default();
                let batch = convert(drained);
                if batch.last {
                    if let Ok(mut t) = q.tsfn.lock() {
                        t.take();
                    }
                }
                Ok(batch.items)
            })?;
        if let Ok(mut t) = queue.tsfn.lock() {
            *t = Some(tsfn);
        }
        Ok(queue)
    }

    /// Queues an event and schedules a JS call if none is pending. Never blocks.
    pub fn push(&self, event: E) {
        if let Ok(mut q) = self.events.lock() {
            q.push(event);
        }
        if !self.scheduled.swap(true, Ordering::AcqRel) {
            if let Ok(t) = self.tsfn.lock() {
                if let Some(tsfn) = t.as_ref() {
                    tsfn.call((), ThreadsafeFunctionCallMode::NonBlocking);
                }
            }
        }
    }
}
