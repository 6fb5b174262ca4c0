//! The broker's IRC front end: what each IRC command means, in terms of the
//! names, rooms and messages the line protocol has too.
//!
//! An IRC connection is a connection like any other: it holds a name (its
//! nick) in the one namespace, joins the same rooms (IRC channels are
//! rooms: `#` and a valid name), and its messages go through the same
//! [`Broker::deliver`], so a line-protocol user and an IRC user talk, in
//! one order. What differs is the grammar ([`crate::irc`]), registration
//! (NICK and USER, with CAP negotiation, instead of a login line), the
//! replies (numerics, rendered by [`crate::news`]), and keepalive: the
//! server pings an IRC client that has been quiet for [`IRC_PING_IDLE`],
//! and closes it if it is still quiet as long again. IRC.md lists the
//! commands and numerics, and what is deliberately left out.

use alloc::format;
use alloc::string::{String, ToString};

use super::*;
use crate::irc::{self, Command, Message, ParseError, Reply};
use crate::news::IRC_SERVER;

/// How long a registered IRC client may be quiet before the server sends
/// it a PING, and then how long it has to say anything before it is closed.
pub const IRC_PING_IDLE: Duration = Duration::from_secs(120);

/// The most rooms one LIST answers with, in room order: one line must not
/// make a reply of every room on the server.
pub const IRC_LIST_ROOMS_MAX: usize = 256;

/// One IRC connection's registration and keepalive.
#[derive(Debug, Default)]
pub(super) struct Session {
    /// Before registration: the nick asked for with NICK (valid and free
    /// when asked), whether USER has come, and whether CAP negotiation is
    /// holding registration back.
    nick: Option<String>,
    user: bool,
    negotiating: bool,
    /// After: when the client was last heard from, whether a PING waits
    /// for an answer, and when the keepalive is next checked (its key in
    /// `Broker::irc_pings`).
    last_heard: Time,
    pinged: bool,
    pub(super) ping_check: Option<Time>,
}

impl Broker {
    /// Handles one line from an IRC connection.
    pub(super) fn irc_line(&mut self, conn: ConnId, frame: &Frame, out: &mut Vec<Output>) {
        let now = self.now;
        let session = self.session(conn);
        session.last_heard = now;
        session.pinged = false;
        let line = match frame {
            Ok(line) => line,
            Err(error) => return self.reply_error(conn, &ErrorReply::Frame(*error), out),
        };
        let message = match irc::parse(line) {
            Ok(message) => message,
            // Modern IRC: an empty line is ignored silently.
            Err(ParseError::Empty) => return,
            Err(ParseError::TooLong | ParseError::TagsTooLong) => {
                let error = ErrorReply::Frame(crate::codec::FrameError::LineTooLong);
                return self.reply_error(conn, &error, out);
            }
            Err(why) => return self.irc_notice(conn, &format!("not an IRC message: {why}"), out),
        };
        let registered = self.connections[&conn].name.is_some();
        match message.command() {
            Command::Cap => self.irc_cap(conn, &message, out),
            Command::Nick => self.irc_nick(conn, &message, out),
            Command::User => self.irc_user(conn, &message, out),
            Command::Ping => {
                let token = message.params.first().copied().unwrap_or("");
                let pong = Reply::new(IRC_SERVER, "PONG")
                    .param(IRC_SERVER)
                    .trailing(token);
                self.irc_send(conn, &pong, out);
            }
            // Any line proves the client is there; a PONG says no more.
            Command::Pong => {}
            Command::Quit => {
                let notice = &mut Shared::new(News::Error(&ErrorReply::Quit));
                self.tell_and_close(conn, notice, CloseReason::Quit, out);
            }
            Command::Other(word) if word.eq_ignore_ascii_case("PASS") => {}
            _ if !registered => self.irc_numeric(conn, "451", &[], "You have not registered", out),
            Command::Privmsg => self.irc_message(conn, &message, false, out),
            Command::Notice => self.irc_message(conn, &message, true, out),
            Command::Join => self.irc_join(conn, &message, out),
            Command::Part => self.irc_part(conn, &message, out),
            Command::Names => self.irc_names(conn, &message, out),
            Command::Topic => self.irc_topic(conn, &message, out),
            Command::Mode => self.irc_mode(conn, &message, out),
            Command::Who => self.irc_who(conn, &message, out),
            Command::Away => {
                let (code, text) = match message.params.first() {
                    Some(away) if !away.is_empty() => ("306", "You have been marked as being away"),
                    _ => ("305", "You are no longer marked as being away"),
                };
                self.irc_numeric(conn, code, &[], text, out);
            }
            Command::Other(word) if word.eq_ignore_ascii_case("WHOIS") => {
                self.irc_whois(conn, &message, out)
            }
            Command::Other(word) if word.eq_ignore_ascii_case("LIST") => self.irc_list(conn, out),
            Command::Other(word) => {
                let word = word.to_string();
                self.irc_numeric(conn, "421", &[&word], "Unknown command", out);
            }
        }
    }

