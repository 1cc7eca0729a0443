//! The CLI's grammar, one tree for every transport: `?` help (the next words
//! with a line each), TAB completion (words and configuration paths), and a
//! small line editor with history for a raw serial port.
//!
//! The grammar is a list of commands written as their syntax (`show cdr
//! [N]`, `set PATH VALUE`): lowercase words are typed as they are, uppercase
//! ones are arguments, `[X]` is optional. `console.rs` runs the commands;
//! this module only knows what may come next. It is pure (no I/O), so the
//! TCP console, the serial console and the tests all use the same answers.

use std::collections::VecDeque;

/// Where a session is: commands differ (`set` only in configuration mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Exec,
    Config,
}

struct Command {
    syntax: &'static str,
    help: &'static str,
    /// In configuration mode only (`set`, `commit`...); `None`: both modes.
    config: Option<bool>,
}

const fn both(syntax: &'static str, help: &'static str) -> Command {
    Command { syntax, help, config: None }
}
const fn exec(syntax: &'static str, help: &'static str) -> Command {
    Command { syntax, help, config: Some(false) }
}
const fn conf(syntax: &'static str, help: &'static str) -> Command {
    Command { syntax, help, config: Some(true) }
}

const COMMANDS: &[Command] = &[
    both("show status", "everything at a glance"),
    both("show ports", "the FXS ports: number, hook, state, call (a table)"),
    both("show calls", "calls in progress: both legs, rule, destinations tried"),
    both("show sip", "trunks: health, limits, registrations"),
    both("show registrations", "the port accounts' registrations"),
    both("show rt", "the real-time audio loop's figures"),
    both("show log", "the end of the log file ([log] file)"),
    both("show cdr [N]", "the last N calls' records (default 20)"),
    both("show routes", "the routing table"),
    both("show isdn", "ISDN spans: layers 1 and 2, TEI, counters, B-channels"),
    both("show running-config", "the running configuration (secrets masked)"),
    both("show config", "the running configuration (secrets masked)"),
    both("show candidate", "the configuration being edited"),
    both("show versions", "the kept earlier configuration files (rollback N)"),
    exec("configure", "enter configuration mode (set, unset, commit, abort)"),
    exec("config set PATH VALUE", "set PATH in the candidate (e.g. sip.register_expires 120)"),
    exec("config unset PATH", "back to the default (or remove a list element)"),
    exec("config diff", "what the candidate changes"),
    exec("config commit", "validate, save (old file kept as a version), apply"),
    exec("config discard", "drop the candidate"),
    exec("config rollback [N]", "bring version N back (default 1, the last one), apply it"),
    exec("config export", "the whole running document (secrets masked)"),
    exec("config import begin", "then the document's lines, then 'config import end'"),
    exec("config import end", "validate the imported document whole, save, apply"),
    exec("factory reset", "the embedded default with fresh secrets (asks to confirm)"),
    exec("factory reset confirm", "do it: the running configuration is kept as a version"),
    conf("set PATH VALUE", "set PATH in the candidate (e.g. fxs[0].number 2001)"),
    conf("unset PATH", "back to the default (or remove a list element)"),
    conf("diff", "what the candidate changes"),
    conf("commit", "validate, save (old file kept as a version), apply"),
    conf("abort", "drop the candidate and leave configuration mode"),
    conf("rollback [N]", "bring version N back (default 1), apply it"),
    conf("exit", "leave configuration mode (the candidate is kept)"),
    conf("end", "leave configuration mode (the candidate is kept)"),
    both("test route FROM NUMBER [CALLING]", "what a call from FROM to NUMBER would do, without placing it"),
    exec("test port N ring [SECONDS]", "ring FXS port N without a call (default 10 s, at most 120)"),
    exec("capture start", "record this gateway's SIP and RTP (pcap, 16 MB at most)"),
    exec("capture stop", "stop recording (D-channel captures too)"),
    exec("capture status", "what is being recorded"),
    exec("capture save FILE", "write the recording to FILE"),
    exec("capture isdn SPAN FILE", "write SPAN's D-channel frames to FILE (pcap, LAPD)"),
    both("debug isdn [SPAN|all] [q921|q931]", "decoded D-channel frames, in and out, on this session"),
    both("undebug isdn", "stop the D-channel frames on this session"),
    both("debug sip", "every SIP message received and sent, on this session"),
    both("undebug sip", "stop the SIP messages on this session"),
    both("undebug all", "stop every debug output on this session"),
    exec("upgrade status", "the A/B slots and the boot state"),
    exec("upgrade begin LEN", "start receiving a firmware bundle (gwctl upgrade FILE)"),
    exec("upgrade data BASE64 CRC32", "a chunk of the bundle"),
    exec("upgrade end", "verify and install the bundle"),
    both("help", "all commands"),
    both("terminal batch", "no echo or line editing (for programs such as gwctl)"),
    both("terminal interactive", "echo, history, '?' and TAB (the default)"),
    exec("quit", "end the session"),
    exec("exit", "end the session"),
];

