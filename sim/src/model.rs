//! A reference model of the broker, replayed over its witness log.
//!
//! The observer records, for each event the broker processed, the input and
//! the outputs the broker produced. The model walks that log in order,
//! keeping its own account of who is connected, who holds which name and
//! how many bytes are queued for whom, and for every event derives from
//! PROTOCOL.md alone what the outputs must be: exactly one delivery to each
//! distinct destination online at that point, the errors, the welcome, the
//! slow-consumer cut when a line would overflow `max_queue`, the shutdown
//! notices. Any difference is a broken guarantee, named as precisely as the
//! difference allows.
//!
//! The model does not call into chinwag's protocol code: names, the message
//! grammar and the shutdown notice come from the property tests' own
//! reading of PROTOCOL.md (`tests/model/grammar.rs`), so a bug in chinwag's
//! (say, destinations no longer deduplicated) is a difference, not an
//! agreement.
//!
//! Besides the verdict, the replay yields what the client-side checks need:
//! the bytes the broker wrote to each connection, the frames it processed
//! from each, how each was closed, and who sent every message.

use std::collections::{BTreeMap, BTreeSet};

use chinwag::broker::{CloseReason, ConnId, Input, Output};
use chinwag::codec::{Frame, FrameError};

use crate::checker::Guarantee;
use crate::grammar::{self, Message, Refusal};

/// A difference between the broker's outputs and the model's.
#[derive(Debug)]
pub struct Mismatch {
    pub guarantee: Guarantee,
    pub detail: String,
}

/// A message the broker processed: who sent it, as whom, to whom.
#[derive(Clone, Debug)]
pub struct MessageSeen {
    /// The message id: the first word of its text.
    pub id: String,
    pub sender: ConnId,
    pub sender_name: String,
}

/// What the replay of one incarnation's log established.
#[derive(Default)]
pub struct Replay {
    /// Bytes the broker sent each connection, in order.
    pub written: BTreeMap<ConnId, Vec<u8>>,
    /// Frames the broker processed from each connection, in order.
    pub frames: BTreeMap<ConnId, Vec<Frame>>,
    /// Why each closed connection was closed.
    pub closed: BTreeMap<ConnId, CloseReason>,
}

/// What the model expects of one output.
#[derive(Debug)]
enum Intent {
    /// Queue this line for `conn` if it is open (a slow-consumer cut if it
    /// does not fit).
    Enqueue { conn: ConnId, line: Line },
    /// Queue this line for `conn` if it is open and it fits; otherwise
    /// nothing (the shutdown notice never breaks the queue bound).
    Notify { conn: ConnId, line: String },
    /// Close `conn` if it is open.
    Close { conn: ConnId, reason: CloseReason },
    /// This exact output, unconditionally (a connection opened during
    /// shutdown is told and closed without ever being open).
    Exactly(Output),
}

#[derive(Debug)]
enum Line {
    Exact(String),
    /// Any `error: ` line: the wording of a grammar error is free.
    /// The wording is free, but its length decides a slow-consumer cut, so
    /// the model learns it per kind of refusal from the broker's replies.
    AnyError(Refusal),
}

#[derive(Debug)]
struct Conn {
    name: Option<String>,
    queued: usize,
}

/// The model's state, replayed event by event.
pub struct Model {
    max_queue: usize,
    open: BTreeMap<ConnId, Conn>,
    holders: BTreeMap<String, ConnId>,
    seen: BTreeSet<ConnId>,
    shutting_down: bool,
    /// The length of the broker's reply to each kind of malformed line.
    malformed_replies: BTreeMap<Refusal, usize>,
    replay: Replay,
}

impl Model {
    pub fn new(max_queue: usize) -> Self {
        Model {
            max_queue,
            open: BTreeMap::new(),
            holders: BTreeMap::new(),
            seen: BTreeSet::new(),
            shutting_down: false,
            malformed_replies: BTreeMap::new(),
            replay: Replay::default(),
        }
    }

    /// What the replay established so far.
    pub fn into_replay(self) -> Replay {
        self.replay
    }