    fn session(&mut self, conn: ConnId) -> &mut Session {
        let connection = self.connections.get_mut(&conn).expect("open");
        connection
            .irc
            .as_mut()
            .expect("an IRC connection has a session")
    }

    /// Sends `conn` a reply to its own line (it pays for it).
    fn irc_send(&mut self, conn: ConnId, reply: &Reply<'_>, out: &mut Vec<Output>) {
        let line = reply
            .render()
            .expect("the server's own replies are valid IRC");
        self.enqueue(conn, Line::from(line), Some(conn), out);
    }

    /// Sends `conn` the numeric `code` with `params` (each the server's or
    /// checked to be a valid middle parameter) and `text`.
    fn irc_numeric(
        &mut self,
        conn: ConnId,
        code: &str,
        params: &[&str],
        text: &str,
        out: &mut Vec<Output>,
    ) {
        let me = self.connections[&conn].name.clone();
        let mut reply = Reply::new(IRC_SERVER, code).param(me.as_deref().unwrap_or("*"));
        for param in params {
            // A parameter the client wrote may not fit as one: `*` then.
            let param = if irc::is_middle_param(param) {
                param
            } else {
                "*"
            };
            reply = reply.param(param);
        }
        self.irc_send(conn, &reply.trailing(text), out);
    }

    /// A server NOTICE to `conn`, for what IRC has no numeric for.
    fn irc_notice(&mut self, conn: ConnId, text: &str, out: &mut Vec<Output>) {
        let me = self.connections[&conn].name.clone();
        let notice = Reply::new(IRC_SERVER, "NOTICE")
            .param(me.as_deref().unwrap_or("*"))
            .trailing(text);
        self.irc_send(conn, &notice, out);
    }

    /// CAP: chinwag offers no capabilities, so LS lists none, REQ is
    /// refused, and END lets registration finish. A client that starts
    /// with CAP LS is not registered until it says CAP END.
    fn irc_cap(&mut self, conn: ConnId, message: &Message<'_>, out: &mut Vec<Output>) {
        let me = self.connections[&conn].name.clone();
        let me = me.as_deref().unwrap_or("*");
        let subcommand = message.params.first().copied().unwrap_or("");
        let registered = self.connections[&conn].name.is_some();
        let reply = |answer: &'static str, text: &'static str| {
            Reply::new(IRC_SERVER, "CAP")
                .param(me)
                .param(answer)
                .trailing(text)
        };
        if subcommand.eq_ignore_ascii_case("LS") {
            if !registered {
                self.session(conn).negotiating = true;
            }
            self.irc_send(conn, &reply("LS", ""), out);
        } else if subcommand.eq_ignore_ascii_case("LIST") {
            self.irc_send(conn, &reply("LIST", ""), out);
        } else if subcommand.eq_ignore_ascii_case("REQ") {
            let asked = message.params.get(1).copied().unwrap_or("");
            let nak = Reply::new(IRC_SERVER, "CAP")
                .param(me)
                .param("NAK")
                .trailing(asked);
            self.irc_send(conn, &nak, out);
        } else if subcommand.eq_ignore_ascii_case("END") {
            self.session(conn).negotiating = false;
            self.irc_try_register(conn, out);
        } else {
            let subcommand = subcommand.to_string();
            self.irc_numeric(conn, "410", &[&subcommand], "Invalid CAP command", out);
        }
    }

    /// NICK: before registration, the nick to register with (checked at
    /// once, as IRC clients expect); after, a rename, as `/nick`.
    fn irc_nick(&mut self, conn: ConnId, message: &Message<'_>, out: &mut Vec<Output>) {
        let Some(&wanted) = message.params.first().filter(|nick| !nick.is_empty()) else {
            return self.irc_numeric(conn, "431", &[], "No nickname given", out);
        };
        // 432 names the nick it refuses, as IRC clients expect (they show
        // it, and WeeChat tries its next nick), which the line protocol's
        // `error: invalid name` does not.
        let Some(nick) = protocol::parse_login(wanted) else {
            return self.irc_numeric(conn, "432", &[wanted], "Erroneous nickname", out);
        };
        if self.connections[&conn].name.is_some() {
            return self.rename(conn, wanted, out);
        }
        if self.skeletons.contains_key(&protocol::skeleton(&nick)) {
            let error = ErrorReply::NameTaken(nick.into_owned());
            return self.reply_error(conn, &error, out);
        }
        self.session(conn).nick = Some(nick.into_owned());
        self.irc_try_register(conn, out);
    }