/// One line for the words that start a group of commands.
const GROUPS: &[(&str, &str)] = &[
    ("show", "show state, configuration and records"),
    ("config", "edit, save and restore the configuration"),
    ("config import", "replace the whole configuration with a document"),
    ("factory", "back to the embedded default configuration"),
    ("test", "try a route, or ring a port, without placing a call"),
    ("capture", "packet captures of SIP, RTP and D-channels"),
    ("upgrade", "install a signed firmware bundle"),
    ("debug", "stream decoded protocol messages to this session"),
    ("undebug", "stop streaming to this session"),
    ("terminal", "how the serial console treats what is typed"),
];

const ARGS: &[(&str, &str)] = &[
    ("PATH", "a configuration path, e.g. sip.register_expires, fxs[0].number"),
    ("VALUE", "a TOML value: 120, true, \"text\", [\"PCMU\"]; a bare word is text"),
    ("N", "a number"),
    ("SECONDS", "a number of seconds"),
    ("FILE", "a file on the gateway"),
    ("FROM", "a port group or a trunk"),
    ("NUMBER", "the called number"),
    ("CALLING", "the calling number (optional)"),
    ("SPAN", "an ISDN span"),
    ("LEN", "the bundle's length in bytes"),
    ("BASE64", "the chunk, base64"),
    ("CRC32", "the chunk's CRC-32, hex"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok<'a> {
    Word(&'a str),
    Arg(&'a str),
    Optional(&'a str),
}

fn tokens(syntax: &str) -> Vec<Tok<'_>> {
    syntax
        .split(' ')
        .map(|t| {
            if let Some(inner) = t.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
                Tok::Optional(inner)
            } else if t.chars().next().is_some_and(|c| c.is_ascii_uppercase()) {
                Tok::Arg(t)
            } else {
                Tok::Word(t)
            }
        })
        .collect()
}

fn commands(mode: Mode) -> impl Iterator<Item = &'static Command> {
    COMMANDS.iter().filter(move |c| c.config.is_none_or(|conf| conf == (mode == Mode::Config)))
}

/// Every command of `mode` as (syntax, help), for `help`.
pub fn syntax(mode: Mode) -> Vec<(&'static str, &'static str)> {
    commands(mode).map(|c| (c.syntax, c.help)).collect()
}

/// A suggestion for the next word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Next {
    /// The word (or `PATH` for an argument, `<cr>` when the line is complete).
    pub word: String,
    pub help: String,
    /// A word typed as it is (completable), not an argument's name.
    pub literal: bool,
}

/// Splits `line` into the words typed whole and the word being typed.
fn split(line: &str) -> (Vec<&str>, &str) {
    let mut words: Vec<&str> = line.split_whitespace().collect();
    if line.is_empty() || line.ends_with(char::is_whitespace) {
        (words, "")
    } else {
        let partial = words.pop().unwrap_or("");
        (words, partial)
    }
}