    /// Replays one logged event: checks the broker's `outputs` for `input`
    /// and advances the model. Returns the message the event carried, if any.
    pub fn step(
        &mut self,
        input: &Input,
        outputs: &[Output],
    ) -> Result<Option<MessageSeen>, Mismatch> {
        let mut message = None;
        let intents = match input {
            Input::Opened { conn } => {
                if !self.seen.insert(*conn) {
                    return Err(protocol(format!("{conn} opened twice")));
                }
                if self.shutting_down {
                    vec![
                        Intent::Exactly(Output::Send {
                            conn: *conn,
                            line: grammar::SHUTTING_DOWN.into(),
                        }),
                        Intent::Exactly(Output::Close {
                            conn: *conn,
                            reason: CloseReason::ShuttingDown,
                        }),
                    ]
                } else {
                    self.open.insert(
                        *conn,
                        Conn {
                            name: None,
                            queued: 0,
                        },
                    );
                    Vec::new()
                }
            }
            Input::Line { conn, frame } => {
                self.known(*conn, input)?;
                self.replay
                    .frames
                    .entry(*conn)
                    .or_default()
                    .push(frame.clone());
                match self.open.get(conn) {
                    Some(_) => self.line(*conn, frame, &mut message),
                    None => Vec::new(),
                }
            }
            Input::Flushed { conn, bytes } => {
                self.known(*conn, input)?;
                if let Some(open) = self.open.get_mut(conn) {
                    if *bytes > open.queued {
                        return Err(Mismatch {
                            guarantee: Guarantee::MemoryBound,
                            detail: format!(
                                "{conn} flushed {bytes} bytes with only {} queued",
                                open.queued
                            ),
                        });
                    }
                    open.queued -= bytes;
                }
                Vec::new()
            }
            Input::WriteStalled { conn } => {
                self.known(*conn, input)?;
                vec![Intent::Close {
                    conn: *conn,
                    reason: CloseReason::DeadPeer,
                }]
            }
            Input::Closed { conn } => {
                self.known(*conn, input)?;
                vec![Intent::Close {
                    conn: *conn,
                    reason: CloseReason::PeerClosed,
                }]
            }
            Input::Shutdown => {
                self.shutting_down = true;
                let mut intents = Vec::new();
                for &conn in self.open.keys() {
                    let line = grammar::SHUTTING_DOWN.to_string();
                    intents.push(Intent::Notify { conn, line });
                    let reason = CloseReason::ShuttingDown;
                    intents.push(Intent::Close { conn, reason });
                }
                intents
            }
        };
        self.match_outputs(input, &intents, outputs, message.as_ref())?;
        Ok(message)
    }

    /// A fact about a connection the shell never opened is a shell bug.
    fn known(&self, conn: ConnId, input: &Input) -> Result<(), Mismatch> {
        if self.seen.contains(&conn) {
            Ok(())
        } else {
            Err(protocol(format!("{input:?} before {conn} was opened")))
        }
    }

    /// The intents for a line from open connection `conn`.
    fn line(
        &mut self,
        conn: ConnId,
        frame: &Frame,
        message: &mut Option<MessageSeen>,
    ) -> Vec<Intent> {
        let reply = |text: String| Intent::Enqueue {
            conn,
            line: Line::Exact(format!("error: {text}\n")),
        };
        let line = match frame {
            Err(FrameError::LineTooLong) => return vec![reply("line too long".into())],
            Err(FrameError::InvalidUtf8) => return vec![reply("invalid utf-8".into())],
            Ok(line) => line,
        };
        if line.trim().is_empty() {
            return Vec::new();
        }
        let Some(sender) = self.open[&conn].name.clone() else {
            let name = line.trim();
            if !grammar::is_name(name) {
                return vec![reply("invalid name".into())];
            }
            if self.holders.contains_key(name) {
                return vec![reply(format!("name taken: {name}"))];
            }
            self.holders.insert(name.to_string(), conn);
            if let Some(open) = self.open.get_mut(&conn) {
                open.name = Some(name.to_string());
            }
            let welcome = Line::Exact(format!("welcome {name}\n"));
            return vec![Intent::Enqueue {
                conn,
                line: welcome,
            }];
        };
        let Message { destinations, text } = match grammar::parse_message(line) {
            Ok(message) => message,
            Err(why) => {
                return vec![Intent::Enqueue {
                    conn,
                    line: Line::AnyError(why),
                }];
            }
        };
        *message = Some(MessageSeen {
            id: text.split_whitespace().next().unwrap_or("").to_string(),
            sender: conn,
            sender_name: sender.clone(),
        });
        let delivery = format!("from {sender}: {text}\n");
        destinations
            .into_iter()
            .map(|destination| match self.holders.get(&destination) {
                Some(&recipient) => Intent::Enqueue {
                    conn: recipient,
                    line: Line::Exact(delivery.clone()),
                },
                None => reply(format!("no such peer: {destination}")),
            })
            .collect()
    }

