//! Single-core async building blocks for the transport: a bounded queue and a wake-up signal.
//!
//! Everything here lives on one glommio executor (`Rc`/`Cell`, no atomics, no locks). glommio's
//! own local channel has no `try_recv` and asserts on waiters at drop; these few lines give the
//! transport exactly the semantics it needs: a fixed capacity allocated up front, `try_push` for
//! callers that must not wait, an awaiting `push` for readers that apply back-pressure to their
//! socket, and `close` that releases every waiter.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::task::{Poll, Waker};

/// Wakers of the tasks waiting on one condition. Registration dedupes by `will_wake`, so a task
/// polled repeatedly holds one slot; the list is bounded by the number of distinct waiters.
#[derive(Default)]
pub(crate) struct WakerList {
    wakers: RefCell<Vec<Waker>>,
}

impl WakerList {
    pub(crate) fn register(&self, waker: &Waker) {
        let mut wakers = self.wakers.borrow_mut();
        if !wakers.iter().any(|w| w.will_wake(waker)) {
            wakers.push(waker.clone());
        }
    }

    pub(crate) fn wake_all(&self) {
        // Take the list first: a woken task may register again while we iterate.
        let wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        for w in wakers {
            w.wake();
        }
    }
}

/// A bounded FIFO shared by tasks of one executor.
pub(crate) struct LocalQueue<T> {
    items: RefCell<VecDeque<T>>,
    capacity: usize,
    closed: Cell<bool>,
    /// Tasks waiting for room.
    pushers: WakerList,
    /// Tasks waiting for an item.
    poppers: WakerList,
}

impl<T> LocalQueue<T> {
    pub(crate) fn new(capacity: usize) -> LocalQueue<T> {
        let capacity = capacity.max(1);
        LocalQueue {
            items: RefCell::new(VecDeque::with_capacity(capacity)),
            capacity,
            closed: Cell::new(false),
            pushers: WakerList::default(),
            poppers: WakerList::default(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.items.borrow().len()
    }

    /// Adds `item` if there is room; gives it back otherwise (or when closed).
    pub(crate) fn try_push(&self, item: T) -> Result<(), T> {
        if self.closed.get() {
            return Err(item);
        }
        let mut items = self.items.borrow_mut();
        if items.len() >= self.capacity {
            return Err(item);
        }
        items.push_back(item);
        drop(items);
        self.poppers.wake_all();
        Ok(())
    }

    /// Adds `item`, waiting for room. Gives it back if the queue is closed.
    pub(crate) async fn push(&self, item: T) -> Result<(), T> {
        let mut item = Some(item);
        poll_fn(|cx| {
            let Some(it) = item.take() else {
                // Polled after completion: nothing left to do.
                return Poll::Ready(Ok(()));
            };
            match self.try_push(it) {
                Ok(()) => Poll::Ready(Ok(())),
                Err(it) if self.closed.get() => Poll::Ready(Err(it)),
                Err(it) => {
                    item = Some(it);
                    self.pushers.register(cx.waker());
                    Poll::Pending
                }
            }
        })
        .await
    }

    pub(crate) fn try_pop(&self) -> Option<T> {
        let item = self.items.borrow_mut().pop_front();
        if item.is_some() {
            self.pushers.wake_all();
        }
        item
    }

    /// The next item, waiting for one; `None` once the queue is closed and empty.
    pub(crate) async fn pop(&self) -> Option<T> {
        poll_fn(|cx| {
            if let Some(item) = self.try_pop() {
                return Poll::Ready(Some(item));
            }
            if self.closed.get() {
                return Poll::Ready(None);
            }
            self.poppers.register(cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Refuses further pushes and releases every waiter; queued items can still be popped.
    pub(crate) fn close(&self) {
        self.closed.set(true);
        self.pushers.wake_all();
        self.poppers.wake_all();
    }
}

/// A one-waiter wake-up: the writer of a link sleeps on it, `send` rings it.
#[derive(Default)]
pub(crate) struct Signal {
    waker: RefCell<Option<Waker>>,
}

impl Signal {
    pub(crate) fn register(&self, waker: &Waker) {
        let mut slot = self.waker.borrow_mut();
        match &*slot {
            Some(w) if w.will_wake(waker) => {}
            _ => *slot = Some(waker.clone()),
        }
    }

    pub(crate) fn notify(&self) {
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }
}