/// What may come after `line` (its last word may be partly typed). `paths`
/// are the configuration paths offered for `PATH`.
pub fn next_words(mode: Mode, line: &str, paths: &[String]) -> Vec<Next> {
    let (typed, partial) = split(line);
    let mut out: Vec<Next> = Vec::new();
    let mut push = |n: Next| {
        if !out.iter().any(|o| o.word == n.word) {
            out.push(n);
        }
    };
    for c in commands(mode) {
        let toks = tokens(c.syntax);
        let matches = typed.iter().zip(&toks).all(|(w, t)| match t {
            Tok::Word(lit) => w == lit,
            Tok::Arg(_) | Tok::Optional(_) => true,
        });
        if !matches || typed.len() > toks.len() {
            continue;
        }
        // `VALUE` is the rest of the line: anything after it still matches.
        let Some(tok) = toks.get(typed.len()) else {
            if partial.is_empty() {
                push(Next { word: "<cr>".into(), help: c.help.into(), literal: false });
            }
            continue;
        };
        let last = typed.len() + 1 == toks.len() || toks[typed.len() + 1..].iter().all(|t| matches!(t, Tok::Optional(_)));
        match tok {
            Tok::Word(w) if w.starts_with(partial) => {
                let prefix: Vec<&str> = typed.iter().copied().chain(std::iter::once(*w)).collect();
                let group = GROUPS.iter().find(|(g, _)| *g == prefix.join(" ")).map(|(_, h)| *h);
                let help = if last { c.help } else { group.unwrap_or(c.help) };
                push(Next { word: (*w).into(), help: help.into(), literal: true });
            }
            Tok::Word(_) => {}
            Tok::Arg(a) | Tok::Optional(a) => {
                if *a == "PATH" && !partial.is_empty() {
                    for p in paths.iter().filter(|p| p.starts_with(partial)) {
                        push(Next { word: p.clone(), help: String::new(), literal: true });
                    }
                }
                let help = ARGS.iter().find(|(n, _)| n == a).map_or("", |(_, h)| h);
                let word = if matches!(tok, Tok::Optional(_)) { format!("[{a}]") } else { (*a).to_string() };
                push(Next { word, help: help.into(), literal: false });
                if matches!(tok, Tok::Optional(_)) && partial.is_empty() {
                    push(Next { word: "<cr>".into(), help: c.help.into(), literal: false });
                }
            }
        }
    }
    out
}

/// The answer to `?` after `line`: the next words, aligned, one a line.
pub fn help(mode: Mode, line: &str, paths: &[String]) -> String {
    let next = next_words(mode, line, paths);
    if next.is_empty() {
        return format!("% nothing can follow {:?} (type '?' alone for the commands)\n", line.trim());
    }
    let rows: Vec<Vec<String>> = next.iter().map(|n| vec![n.word.clone(), n.help.clone()]).collect();
    table(&[], &rows)
}

/// What TAB makes of `line`: the line completed as far as it is
/// unambiguous, and the choices if there are several.
pub fn complete(mode: Mode, line: &str, paths: &[String]) -> (String, Vec<String>) {
    let (_, partial) = split(line);
    let words: Vec<String> =
        next_words(mode, line, paths).into_iter().filter(|n| n.literal && n.word.starts_with(partial)).map(|n| n.word).collect();
    let base = &line[..line.len() - partial.len()];
    match words.as_slice() {
        [] => (line.to_string(), Vec::new()),
        [one] => {
            // A configuration path may go on (`fxs[0].`); a word is done.
            let more = paths.iter().any(|p| p.len() > one.len() && p.starts_with(one.as_str()));
            (format!("{base}{one}{}", if more { "" } else { " " }), Vec::new())
        }
        many => {
            let mut common = many[0].clone();
            for w in &many[1..] {
                while !w.starts_with(common.as_str()) {
                    common.pop();
                }
            }
            let longer = common.len() > partial.len();
            (format!("{base}{}", if longer { &common } else { partial }), many.to_vec())
        }
    }
}