    /// USER: its parameters are not used (every user's user and host are
    /// made up, see `news.rs`), only that it came.
    fn irc_user(&mut self, conn: ConnId, message: &Message<'_>, out: &mut Vec<Output>) {
        if self.connections[&conn].name.is_some() {
            return self.irc_numeric(conn, "462", &[], "You may not reregister", out);
        }
        if message.params.len() < 4 {
            return self.irc_numeric(conn, "461", &["USER"], "Not enough parameters", out);
        }
        self.session(conn).user = true;
        self.irc_try_register(conn, out);
    }

    /// Registers `conn` once it has given NICK and USER and ended any CAP
    /// negotiation: it logs in with its nick, by the line protocol's rules
    /// (the nick may have been taken since NICK; then it must send another),
    /// and its keepalive starts.
    fn irc_try_register(&mut self, conn: ConnId, out: &mut Vec<Output>) {
        let session = self.session(conn);
        if !session.user || session.negotiating || session.nick.is_none() {
            return;
        }
        let nick = session.nick.take().expect("checked above");
        if self.login(conn, &nick, out) {
            let due = self.now + IRC_PING_IDLE;
            self.session(conn).ping_check = Some(due);
            self.irc_pings.insert((due, conn));
        }
    }

    /// PRIVMSG and NOTICE: a message to nicks and channels, as a line of
    /// the line protocol would send it. IRC's formatting codes are allowed
    /// (line-protocol readers get them stripped); other control characters
    /// are refused, as in the line protocol. A NOTICE never gets an error
    /// back, as IRC requires.
    fn irc_message(
        &mut self,
        conn: ConnId,
        message: &Message<'_>,
        notice: bool,
        out: &mut Vec<Output>,
    ) {
        let command = if notice { "NOTICE" } else { "PRIVMSG" };
        let (targets, text) = match message.params[..] {
            [] => {
                let text = format!("No recipient given ({command})");
                return self.irc_numeric_unless(notice, conn, "411", &[], &text, out);
            }
            [_] | [_, ""] => {
                return self.irc_numeric_unless(notice, conn, "412", &[], "No text to send", out);
            }
            [targets, text, ..] => (targets, text),
        };
        let forbidden = |c: char| protocol::is_forbidden_in_text(c) && !irc::is_formatting(c);
        if text.chars().any(forbidden) {
            if !notice {
                let error = ErrorReply::Malformed(protocol::MessageError::ControlCharacter);
                self.reply_error(conn, &error, out);
            }
            return;
        }
        let mut destinations = Vec::new();
        for target in targets.split(',').filter(|target| !target.is_empty()) {
            match protocol::parse_destination(target) {
                Some(destination) => destinations.push(destination),
                None if notice => {}
                None if protocol::is_room(target) => {
                    self.irc_numeric(conn, "403", &[target], "No such channel", out)
                }
                None => self.irc_numeric(conn, "401", &[target], "No such nick/channel", out),
            }
        }
        protocol::dedupe_in_order(&mut destinations);
        let sender = self.connections[&conn].name.clone().expect("registered");
        let message = protocol::Message { destinations, text };
        self.deliver(conn, &sender, &message, notice, out);
    }

    fn irc_numeric_unless(
        &mut self,
        notice: bool,
        conn: ConnId,
        code: &str,
        params: &[&str],
        text: &str,
        out: &mut Vec<Output>,
    ) {
        if !notice {
            self.irc_numeric(conn, code, params, text, out);
        }
    }

