//! A connection's outbox: what the broker task sends its writer, in order.
//!
//! One sender (the broker task) and one receiver (the writer). A queue
//! under a lock, taken whole by the writer, instead of a channel that
//! allocates a node for every message: the broker sends one message per
//! delivery, the busiest path in the server, and a writer woken once takes
//! the whole burst that woke it. An idle outbox holds no buffer: the writer
//! takes the queue's allocation with the messages.
//!
//! Unbounded as a queue, but bounded in bytes: once a connection has more
//! than `max_queue` unflushed bytes the broker pauses every sender whose
//! line goes into it, so it grows past that only by what one line of each
//! sender causes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use futures::task::AtomicWaker;

use super::broker_task::Outbound;

/// A new outbox: the broker task's end, and the writer's.
pub(super) fn outbox() -> (Outbox, Inbox) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            sender_gone: false,
            receiver_gone: false,
        }),
        writer: AtomicWaker::new(),
    });
    (Outbox(shared.clone()), Inbox(shared))
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// The writer's task, woken by each send and by the sender's drop.
    writer: AtomicWaker,
}

#[derive(Debug)]
struct State {
    queue: VecDeque<Outbound>,
    sender_gone: bool,
    receiver_gone: bool,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while the lock is held leaves a queue that is still
        // whole (every operation on it is one push or one take).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The broker task's end.
#[derive(Debug)]
pub(super) struct Outbox(Arc<Shared>);

impl Outbox {
    /// Queues `message` for the writer. Does nothing if the writer is gone:
    /// it has finished (its socket is closed, or closing), and the
    /// connection's release will reach the broker.
    pub(super) fn send(&self, message: Outbound) {
        {
            let mut state = self.0.state();
            if state.receiver_gone {
                return;
            }
            state.queue.push_back(message);
        }
        self.0.writer.wake();
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.0.state().sender_gone = true;
        self.0.writer.wake();
    }
}

/// The writer's end.
#[derive(Debug)]
pub(super) struct Inbox(Arc<Shared>);

/// What [`Inbox::poll_take`] found.
#[derive(Debug)]
pub(super) enum Taken {
    /// Every message queued, oldest first.
    Messages(VecDeque<Outbound>),
    /// Nothing is queued and nothing will be: the broker task is gone, so
    /// the server is exiting.
    Ended,
}

impl Inbox {
    /// Takes every message queued, or else registers the writer to be woken
    /// when there are some (or the broker task is gone).
    pub(super) fn poll_take(&mut self, cx: &mut Context<'_>) -> Poll<Taken> {
        if let Some(taken) = self.try_take() {
            return Poll::Ready(taken);
        }
        self.0.writer.register(cx.waker());
        // A send between the check above and the registration woke no one:
        // look again.
        match self.try_take() {
            Some(taken) => Poll::Ready(taken),
            None => Poll::Pending,
        }
    }

    /// Takes every message queued, if there are any or the sender is gone.
    fn try_take(&mut self) -> Option<Taken> {
        let mut state = self.0.state();
        if !state.queue.is_empty() {
            return Some(Taken::Messages(std::mem::take(&mut state.queue)));
        }
        state.sender_gone.then_some(Taken::Ended)
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        // What was queued will never be written: free it now, not with the
        // broker's link, and outside the lock the broker sends under.
        let unwritten = {
            let mut state = self.0.state();
            state.receiver_gone = true;
            std::mem::take(&mut state.queue)
        };
        drop(unwritten);
        // The task's waker would otherwise keep the finished task's memory
        // until the broker drops its end.
        drop(self.0.writer.take());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Waker;

    use futures::task::{ArcWake, waker};

    use super::*;
    use crate::broker::CloseReason;

    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl ArcWake for CountingWaker {
        fn wake_by_ref(arc_self: &Arc<Self>) {
            arc_self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A writer's end, polled by a task that counts its wake-ups.
    struct Writer {
        inbox: Inbox,
        wakes: Arc<CountingWaker>,
        waker: Waker,
    }

    impl Writer {
        fn new(inbox: Inbox) -> Self {
            let wakes = Arc::new(CountingWaker::default());
            let waker = waker(wakes.clone());
            Writer {
                inbox,
                wakes,
                waker,
            }
        }

        fn take(&mut self) -> Poll<Taken> {
            self.inbox.poll_take(&mut Context::from_waker(&self.waker))
        }

        /// The messages taken, as their debug text; panics on anything else.
        fn take_messages(&mut self) -> Vec<String> {
            match self.take() {
                Poll::Ready(Taken::Messages(queue)) => {
                    queue.iter().map(|message| format!("{message:?}")).collect()
                }
                other => panic!("expected messages, got {other:?}"),
            }
        }

        fn wakes(&self) -> usize {
            self.wakes.0.load(Ordering::SeqCst)
        }
    }

    #[test]
    fn the_writer_takes_every_message_in_order_and_is_woken_for_the_next() {
        let (outbox, inbox) = outbox();
        let mut writer = Writer::new(inbox);
        assert!(writer.take().is_pending());
        outbox.send(Outbound::Pause);
        outbox.send(Outbound::Resume);
        // Woken once: the wake-up is spent until the writer looks again.
        assert_eq!(writer.wakes(), 1);
        assert_eq!(writer.take_messages(), ["Pause", "Resume"]);
        assert!(writer.take().is_pending());
        outbox.send(Outbound::Close(CloseReason::PeerClosed));
        assert_eq!(writer.wakes(), 2);
        assert_eq!(writer.take_messages(), ["Close(PeerClosed)"]);
    }

    #[test]
    fn the_writer_sees_the_end_after_the_last_message() {
        let (outbox, inbox) = outbox();
        let mut writer = Writer::new(inbox);
        assert!(writer.take().is_pending());
        outbox.send(Outbound::Pause);
        assert_eq!(writer.take_messages(), ["Pause"]);
        assert!(writer.take().is_pending());
        drop(outbox);
        assert_eq!(writer.wakes(), 2);
        assert!(matches!(writer.take(), Poll::Ready(Taken::Ended)));
    }

    #[test]
    fn messages_sent_before_the_sender_went_come_before_the_end() {
        let (outbox, inbox) = outbox();
        let mut writer = Writer::new(inbox);
        outbox.send(Outbound::Line(crate::protocol::render_welcome("alice")));
        outbox.send(Outbound::Close(CloseReason::PeerClosed));
        drop(outbox);
        assert_eq!(
            writer.take_messages(),
            ["Line(\"welcome alice\\n\")", "Close(PeerClosed)"]
        );
        assert!(matches!(writer.take(), Poll::Ready(Taken::Ended)));
    }

    #[test]
    fn sends_to_a_writer_that_is_gone_are_dropped() {
        let (outbox, inbox) = outbox();
        outbox.send(Outbound::Pause);
        drop(inbox);
        outbox.send(Outbound::Resume);
        assert!(outbox.0.state().queue.is_empty());
    }
}