/// Rows as an aligned table: columns as wide as their widest cell, two
/// spaces apart, a header line if there is one.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).chain(std::iter::once(header.len())).max().unwrap_or(0);
    let mut width = vec![0usize; cols];
    for (i, h) in header.iter().enumerate() {
        width[i] = width[i].max(h.chars().count());
    }
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
        let mut s = String::new();
        for (i, c) in cells.enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            s.push_str(c);
            if i + 1 < cols {
                s.extend(std::iter::repeat_n(' ', width[i] - c.chars().count()));
            }
        }
        s.truncate(s.trim_end().len());
        s.push('\n');
        s
    };
    let mut out = String::new();
    if !header.is_empty() {
        out.push_str(&line(&mut header.iter().copied()));
    }
    for r in rows {
        out.push_str(&line(&mut r.iter().map(String::as_str)));
    }
    out
}

/// What the line editor asks its owner to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Nothing but the echo.
    None,
    /// A line was entered.
    Line(String),
    /// `?`: show the help for the line so far (the line stays).
    Help(String),
    /// TAB: complete the line so far.
    Complete(String),
    /// A line longer than the bound was entered (dropped).
    TooLong,
}

/// Bytes from a terminal (a raw serial port) to lines: echo, backspace,
/// Ctrl-A/E/U/C, cursor keys left and right, history with up and down, `?`
/// and TAB handed to the owner. Bounded: a line never grows past `max`
/// bytes, the history keeps the last [`HISTORY`] lines.
#[derive(Debug, Default)]
pub struct LineEditor {
    buf: Vec<char>,
    cursor: usize,
    history: VecDeque<String>,
    /// Position while walking the history (0: the line being typed).
    back: usize,
    saved: String,
    esc: Vec<u8>,
    utf8: Vec<u8>,
    max: usize,
    /// Bytes were dropped from this line (past the bound).
    overflow: bool,
    /// `?` and TAB are characters, and lines are not kept (a password).
    pub plain: bool,
}

pub const HISTORY: usize = 50;

impl LineEditor {
    pub fn new(max: usize) -> Self {
        LineEditor { max, ..Default::default() }
    }

    pub fn line(&self) -> String {
        self.buf.iter().collect()
    }

    /// Replaces the line (after a completion) and returns what redraws it.
    pub fn set_line(&mut self, line: &str, prompt: &str) -> String {
        self.buf = line.chars().take(self.max).collect();
        self.cursor = self.buf.len();
        self.redraw(prompt)
    }

    /// The prompt and the line, the cursor where it is.
    pub fn redraw(&self, prompt: &str) -> String {
        let mut s = format!("\r{prompt}{}\x1b[K", self.line());
        let back = self.buf.len() - self.cursor;
        if back > 0 {
            s.push_str(&format!("\x1b[{back}D"));
        }
        s
    }

    fn recall(&mut self, back: usize) {
        if self.back == 0 {
            self.saved = self.line();
        }
        self.back = back;
        let l = if back == 0 { self.saved.clone() } else { self.history[self.history.len() - back].clone() };
        self.buf = l.chars().collect();
        self.cursor = self.buf.len();
    }