    /// The rooms a comma-separated channel list names, each a valid room;
    /// each invalid one gets 403.
    fn irc_rooms<'a>(
        &mut self,
        conn: ConnId,
        list: &'a str,
        out: &mut Vec<Output>,
    ) -> Vec<alloc::borrow::Cow<'a, str>> {
        let mut rooms = Vec::new();
        for channel in list.split(',').filter(|channel| !channel.is_empty()) {
            match protocol::parse_room(channel) {
                Some(room) => rooms.push(room),
                None => self.irc_numeric(conn, "403", &[channel], "No such channel", out),
            }
        }
        rooms
    }

    /// JOIN: each channel is joined as with `/join` (a channel already
    /// joined is skipped, as IRC servers do), and the joiner then gets its
    /// names list. `JOIN 0` leaves every channel.
    fn irc_join(&mut self, conn: ConnId, message: &Message<'_>, out: &mut Vec<Output>) {
        let Some(&list) = message.params.first() else {
            return self.irc_numeric(conn, "461", &["JOIN"], "Not enough parameters", out);
        };
        if list == "0" {
            let rooms = self.connections[&conn].rooms.clone();
            for room in rooms {
                self.part(conn, &room, out);
            }
            return;
        }
        for room in self.irc_rooms(conn, list, out) {
            if self.connections[&conn].rooms.contains(&*room) {
                continue;
            }
            // 405 names the channel refused, as IRC clients expect (irssi
            // shows it as the channel), which the line protocol's `error:
            // too many rooms` does not.
            if self.connections[&conn].rooms.len() >= self.max_rooms_per_connection {
                let text = format!(
                    "You have joined too many channels (at most {})",
                    self.max_rooms_per_connection
                );
                self.irc_numeric(conn, "405", &[&room], &text, out);
                continue;
            }
            self.join(conn, &room, out);
            if self.connections[&conn].rooms.contains(&*room) {
                self.names(conn, &room, out);
            }
        }
    }

    /// PART: each channel is left as with `/part`; the reason is not kept.
    fn irc_part(&mut self, conn: ConnId, message: &Message<'_>, out: &mut Vec<Output>) {
        let Some(&list) = message.params.first() else {
            return self.irc_numeric(conn, "461", &["PART"], "Not enough parameters", out);
        };
        for room in self.irc_rooms(conn, list, out) {
            if self.rooms.contains_key(&*room) {
                self.part(conn, &room, out);
            } else {
                self.irc_numeric(conn, "403", &[&room], "No such channel", out);
            }
        }
    }

    /// NAMES: 353 and 366 for each channel that exists; just 366 for one
    /// that does not, or when no channel is named.
    fn irc_names(&mut self, conn: ConnId, message: &Message<'_>, out: &mut Vec<Output>) {
        let list = message.params.first().copied().unwrap_or("*");
        for channel in list.split(',') {
            if self.rooms.contains_key(channel) {
                self.names(conn, channel, out);
            } else {
                self.irc_numeric(conn, "366", &[channel], "End of /NAMES list", out);
            }
        }
    }

    /// TOPIC: rooms have no topic, and nobody may set one.
    fn irc_topic(&mut self, conn: ConnId, message: &Message<'_>, out: &mut Vec<Output>) {
        let Some(&channel) = message.params.first() else {
            return self.irc_numeric(conn, "461", &["TOPIC"], "Not enough parameters", out);
        };
        if !self.rooms.contains_key(channel) {
            return self.irc_numeric(conn, "403", &[channel], "No such channel", out);
        }
        if message.params.len() > 1 {
            let text = "You're not channel operator";
            return self.irc_numeric(conn, "482", &[channel], text, out);
        }
        self.irc_numeric(conn, "331", &[channel], "No topic is set", out);
    }

    /// MODE: rooms and users have no modes. Asking gets the empty mode (and
    /// an empty ban list, which clients ask for on join); changing gets a
    /// refusal, but for a user's own `i` and `w`, which mean nothing here.
    fn irc_mode(&mut self, conn: ConnId, message: &Message<'_>, out: &mut Vec<Output>) {
        let Some(&target) = message.params.first() else {
            return self.irc_numeric(conn, "461", &["MODE"], "Not enough parameters", out);
        };
        let change = message.params.get(1).copied();
        if protocol::is_room(target) {
            if !self.rooms.contains_key(target) {
                return self.irc_numeric(conn, "403", &[target], "No such channel", out);
            }
            match change {
                None => self.irc_send_mode(conn, target, out),
                // The ban list is asked for with `b` or `+b` alone; `+b`
                // with a mask would set a ban, which is a change.
                Some("b" | "+b") if message.params.len() == 2 => {
                    let text = "End of channel ban list";
                    self.irc_numeric(conn, "368", &[target], text, out);
                }
                Some(_) => {
                    let text = "You're not channel operator";
                    self.irc_numeric(conn, "482", &[target], text, out);
                }
            }
        } else if self.connections[&conn].name.as_deref() == Some(target) {
            match change {
                None => self.irc_numeric(conn, "221", &[], "+", out),
                // Invisible and wallops, which clients set on connect
                // (irssi sends `MODE nick +i`): harmless to accept, since
                // nobody is listed and no one sends wallops, so accepted in
                // silence rather than a refusal shown at every connect.
                Some(flags) if flags.chars().all(|c| matches!(c, '+' | '-' | 'i' | 'w')) => {}
                Some(_) => self.irc_numeric(conn, "501", &[], "Unknown MODE flag", out),
            }
        } else {
            let text = "Cant change mode for other users";
            self.irc_numeric(conn, "502", &[], text, out);
        }
    }

    /// 324: a room's modes, which are none.
    fn irc_send_mode(&mut self, conn: ConnId, room: &str, out: &mut Vec<Output>) {
        let me = self.connections[&conn].name.clone().expect("registered");
        let reply = Reply::new(IRC_SERVER, "324")
            .param(&me)
            .param(room)
            .param("+");
        self.irc_send(conn, &reply, out);
    }

    /// WHO: a 352 for each member of a channel, or for a nick, then 315.
    fn irc_who(&mut self, conn: ConnId, message: &Message<'_>, out: &mut Vec<Output>) {
        let mask = message.params.first().copied().unwrap_or("*");
        let (channel, members): (&str, Vec<ConnId>) = match self.rooms.get(mask) {
            Some(members) => (mask, members.iter().copied().collect()),
            None => ("*", self.holders.get(mask).copied().into_iter().collect()),
        };
        let me = self.connections[&conn].name.clone().expect("registered");
        for member in members {
            let name = self.connections[&member].name.clone().expect("logged in");
            let text = format!("0 {name}");
            let reply = Reply::new(IRC_SERVER, "352")
                .param(&me)
                .param(channel)
                .param(&name)
                .param(IRC_SERVER)
                .param(IRC_SERVER)
                .param(&name)
                .param("H")
                .trailing(&text);
            self.irc_send(conn, &reply, out);
        }
        self.irc_numeric(conn, "315", &[mask], "End of WHO list", out);
    }

    /// WHOIS: 311 for a nick that is held, 401 otherwise, then 318.
    fn irc_whois(&mut self, conn: ConnId, message: &Message<'_>, out: &mut Vec<Output>) {
        let Some(&nick) = message.params.last() else {
            return self.irc_numeric(conn, "431", &[], "No nickname given", out);
        };
        if self.holders.contains_key(nick) {
            let me = self.connections[&conn].name.clone().expect("registered");
            let reply = Reply::new(IRC_SERVER, "311")
                .param(&me)
                .param(nick)
                .param(nick)
                .param(IRC_SERVER)
                .param("*")
                .trailing(nick);
            self.irc_send(conn, &reply, out);
        } else {
            self.irc_numeric(conn, "401", &[nick], "No such nick/channel", out);
        }
        self.irc_numeric(conn, "318", &[nick], "End of /WHOIS list", out);
    }

    /// LIST: the first [`IRC_LIST_ROOMS_MAX`] rooms, in room order, with
    /// their member counts.
    fn irc_list(&mut self, conn: ConnId, out: &mut Vec<Output>) {
        self.irc_numeric(conn, "321", &["Channel"], "Users Name", out);
        let rooms: Vec<(Arc<str>, usize)> = self
            .rooms
            .iter()
            .take(IRC_LIST_ROOMS_MAX)
            .map(|(room, members)| (room.clone(), members.len()))
            .collect();
        for (room, members) in rooms {
            let count = members.to_string();
            self.irc_numeric(conn, "322", &[&room, &count], "", out);
        }
        self.irc_numeric(conn, "323", &[], "End of /LIST", out);
    }

    /// The keepalive, on every timeout: each registered IRC client quiet
    /// for [`IRC_PING_IDLE`] is sent a PING, and one that has said nothing
    /// for as long again since is closed, in connection id order.
    pub(super) fn keep_irc_alive(&mut self, out: &mut Vec<Output>) {
        let mut due = take_due(&mut self.irc_pings, self.now);
        due.sort_unstable();
        for conn in due {
            let now = self.now;
            let session = self.session(conn);
            session.ping_check = None;
            let quiet_until = session.last_heard + IRC_PING_IDLE;
            let next = if quiet_until > now {
                Some(quiet_until)
            } else if !session.pinged {
                session.pinged = true;
                let ping = Reply::new(IRC_SERVER, "PING").trailing(IRC_SERVER);
                let ping = ping.render().expect("a valid PING");
                // Nobody's line caused it: it is queued like a notice.
                self.enqueue(conn, Line::from(ping), None, out);
                Some(now + IRC_PING_IDLE)
            } else {
                None
            };
            match next {
                Some(at) => {
                    self.session(conn).ping_check = Some(at);
                    self.irc_pings.insert((at, conn));
                }
                None => {
                    let notice = &mut Shared::new(News::Error(&ErrorReply::PingTimeout));
                    self.tell_and_close(conn, notice, CloseReason::PingTimeout, out);
                }
            }
        }
    }
}