    /// Walks the intents against the broker's actual outputs, updating the
    /// model as each one matches.
    fn match_outputs(
        &mut self,
        input: &Input,
        intents: &[Intent],
        outputs: &[Output],
        message: Option<&MessageSeen>,
    ) -> Result<(), Mismatch> {
        let mut next = 0;
        for intent in intents {
            let actual = outputs.get(next);
            let expected = match intent {
                Intent::Exactly(output) => output.clone(),
                Intent::Close { conn, reason } => {
                    if !self.open.contains_key(conn) {
                        continue;
                    }
                    Output::Close {
                        conn: *conn,
                        reason: *reason,
                    }
                }
                Intent::Notify { conn, line } => {
                    let Some(queued) = self.open.get(conn).map(|open| open.queued) else {
                        continue;
                    };
                    if queued + line.len() > self.max_queue {
                        continue;
                    }
                    Output::Send {
                        conn: *conn,
                        line: line.as_str().into(),
                    }
                }
                Intent::Enqueue { conn, line } => {
                    let Some(queued) = self.open.get(conn).map(|open| open.queued) else {
                        continue;
                    };
                    let cut = Output::Close {
                        conn: *conn,
                        reason: CloseReason::SlowConsumer,
                    };
                    let fits = |length: usize| queued + length <= self.max_queue;
                    let (line, fits) = match (line, actual) {
                        (Line::Exact(line), _) => (line.clone(), fits(line.len())),
                        (Line::AnyError(why), Some(Output::Send { conn: to, line }))
                            if to == conn && line.starts_with("error: ") =>
                        {
                            self.malformed_replies.insert(*why, line.len());
                            (line.to_string(), fits(line.len()))
                        }
                        // Cut instead of told: right if the reply, as long
                        // as it was before, would not fit. A reply never
                        // seen yet cannot be judged.
                        (Line::AnyError(why), Some(actual)) if *actual == cut => {
                            let length = self.malformed_replies.get(why);
                            (String::new(), length.is_some_and(|&length| fits(length)))
                        }
                        (Line::AnyError(_), _) => ("error: <any>\n".to_string(), true),
                    };
                    if fits {
                        Output::Send {
                            conn: *conn,
                            line: line.into(),
                        }
                    } else {
                        cut
                    }
                }
            };
            if actual != Some(&expected) {
                let actual = actual.cloned();
                return Err(self.explain(input, Some(expected), actual, outputs, message));
            }
            self.apply(&expected);
            next += 1;
        }
        if let Some(extra) = outputs.get(next) {
            return Err(self.explain(input, None, Some(extra.clone()), outputs, message));
        }
        Ok(())
    }

    /// Advances the model by one matched output.
    fn apply(&mut self, output: &Output) {
        match output {
            Output::Send { conn, line } => {
                if let Some(open) = self.open.get_mut(conn) {
                    open.queued += line.len();
                }
                let written = self.replay.written.entry(*conn).or_default();
                written.extend_from_slice(line.as_bytes());
            }
            Output::Close { conn, reason } => {
                if let Some(closed) = self.open.remove(conn)
                    && let Some(name) = closed.name
                {
                    self.holders.remove(&name);
                }
                self.replay.closed.insert(*conn, *reason);
            }
        }
    }

    /// Names the guarantee a difference breaks, as precisely as it allows.
    fn explain(
        &self,
        input: &Input,
        expected: Option<Output>,
        actual: Option<Output>,
        outputs: &[Output],
        message: Option<&MessageSeen>,
    ) -> Mismatch {
        let detail = format!(
            "for {input:?} the broker output {outputs:?}; expected {expected:?} where it output {actual:?}"
        );
        let guarantee = match (&expected, &actual) {
            (_, Some(Output::Send { conn, .. })) if !self.open.contains_key(conn) => {
                Guarantee::NothingAfterDisconnect
            }
            (_, Some(Output::Send { line, .. }))
                if message.is_some_and(|message| {
                    line.starts_with("from ")
                        && !line.starts_with(&format!("from {}: ", message.sender_name))
                }) =>
            {
                Guarantee::NothingAfterDisconnect
            }
            (Some(Output::Close { reason, .. }), Some(Output::Send { .. }))
                if *reason == CloseReason::SlowConsumer =>
            {
                Guarantee::MemoryBound
            }
            _ if message.is_some() => Guarantee::ExactDelivery,
            _ if matches!(input, Input::Shutdown) => Guarantee::CleanShutdown,
            _ => Guarantee::Protocol,
        };
        Mismatch { guarantee, detail }
    }
}

