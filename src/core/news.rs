//! What the broker tells a connection, apart from how it is said, and how
//! each wire dialect says it.
//!
//! The broker decides who is told what ([`News`]); each connection speaks
//! one [`Dialect`], PROTOCOL.md's line protocol or IRC, and [`render`]
//! turns news into that dialect's bytes. The broker renders each piece of
//! news at most once per dialect, however many recipients share it, and
//! counts the rendered bytes against each recipient's queue: the queue
//! bound holds whatever the dialect.
//!
//! News a dialect has no words for renders as `None` and is not sent: an
//! IRC client is not told that every room ended at shutdown (the `ERROR`
//! that closes it says so), and the line protocol gets no `QUIT`, only a
//! `left` line per room.

use alloc::format;
use alloc::string::String;

use crate::irc::{self, Reply};
use crate::protocol::{self, Departure, ErrorReply, Line};

/// The wire protocol a connection speaks, fixed when it is accepted (by
/// which listener accepted it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// PROTOCOL.md's line protocol.
    Line,
    /// IRC's client protocol (IRC.md).
    Irc,
}

impl Dialect {
    /// The longest line the codec lets through for this dialect, its
    /// terminator not counted: `--max-line` for the line protocol, and for
    /// IRC what IRC allows (510 bytes and a tags section, see `irc.rs`).
    pub fn max_line(self, config: &crate::config::Config) -> usize {
        match self {
            Dialect::Line => config.max_line,
            Dialect::Irc => irc::IRC_LINE_WITH_TAGS_BYTES_MAX,
        }
    }
}