    /// Takes one byte; returns what to echo and what the owner should do.
    pub fn feed(&mut self, b: u8, prompt: &str) -> (String, Edit) {
        if !self.esc.is_empty() || b == 0x1b {
            self.esc.push(b);
            let seq = self.esc.clone();
            let done = seq.len() >= 3 || (seq.len() == 2 && seq[1] != b'[' && seq[1] != b'O');
            if !done {
                return (String::new(), Edit::None);
            }
            self.esc.clear();
            match seq.get(2) {
                Some(b'A') if self.back < self.history.len() => self.recall(self.back + 1),
                Some(b'B') if self.back > 0 => self.recall(self.back - 1),
                Some(b'C') if self.cursor < self.buf.len() => self.cursor += 1,
                Some(b'D') if self.cursor > 0 => self.cursor -= 1,
                _ => return (String::new(), Edit::None),
            }
            return (self.redraw(prompt), Edit::None);
        }
        match b {
            b'\r' | b'\n' => {
                let line = self.line();
                self.buf.clear();
                self.cursor = 0;
                self.back = 0;
                if std::mem::take(&mut self.overflow) {
                    return ("\r\n".into(), Edit::TooLong);
                }
                if !self.plain && !line.trim().is_empty() && self.history.back() != Some(&line) {
                    if self.history.len() == HISTORY {
                        self.history.pop_front();
                    }
                    self.history.push_back(line.clone());
                }
                ("\r\n".into(), Edit::Line(line))
            }
            b'?' if !self.plain => ("?\r\n".into(), Edit::Help(self.line())),
            b'\t' if !self.plain => (String::new(), Edit::Complete(self.line())),
            0x7f | 0x08 => {
                if self.cursor > 0 {
                    self.cursor -= 1;
                    self.buf.remove(self.cursor);
                    return (self.redraw(prompt), Edit::None);
                }
                (String::new(), Edit::None)
            }
            0x01 => {
                self.cursor = 0;
                (self.redraw(prompt), Edit::None)
            }
            0x05 => {
                self.cursor = self.buf.len();
                (self.redraw(prompt), Edit::None)
            }
            0x15 => {
                self.overflow = false;
                self.buf.clear();
                self.cursor = 0;
                (self.redraw(prompt), Edit::None)
            }
            0x03 => {
                self.overflow = false;
                self.buf.clear();
                self.cursor = 0;
                self.back = 0;
                (format!("^C\r\n{prompt}"), Edit::None)
            }
            b if b < 0x20 => (String::new(), Edit::None),
            b => {
                self.utf8.push(b);
                let c = match std::str::from_utf8(&self.utf8) {
                    Ok(s) => s.chars().next(),
                    Err(e) if e.error_len().is_none() && self.utf8.len() < 4 => return (String::new(), Edit::None),
                    Err(_) => Some(char::REPLACEMENT_CHARACTER),
                };
                self.utf8.clear();
                match c {
                    Some(c) if self.buf.len() < self.max => {
                        self.buf.insert(self.cursor, c);
                        self.cursor += 1;
                        if self.cursor == self.buf.len() {
                            (c.to_string(), Edit::None)
                        } else {
                            (self.redraw(prompt), Edit::None)
                        }
                    }
                    _ => {
                        self.overflow = true;
                        ("\x07".into(), Edit::None)
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths() -> Vec<String> {
        ["sip.register_expires", "sip.register_retry_base_s", "sip.proxy", "fxs[0].number", "fxs[1].number"].map(String::from).to_vec()
    }

    fn words(mode: Mode, line: &str) -> Vec<String> {
        next_words(mode, line, &paths()).into_iter().map(|n| n.word).collect()
    }

    #[test]
    fn question_mark_lists_the_next_words_with_a_line_each() {
        let top = words(Mode::Exec, "");
        for w in ["show", "configure", "config", "test", "capture", "upgrade", "factory", "help", "quit"] {
            assert!(top.contains(&w.to_string()), "{w} in {top:?}");
        }
        assert!(!top.contains(&"set".to_string()) && !top.contains(&"commit".to_string()), "config mode only");
        let h = help(Mode::Exec, "", &paths());
        assert!(h.contains("show       show state, configuration and records\n"), "aligned: {h}");
        let show = words(Mode::Exec, "show ");
        for w in ["ports", "calls", "sip", "rt", "log", "running-config", "versions", "cdr"] {
            assert!(show.contains(&w.to_string()), "{w} in {show:?}");
        }
        assert_eq!(words(Mode::Exec, "show r"), ["registrations", "rt", "routes", "running-config"]);
        assert_eq!(words(Mode::Exec, "show cdr "), ["[N]", "<cr>"]);
        assert_eq!(words(Mode::Exec, "show ports "), ["<cr>"]);
        assert_eq!(words(Mode::Exec, "test route "), ["FROM"]);
        assert_eq!(words(Mode::Config, "set "), ["PATH"]);
        assert_eq!(words(Mode::Config, "set sip.reg"), ["sip.register_expires", "sip.register_retry_base_s", "PATH"]);
        assert_eq!(words(Mode::Config, "set sip.proxy "), ["VALUE"]);
        assert!(words(Mode::Config, "").contains(&"commit".to_string()));
        assert!(words(Mode::Config, "").contains(&"show".to_string()), "show works in configuration mode");
        assert!(help(Mode::Exec, "frobnicate ", &paths()).starts_with("% nothing can follow \"frobnicate\""));
    }

    #[test]
    fn tab_completes_words_and_paths() {
        let c = |mode, l: &str| complete(mode, l, &paths());
        assert_eq!(c(Mode::Exec, "sh"), ("show ".into(), vec![]));
        assert_eq!(c(Mode::Exec, "show po"), ("show ports ".into(), vec![]));
        assert_eq!(c(Mode::Exec, "show ru"), ("show running-config ".into(), vec![]));
        let (line, choices) = c(Mode::Exec, "show r");
        assert_eq!(line, "show r");
        assert_eq!(choices, ["registrations", "rt", "routes", "running-config"]);
        assert_eq!(c(Mode::Exec, "conf"), ("config".into(), vec!["configure".into(), "config".into()]));
        assert_eq!(c(Mode::Config, "set sip.reg").0, "set sip.register_");
        assert_eq!(c(Mode::Config, "set sip.register_e").0, "set sip.register_expires ");
        assert_eq!(c(Mode::Config, "set fx").0, "set fxs[");
        assert_eq!(c(Mode::Exec, "nothing"), ("nothing".into(), vec![]));
    }

    #[test]
    fn tables_are_aligned() {
        let t = table(&["PORT", "NUMBER", "STATE"], &[vec!["1".into(), "1001".into(), "Idle".into()], vec!["12".into(), "2".into(), "Talking".into()]]);
        assert_eq!(t, "PORT  NUMBER  STATE\n1     1001    Idle\n12    2       Talking\n");
    }

    fn feed(e: &mut LineEditor, bytes: &[u8]) -> Vec<Edit> {
        bytes.iter().map(|&b| e.feed(b, "> ").1).filter(|x| *x != Edit::None).collect()
    }

    #[test]
    fn the_line_editor_edits_recalls_and_hands_over_help_and_tab() {
        let mut e = LineEditor::new(64);
        assert_eq!(feed(&mut e, b"show portz\x7fs\r"), [Edit::Line("show ports".into())]);
        // Cursor left, insert; Ctrl-A, Ctrl-E.
        assert_eq!(feed(&mut e, b"shw\x1b[Do\x01\x05 calls\n"), [Edit::Line("show calls".into())]);
        // Up twice: the older line; down: the newer one; edit it.
        assert_eq!(feed(&mut e, b"\x1b[A\x1b[A\x1b[B\x7f\x7f\x7f\x7f\x7fsip\r"), [Edit::Line("show sip".into())]);
        assert_eq!(feed(&mut e, b"show ?"), [Edit::Help("show ".into())]);
        assert_eq!(e.line(), "show ", "? is not part of the line");
        assert_eq!(feed(&mut e, b"po\t"), [Edit::Complete("show po".into())]);
        e.set_line("show ports ", "> ");
        assert_eq!(feed(&mut e, b"\r"), [Edit::Line("show ports ".into())]);
        // Ctrl-U and Ctrl-C drop the line; the history is bounded.
        assert_eq!(feed(&mut e, b"junk\x15x\x03\r"), [Edit::Line(String::new())]);
        for i in 0..(HISTORY + 10) {
            feed(&mut e, format!("show cdr {i}\r").as_bytes());
        }
        assert_eq!(e.history.len(), HISTORY);
        // A line never grows past its bound; line noise never panics.
        let mut e = LineEditor::new(8);
        let noise: Vec<u8> = (0..=255u8).chain(0..=255).filter(|b| !b"\r\n?\t".contains(b)).collect();
        feed(&mut e, &noise);
        assert!(e.line().chars().count() <= 8);
        assert_eq!(feed(&mut e, "\u{e9}\r".as_bytes()), [Edit::TooLong], "an overlong line is dropped whole");
        assert_eq!(feed(&mut e, "d\u{e9}j\u{e0}\r".as_bytes()), [Edit::Line("d\u{e9}j\u{e0}".into())]);
        // A password: '?' and TAB are characters, nothing is kept.
        e.plain = true;
        assert_eq!(feed(&mut e, b"a?b\tc\r"), [Edit::Line("a?bc".into())], "? is a character, TAB is nothing");
        assert!(e.history.iter().all(|l| !l.contains("a?b")));
    }
}