fn protocol(detail: String) -> Mismatch {
    Mismatch {
        guarantee: Guarantee::Protocol,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(conn: u64, line: &str) -> Output {
        Output::Send {
            conn: ConnId(conn),
            line: line.into(),
        }
    }

    fn line(conn: u64, text: &str) -> Input {
        Input::Line {
            conn: ConnId(conn),
            frame: Ok(text.to_string()),
        }
    }

    fn opened(model: &mut Model, conn: u64) {
        let input = Input::Opened { conn: ConnId(conn) };
        model.step(&input, &[]).unwrap();
    }

    /// A model with connections 1, 2, ... open and logged in as `names`.
    fn logged_in(max_queue: usize, names: &[&str]) -> Model {
        let mut model = Model::new(max_queue);
        for (conn, name) in (1..).zip(names) {
            opened(&mut model, conn);
            let welcome = send(conn, &format!("welcome {name}\n"));
            model.step(&line(conn, name), &[welcome]).unwrap();
        }
        model
    }

    #[test]
    fn accepts_the_protocols_decisions() {
        let mut model = Model::new(1024);
        opened(&mut model, 1);
        opened(&mut model, 2);
        model
            .step(&line(1, "ann"), &[send(1, "welcome ann\n")])
            .unwrap();
        model
            .step(&line(2, " bob "), &[send(2, "welcome bob\n")])
            .unwrap();
        let outputs = [
            send(2, "from ann: m1.1 hi\n"),
            send(1, "error: no such peer: eve\n"),
            send(1, "from ann: m1.1 hi\n"),
        ];
        let seen = model
            .step(&line(1, "bob, eve,ann, bob: m1.1 hi"), &outputs)
            .unwrap()
            .unwrap();
        assert_eq!(
            (seen.id.as_str(), seen.sender_name.as_str()),
            ("m1.1", "ann")
        );
    }

    #[test]
    fn names_a_duplicate_delivery() {
        let mut model = logged_in(1024, &["ann"]);
        let twice = [send(1, "from ann: x\n"), send(1, "from ann: x\n")];
        let mismatch = model.step(&line(1, "ann, ann: x"), &twice).unwrap_err();
        assert_eq!(mismatch.guarantee, Guarantee::ExactDelivery);
    }

    #[test]
    fn names_a_delivery_after_disconnect() {
        let mut model = logged_in(1024, &["ann", "bob"]);
        let close = Output::Close {
            conn: ConnId(2),
            reason: CloseReason::PeerClosed,
        };
        model
            .step(&Input::Closed { conn: ConnId(2) }, &[close])
            .unwrap();
        let late = [send(2, "from ann: x\n")];
        let mismatch = model.step(&line(1, "bob: x"), &late).unwrap_err();
        assert_eq!(mismatch.guarantee, Guarantee::NothingAfterDisconnect);
    }

    #[test]
    fn judges_a_cut_for_a_malformed_line_by_the_replys_learned_length() {
        let mut model = logged_in(40, &["ann"]);
        let reply = [send(1, "error: missing colon\n")];
        model.step(&line(1, "no colon"), &reply).unwrap();
        // 12 + 21 bytes queued: another 21-byte reply would not fit.
        let cut = Output::Close {
            conn: ConnId(1),
            reason: CloseReason::SlowConsumer,
        };
        model.step(&line(1, "no colon"), &[cut]).unwrap();
    }

    #[test]
    fn expects_a_slow_consumer_cut_exactly_at_the_bound() {
        let mut model = Model::new(20);
        opened(&mut model, 1);
        model
            .step(&line(1, "ann"), &[send(1, "welcome ann\n")])
            .unwrap();
        // 12 bytes queued; "from ann: x\n" is 12 more: over 20.
        let cut = Output::Close {
            conn: ConnId(1),
            reason: CloseReason::SlowConsumer,
        };
        model.step(&line(1, "ann: x"), &[cut]).unwrap();
        let replay = model.into_replay();
        assert_eq!(replay.closed[&ConnId(1)], CloseReason::SlowConsumer);
    }
}