/// One thing the broker tells a connection.
#[derive(Clone, Copy, Debug)]
pub enum News<'a> {
    /// Its login (IRC: registration) was accepted. IRC tells its client
    /// the server's limits, `rooms_max` rooms per connection among them.
    Welcome { name: &'a str, rooms_max: usize },
    /// A message from `sender`, to a room or (`room: None`) directly.
    /// `notice` marks an IRC NOTICE, which IRC clients show apart and never
    /// answer automatically.
    Delivery {
        sender: &'a str,
        room: Option<&'a str>,
        text: &'a str,
        notice: bool,
    },
    /// `name` joined `room`.
    Joined { room: &'a str, name: &'a str },
    /// `name` left `room`: parted, or (line protocol only; IRC is told once
    /// by [`News::Quit`]) disconnected or cut.
    Left {
        room: &'a str,
        name: &'a str,
        why: Departure,
    },
    /// `name` left every room it shared with the recipient (IRC only).
    Quit { name: &'a str, why: Departure },
    /// The server is shutting down with the recipient in `room` (line
    /// protocol only).
    EveryoneLeft { room: &'a str },
    /// `old` is now called `new`.
    Renamed { old: &'a str, new: &'a str },
    /// The answer to `/names` (IRC: `NAMES`): `room`'s members, in order.
    Names { room: &'a str, names: &'a [&'a str] },
    /// The answer to `/rooms`: the recipient's rooms, in order.
    Rooms { rooms: &'a [&'a str] },
    /// Something the recipient sent was refused, or it is being closed.
    Error(&'a ErrorReply),
}

/// `news` as `dialect` says it to `recipient` (its name, or `*` before it
/// has one), or `None` if that dialect does not say it.
pub fn render(news: &News<'_>, dialect: Dialect, recipient: &str) -> Option<Line> {
    match dialect {
        Dialect::Line => render_line(news),
        Dialect::Irc => render_irc(news, recipient),
    }
}

fn render_line(news: &News<'_>) -> Option<Line> {
    Some(match *news {
        News::Welcome { name, .. } => protocol::render_welcome(name),
        News::Delivery {
            sender, room, text, ..
        } => {
            let text = irc::text_for_terminals(text);
            match room {
                Some(room) => protocol::render_room_delivery(sender, room, &text),
                None => protocol::render_delivery(sender, &text),
            }
        }
        News::Joined { room, name } => protocol::render_joined(room, name),
        News::Left { room, name, why } => protocol::render_left(room, name, why),
        News::Quit { .. } => return None,
        News::EveryoneLeft { room } => protocol::render_everyone_left(room),
        News::Renamed { old, new } => protocol::render_renamed(old, new),
        News::Names { room, names } => protocol::render_names(room, names.iter().copied()),
        News::Rooms { rooms } => protocol::render_rooms(rooms.iter().copied()),
        News::Error(error) => protocol::render_error(error),
    })
}

/// News rendered at most once per dialect, for every recipient that shares
/// it. News an IRC client is told in words of its own (its nick in a
/// numeric, or as a direct message's target) is rendered for each.
pub struct Shared<'a> {
    news: News<'a>,
    line: Option<Option<Line>>,
    irc: Option<Option<Line>>,
}

impl<'a> Shared<'a> {
    pub fn new(news: News<'a>) -> Self {
        Shared {
            news,
            line: None,
            irc: None,
        }
    }

    /// The news as `dialect` says it to `recipient`, rendered only if no
    /// recipient it could be shared with has had it yet.
    pub fn render(&mut self, dialect: Dialect, recipient: &str) -> Option<Line> {
        let personal = matches!(
            self.news,
            News::Welcome { .. }
                | News::Names { .. }
                | News::Error(_)
                | News::Delivery { room: None, .. }
        );
        let cache = match dialect {
            Dialect::Line => &mut self.line,
            Dialect::Irc if personal => return render(&self.news, dialect, recipient),
            Dialect::Irc => &mut self.irc,
        };
        cache
            .get_or_insert_with(|| render(&self.news, dialect, recipient))
            .clone()
    }
}

/// The server's name, as IRC replies give it.
pub const IRC_SERVER: &str = "chinwag";

/// A user as the source of an IRC line: `nick!nick@chinwag`. Every user's
/// user and host parts are the same made-up ones: the server does not look
/// up hosts or trust what a client says its user name is.
pub fn irc_source(name: &str) -> String {
    format!("{name}!{name}@{IRC_SERVER}")
}

/// Renders one reply whose parameters the server chose.
fn irc_line(reply: &Reply<'_>) -> String {
    reply
        .render()
        .expect("names, rooms and numerics are valid IRC parameters")
}

fn render_irc(news: &News<'_>, me: &str) -> Option<Line> {
    let text = match *news {
        News::Welcome { name, rooms_max } => irc::welcome_burst(name, rooms_max),
        News::Delivery {
            sender,
            room,
            text,
            notice,
        } => {
            let command = if notice { "NOTICE" } else { "PRIVMSG" };
            let target = room.unwrap_or(me);
            irc::render_split(&irc_source(sender), command, target, text)
        }
        News::Joined { room, name } => irc_line(&Reply::new(&irc_source(name), "JOIN").param(room)),
        News::Left {
            room,
            name,
            why: Departure::Parted,
        } => irc_line(
            &Reply::new(&irc_source(name), "PART")
                .param(room)
                .trailing("parted"),
        ),
        News::Left { .. } | News::EveryoneLeft { .. } | News::Rooms { .. } => return None,
        News::Quit { name, why } => {
            irc_line(&Reply::new(&irc_source(name), "QUIT").trailing(why.as_str()))
        }
        News::Renamed { old, new } => irc_line(&Reply::new(&irc_source(old), "NICK").param(new)),
        News::Names { room, names } => irc::names_reply(me, room, names),
        News::Error(error) => irc_error(me, error),
    };
    Some(Line::from(text))
}

/// An error as IRC says it: the numeric that means it, or `ERROR` for the
/// reasons a connection is closed.
fn irc_error(me: &str, error: &ErrorReply) -> String {
    let numeric = |code: &str, subject: Option<&str>, text: &str| {
        let reply = Reply::new(IRC_SERVER, code).param(me);
        match subject {
            Some(subject) if irc::is_middle_param(subject) => {
                irc_line(&reply.param(subject).trailing(text))
            }
            Some(_) => irc_line(&reply.param("*").trailing(text)),
            None => irc_line(&reply.trailing(text)),
        }
    };
    let error_text = format!("{error}");
    match error {
        ErrorReply::NoSuchPeer(name) => numeric("401", Some(name), "No such nick/channel"),
        ErrorReply::NotInRoom(room) => numeric("442", Some(room), "You're not on that channel"),
        ErrorReply::AlreadyInRoom(room) => numeric("443", Some(room), "is already on channel"),
        ErrorReply::TooManyRooms(_) => numeric("405", None, &error_text),
        ErrorReply::RoomFull(room) => numeric("471", Some(room), "Cannot join channel (room full)"),
        ErrorReply::NoSuchRoom(room) => numeric("403", Some(room), "No such channel"),
        ErrorReply::InvalidName => numeric("432", None, "Erroneous nickname"),
        ErrorReply::NameTaken(name) => numeric("433", Some(name), "Nickname is already in use"),
        ErrorReply::Frame(crate::codec::FrameError::LineTooLong) => {
            numeric("417", None, "Input line was too long")
        }
        ErrorReply::ShuttingDown
        | ErrorReply::ServerFull
        | ErrorReply::TooManyFromAddress
        | ErrorReply::LoginTimedOut
        | ErrorReply::Quit
        | ErrorReply::PingTimeout => {
            irc_line(&Reply::new(IRC_SERVER, "ERROR").trailing(&error_text))
        }
        // The rest have no numeric of their own: a server notice says them.
        ErrorReply::Frame(_) | ErrorReply::Malformed(_) | ErrorReply::Command(_) => irc_line(
            &Reply::new(IRC_SERVER, "NOTICE")
                .param(me)
                .trailing(&error_text),
        ),
    }
}
