//! The delivery checker: every expected delivery arrives, once, in
//! per-sender order, correctly attributed.
//!
//! Each recipient keeps an [`Inbox`]. For every sender it remembers the last
//! sequence number received and how many deliveries came. A delivery is
//! accepted only if the plan addressed that message to this recipient, its
//! `from` name is its sender's, it names the room the plan sent it to (`to
//! <room>`, or nothing for a message to names), and its sequence number is
//! above the last one from the same sender. At the end each count must equal the plan's.
//! Together that proves the recipient got exactly the planned set, each
//! once and in send order: nothing foreign, no repeats, no reordering, and
//! (with equal counts) nothing missing.

use std::fmt;

use super::text::{Delivery, Stamp};

/// What the plan says about who sent what to whom.
pub trait Expectation {
    /// How many clients send (they are clients `0..senders`).
    fn senders(&self) -> usize;
    /// The login name of a client.
    fn name(&self, client: usize) -> &str;
    /// Whether message `seq` of `sender` was addressed to `recipient`.
    fn addresses(&self, sender: usize, seq: u32, recipient: usize) -> bool;
    /// The room message `seq` of `sender` was sent to, if it went to a
    /// room rather than to names.
    fn room(&self, _sender: usize, _seq: u32) -> Option<&str> {
        None
    }
}

/// One way a run went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Fewer deliveries from `sender` reached `recipient` than were sent.
    Missing {
        recipient: usize,
        sender: usize,
        received: u32,
        expected: u32,
    },
    /// The same message arrived twice in a row.
    Duplicate {
        recipient: usize,
        sender: usize,
        seq: u32,
    },
    /// A message arrived after a later one from the same sender (or is a
    /// repeat of an earlier one).
    OutOfOrder {
        recipient: usize,
        sender: usize,
        seq: u32,
        after: u32,
    },
    /// A message arrived at a recipient it was not addressed to.
    Misdelivered {
        recipient: usize,
        sender: usize,
        seq: u32,
    },
    /// A message arrived `from` a name other than its sender's.
    Misattributed {
        recipient: usize,
        sender: usize,
        from: String,
    },
    /// A message arrived `to` another room than the one it was sent to, or
    /// with a room when it was sent to names, or without one when it was
    /// sent to a room.
    WrongRoom {
        recipient: usize,
        sender: usize,
        seq: u32,
        to: Option<String>,
    },
    /// A line that is not a delivery this run sent.
    Unexpected { recipient: usize, line: String },
    /// Anything else that makes the run fail (a refused login, a timeout).
    Other(String),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Missing {
                recipient,
                sender,
                received,
                expected,
            } => write!(
                f,
                "client {recipient} got {received} of {expected} messages from client {sender}"
            ),
            Fault::Duplicate {
                recipient,
                sender,
                seq,
            } => write!(
                f,
                "client {recipient} got message {seq} of client {sender} twice"
            ),
            Fault::OutOfOrder {
                recipient,
                sender,
                seq,
                after,
            } => write!(
                f,
                "client {recipient} got message {seq} of client {sender} after message {after}"
            ),
            Fault::Misdelivered {
                recipient,
                sender,
                seq,
            } => write!(
                f,
                "client {recipient} got message {seq} of client {sender}, not addressed to it"
            ),
            Fault::Misattributed {
                recipient,
                sender,
                from,
            } => write!(
                f,
                "client {recipient} got a message of client {sender} attributed to {from:?}"
            ),
            Fault::WrongRoom {
                recipient,
                sender,
                seq,
                to,
            } => match to {
                Some(room) => write!(
                    f,
                    "client {recipient} got message {seq} of client {sender} as sent to {room}"
                ),
                None => write!(
                    f,
                    "client {recipient} got message {seq} of client {sender} without its room"
                ),
            },
            Fault::Unexpected { recipient, line } => {
                write!(f, "client {recipient} got an unexpected line {line:?}")
            }
            Fault::Other(what) => f.write_str(what),
        }
    }
}

/// Faults found so far: all are counted, the first few are kept to show.
#[derive(Debug, Default)]
pub struct Faults {
    shown: Vec<Fault>,
    total: usize,
}

impl Faults {
    /// How many faults are kept for the report; the rest are only counted.
    const SHOWN: usize = 10;

    pub fn push(&mut self, fault: Fault) {
        if self.shown.len() < Self::SHOWN {
            self.shown.push(fault);
        }
        self.total += 1;
    }

    pub fn extend(&mut self, other: Faults) {
        let unshown = other.total - other.shown.len();
        for fault in other.shown {
            self.push(fault);
        }
        self.total += unshown;
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    pub fn total(&self) -> usize {
        self.total
    }

    pub fn shown(&self) -> &[Fault] {
        &self.shown
    }
}

/// What one recipient has received, per sender.
#[derive(Debug)]
pub struct Inbox {
    recipient: usize,
    /// The last sequence number accepted from each sender.
    last: Vec<Option<u32>>,
    /// How many deliveries were accepted from each sender.
    received: Vec<u32>,
    faults: Faults,
}

impl Inbox {
    pub fn new(recipient: usize, senders: usize) -> Self {
        Inbox {
            recipient,
            last: vec![None; senders],
            received: vec![0; senders],
            faults: Faults::default(),
        }
    }

    /// Checks one stamped delivery; returns whether it was accepted as a
    /// new, expected delivery.
    pub fn receive(&mut self, plan: &impl Expectation, delivery: Delivery) -> bool {
        let recipient = self.recipient;
        let Delivery { from, to, stamp } = delivery;
        let Stamp { sender, seq, .. } = stamp;
        if sender >= plan.senders() {
            let line = match to {
                Some(room) => format!("from {from} to {room}: i{sender} q{seq}"),
                None => format!("from {from}: i{sender} q{seq}"),
            };
            self.faults.push(Fault::Unexpected { recipient, line });
            return false;
        }
        if plan.name(sender) != from {
            let from = from.to_string();
            self.faults.push(Fault::Misattributed {
                recipient,
                sender,
                from,
            });
            return false;
        }
        if !plan.addresses(sender, seq, recipient) {
            self.faults.push(Fault::Misdelivered {
                recipient,
                sender,
                seq,
            });
            return false;
        }
        if plan.room(sender, seq) != to {
            let to = to.map(str::to_string);
            self.faults.push(Fault::WrongRoom {
                recipient,
                sender,
                seq,
                to,
            });
            return false;
        }
        match self.last[sender] {
            Some(last) if seq == last => self.faults.push(Fault::Duplicate {
                recipient,
                sender,
                seq,
            }),
            Some(last) if seq < last => self.faults.push(Fault::OutOfOrder {
                recipient,
                sender,
                seq,
                after: last,
            }),
            _ => {
                self.last[sender] = Some(seq);
                self.received[sender] += 1;
                return true;
            }
        }
        false
    }

    /// Records a line that is not a stamped delivery.
    pub fn unexpected(&mut self, line: &[u8]) {
        let line = String::from_utf8_lossy(line).into_owned();
        let recipient = self.recipient;
        self.faults.push(Fault::Unexpected { recipient, line });
    }

    /// Ends the check: every sender's count must equal `expected(sender)`.
    pub fn finish(mut self, expected: impl Fn(usize) -> u32) -> Faults {
        for (sender, &received) in self.received.iter().enumerate() {
            let expected = expected(sender);
            if received != expected {
                self.faults.push(Fault::Missing {
                    recipient: self.recipient,
                    sender,
                    received,
                    expected,
                });
            }
        }
        self.faults
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two senders `a` and `b`; every message goes to recipient 0 except
    /// that `b`'s odd messages go to recipient 1.
    struct TwoSenders;

    impl Expectation for TwoSenders {
        fn senders(&self) -> usize {
            2
        }
        fn name(&self, client: usize) -> &str {
            ["a", "b", "c"][client]
        }
        fn addresses(&self, sender: usize, seq: u32, recipient: usize) -> bool {
            let to = if sender == 1 && seq % 2 == 1 { 1 } else { 0 };
            recipient == to
        }
    }

    fn stamp(sender: usize, seq: u32) -> Stamp {
        Stamp {
            sender,
            seq,
            sent_micros: 0,
        }
    }

    /// Recipient 0 expects a:0..3 and b:0,2.
    fn check(deliveries: &[(&str, usize, u32)]) -> Vec<Fault> {
        let mut inbox = Inbox::new(0, 2);
        for &(from, sender, seq) in deliveries {
            let stamp = stamp(sender, seq);
            let to = None;
            inbox.receive(&TwoSenders, Delivery { from, to, stamp });
        }
        let faults = inbox.finish(|sender| [3, 2][sender]);
        assert_eq!(faults.total(), faults.shown().len());
        faults.shown().to_vec()
    }

    #[test]
    fn the_planned_deliveries_in_order_pass() {
        let interleaved = [
            ("a", 0, 0),
            ("b", 1, 0),
            ("a", 0, 1),
            ("b", 1, 2),
            ("a", 0, 2),
        ];
        assert_eq!(check(&interleaved), []);
    }

    #[test]
    fn a_missing_delivery_is_detected() {
        let faults = check(&[("a", 0, 0), ("a", 0, 2), ("b", 1, 0), ("b", 1, 2)]);
        assert_eq!(
            faults,
            [Fault::Missing {
                recipient: 0,
                sender: 0,
                received: 2,
                expected: 3
            }]
        );
    }

    #[test]
    fn a_duplicated_delivery_is_detected() {
        let faults = check(&[
            ("a", 0, 0),
            ("a", 0, 1),
            ("a", 0, 1),
            ("a", 0, 2),
            ("b", 1, 0),
            ("b", 1, 2),
        ]);
        assert_eq!(
            faults,
            [Fault::Duplicate {
                recipient: 0,
                sender: 0,
                seq: 1
            }]
        );
    }

    #[test]
    fn an_out_of_order_delivery_is_detected() {
        let faults = check(&[
            ("a", 0, 0),
            ("a", 0, 2),
            ("a", 0, 1),
            ("b", 1, 0),
            ("b", 1, 2),
        ]);
        assert!(faults.contains(&Fault::OutOfOrder {
            recipient: 0,
            sender: 0,
            seq: 1,
            after: 2
        }));
    }

    #[test]
    fn misattributed_and_misdelivered_messages_are_detected() {
        let faults = check(&[
            ("a", 0, 0),
            ("a", 0, 1),
            ("b", 0, 2),
            ("a", 0, 2),
            ("b", 1, 0),
            ("b", 1, 1),
            ("b", 1, 2),
        ]);
        assert_eq!(
            faults,
            [
                Fault::Misattributed {
                    recipient: 0,
                    sender: 0,
                    from: "b".into()
                },
                Fault::Misdelivered {
                    recipient: 0,
                    sender: 1,
                    seq: 1
                },
            ]
        );
    }

    #[test]
    fn faults_beyond_the_shown_few_are_still_counted() {
        let mut faults = Faults::default();
        for _ in 0..25 {
            faults.push(Fault::Other("x".into()));
        }
        let mut all = Faults::default();
        all.extend(faults);
        assert_eq!(all.total(), 25);
        assert_eq!(all.shown().len(), Faults::SHOWN);
    }
}
