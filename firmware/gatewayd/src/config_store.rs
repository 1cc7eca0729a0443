//! Configuration editing: a candidate edited key by key in the installer's
//! own file, validated whole, saved atomically with the last versions kept.
//!
//! The installer edits a *candidate* (the configuration file as a
//! `toml_edit` document) with `set`/`unset`; nothing runs with it until
//! `commit`. Edits are made in place: comments, blank lines and the order of
//! sections survive a commit (a value set keeps the comment beside it). A
//! commit parses and validates the whole candidate exactly as a start-up
//! would; a refusal names the field path (`fxs[1].number`) and the reason and
//! changes nothing. An accepted candidate replaces the configuration file
//! atomically (temporary file, fsync, rename, fsync of the directory), and
//! the file it replaces is kept as a version in `<file>.versions/` (the last
//! [`KEEP_VERSIONS`]; `rollback N` brings version N back, itself keeping the
//! file it replaces, so a rollback can be undone). A whole document can be
//! exported and imported (validated whole, refused whole), and a factory
//! reset writes the embedded default with fresh secrets.
//!
//! Errors are typed ([`StoreError`]): an invalid document, a disk that
//! cannot be written and a gatewayd without a file are told apart.
//!
//! A configuration can be valid and still fail to start (an address taken
//! by another process, an interface gone). Commit and rollback therefore
//! leave a `<file>.pending` marker; gatewayd removes it ([`confirm`]) once
//! the new configuration is up. If it fails to start while the marker is
//! there, [`recover_failed_change`] puts the newest version back (the failed
//! file is kept as `<file>.failed`) and gatewayd starts again with it, so a
//! bad change cannot leave the box down.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
#[cfg(test)]
use std::sync::Arc;

use toml_edit::{DocumentMut, Item};

use crate::config::{Config, DEFAULT_TOML};

/// What `show` prints in place of a secret.
pub const SECRET_MASK: &str = "********";

/// How many earlier files a store keeps (`show versions`, `rollback N`).
pub const KEEP_VERSIONS: usize = 10;

/// Why a configuration could not be edited, saved or restored. Whatever the
/// error, nothing changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// gatewayd runs from the embedded default: there is no file to save to.
    NoFile,
    /// A document that is not TOML (an import, the web UI's form); `line`
    /// is a line of that document.
    Syntax { line: usize, message: String },
    /// A document that is TOML but not a valid configuration.
    Invalid { field: String, message: String },
    /// A `set`/`unset` refused (bad path, wrong type).
    Edit { path: String, message: String },
    /// The candidate is the running configuration.
    Unchanged,
    /// `rollback N` with no such version; `kept` versions exist.
    NoVersion { n: usize, kept: usize },
    /// A kept version that is not a valid configuration (any more).
    BadVersion { n: usize, reason: Box<StoreError> },
    /// The disk: `action` (read, save...) on `path` failed.
    Io { action: &'static str, path: PathBuf, kind: std::io::ErrorKind, message: String },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::NoFile => {
                write!(f, "running from the embedded default: start gatewayd with --config FILE to save changes")
            }
            StoreError::Syntax { line, message } => write!(f, "line {line}: {message}"),
            StoreError::Invalid { field, message } if field.is_empty() => write!(f, "refused, nothing changed: {message}"),
            StoreError::Invalid { field, message } => write!(f, "refused, nothing changed: {field}: {message}"),
            StoreError::Edit { path, message } => write!(f, "{path}: {message}"),
            StoreError::Unchanged => write!(f, "nothing to commit: the candidate is the running configuration"),
            StoreError::NoVersion { n, kept: 0 } => write!(f, "no previous configuration (version {n}): none kept yet"),
            StoreError::NoVersion { n, kept } => {
                write!(f, "no previous configuration (version {n}): versions 1 to {kept} are kept ('show versions')")
            }
            StoreError::BadVersion { n, reason } => {
                write!(f, "version {n} is not valid, nothing changed: {}", reason.to_string().trim_start_matches("refused, nothing changed: "))
            }
            StoreError::Io { action, path, message, .. } => write!(f, "cannot {action} {}: {message}", path.display()),
        }
    }
}

impl std::error::Error for StoreError {}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |e| StoreError::Io { action, path: path.to_path_buf(), kind: e.kind(), message: e.to_string() }
}

fn edit_err(path: &str, message: impl Into<String>) -> StoreError {
    StoreError::Edit { path: path.to_string(), message: message.into() }
}

/// The running configuration and where it is saved.
#[derive(Debug)]
pub struct ConfigStore {
    /// `None`: running from the embedded default; nothing can be saved.
    path: Option<PathBuf>,
    board_ports: usize,
    running: Config,
}

/// A configuration being edited (one per console session): the document,
/// comments and all.
#[derive(Debug, Clone)]
pub struct Candidate {
    doc: DocumentMut,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.doc.to_string() == other.doc.to_string()
    }
}

/// What a successful commit or rollback did.
#[derive(Debug, Clone, PartialEq)]
pub struct Saved {
    pub path: PathBuf,
    /// Where the file it replaced is kept (version 1 now).
    pub previous: PathBuf,
    /// The configuration now in the file (validated).
    pub config: Config,
}

/// What `unset` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unset {
    /// The key is gone: its default applies (or the list element went).
    Removed,
    /// A required key: set back to the embedded default's value (shown).
    Default(String),
}

/// A kept earlier file (`show versions`).
#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    /// 1 is the newest.
    pub n: usize,
    pub path: PathBuf,
    /// Seconds since the epoch when it was put aside.
    pub saved_unix: u64,
    pub bytes: u64,
    /// What restoring it would change (diff lines), or why it cannot be.
    pub changes: Result<usize, String>,
}

impl ConfigStore {
    pub fn new(path: Option<PathBuf>, board_ports: usize, running: Config) -> Self {
        ConfigStore { path, board_ports, running }
    }

    pub fn running(&self) -> &Config {
        &self.running
    }

    /// The file changes are saved to, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Whether a commit can be saved at all: said when the installer starts
    /// editing, not only at the end.
    pub fn can_save(&self) -> Result<(), StoreError> {
        self.path.as_ref().map(|_| ()).ok_or(StoreError::NoFile)
    }

    /// The configuration now running, after a change applied without a
    /// restart.
    pub fn set_running(&mut self, config: Config) {
        self.running = config;
    }

    /// The running configuration's document: the installer's file when it
    /// holds the running configuration, else the embedded default's text if
    /// that is what runs, else the configuration written out.
    fn running_doc(&self) -> DocumentMut {
        let from_file = self.path.as_ref().and_then(|p| fs::read_to_string(p).ok()).filter(|text| {
            Config::from_toml(text, self.board_ports).is_ok_and(|c| c == self.running)
        });
        let text = from_file.unwrap_or_else(|| {
            if Config::from_toml(DEFAULT_TOML, self.board_ports).is_ok_and(|c| c == self.running) {
                DEFAULT_TOML.to_string()
            } else {
                // A Config always serializes (plain data).
                toml::to_string(&self.running).expect("configuration serializes to TOML")
            }
        });
        text.parse().unwrap_or_else(|_| DocumentMut::new())
    }

    /// The running configuration as TOML, secrets masked, the installer's
    /// comments and order kept.
    pub fn show_running(&self) -> String {
        let mut doc = self.running_doc();
        mask(&mut doc);
        doc.to_string()
    }

    /// The whole running document for a backup (`export`): masked, or with
    /// its secrets (a full backup, for an administrator).
    pub fn export(&self, secrets: bool) -> String {
        if secrets {
            self.running_doc().to_string()
        } else {
            self.show_running()
        }
    }

    /// A candidate starting from the running configuration.
    pub fn candidate(&self) -> Candidate {
        Candidate { doc: self.running_doc() }
    }

    /// A candidate from a whole TOML document (the web UI's form, an
    /// import). Secrets left as [`SECRET_MASK`] (as `show` printed them) keep
    /// their running values, so the masked text can be edited and sent back.
    pub fn candidate_from_text(&self, text: &str) -> Result<Candidate, StoreError> {
        let mut doc: DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
            let line = e.span().map(|s| text[..s.start.min(text.len())].lines().count().max(1)).unwrap_or(1);
            StoreError::Syntax { line, message: e.message().trim().to_string() }
        })?;
        let mut running = Vec::new();
        flatten("", &toml::Value::Table(to_table(&self.running)), &mut running);
        unmask(&mut doc, &running);
        Ok(Candidate { doc })
    }

    /// As [`Self::candidate_from_text`], for bytes off the wire (an upload).
    pub fn candidate_from_bytes(&self, bytes: &[u8]) -> Result<Candidate, StoreError> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let line = bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
            StoreError::Syntax { line, message: "not UTF-8 text".into() }
        })?;
        self.candidate_from_text(text)
    }

    /// The changes `candidate` makes to the running configuration, one line
    /// per key: `- path = old` / `+ path = new` (secrets masked).
    pub fn diff(&self, candidate: &Candidate) -> Vec<String> {
        diff_tables(&to_table(&self.running), &as_config_table(&candidate.doc.to_string()))
    }

    /// Checks `text` whole as a configuration; a refusal names the field
    /// path in the document.
    pub fn validate(&self, text: &str) -> Result<Config, StoreError> {
        validate(text, self.board_ports)
    }

    /// Validates `candidate` whole and, if it is good and differs from the
    /// running configuration, saves it (the old file kept as version 1).
    /// The caller applies it (live or by a restart). On any error nothing
    /// changed.
    pub fn commit(&self, candidate: &Candidate) -> Result<Saved, StoreError> {
        let path = self.path.as_ref().ok_or(StoreError::NoFile)?;
        let text = candidate.doc.to_string();
        let config = validate(&text, self.board_ports)?;
        if config == self.running {
            return Err(StoreError::Unchanged);
        }
        self.replace(path, text.as_bytes(), config)
    }

    /// Validates a whole document and commits it (refused whole).
    pub fn import(&self, bytes: &[u8]) -> Result<Saved, StoreError> {
        let candidate = self.candidate_from_bytes(bytes)?;
        self.commit(&candidate)
    }

    /// Saves the embedded default with every secret in it replaced by a
    /// fresh random one; returns them (`path`, value) to be shown once.
    pub fn factory_reset(&self) -> Result<(Saved, Vec<(String, String)>), StoreError> {
        let path = self.path.as_ref().ok_or(StoreError::NoFile)?;
        let mut doc: DocumentMut = DEFAULT_TOML.parse().expect("the embedded default is TOML");
        let mut fresh = Vec::new();
        visit_leaves(doc.as_item_mut(), "", &mut |p, v| {
            if is_secret(p) && v.is_str() {
                let secret = crate::accounts::generate_password();
                let decor = v.decor().clone();
                *v = toml_edit::Value::from(secret.as_str());
                *v.decor_mut() = decor;
                fresh.push((p.to_string(), secret));
            }
        });
        let text = doc.to_string();
        let config = validate(&text, self.board_ports)?;
        let saved = self.replace(path, text.as_bytes(), config)?;
        Ok((saved, fresh))
    }

    /// The kept earlier files, newest (1) first.
    pub fn versions(&self) -> Vec<Version> {
        let Some(path) = &self.path else { return Vec::new() };
        let before = to_table(&self.running);
        list_versions(path)
            .into_iter()
            .enumerate()
            .map(|(i, (_, p))| {
                let meta = fs::metadata(&p).ok();
                let saved_unix = meta
                    .as_ref()
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs());
                let changes = fs::read_to_string(&p).map_err(|e| e.to_string()).and_then(|text| {
                    validate(&text, self.board_ports).map_err(|e| e.to_string())?;
                    let d = diff_tables(&before, &as_config_table(&text));
                    Ok(d.iter().filter(|l| l.starts_with('+')).count().max(d.iter().filter(|l| l.starts_with('-')).count()))
                });
                Version { n: i + 1, path: p, saved_unix, bytes: meta.map_or(0, |m| m.len()), changes }
            })
            .collect()
    }

    /// Brings version `n` (1: the file before the last change) back, if it
    /// is a valid configuration; the file it replaces becomes version 1.
    /// The caller applies it.
    pub fn rollback(&self, n: usize) -> Result<Saved, StoreError> {
        let path = self.path.as_ref().ok_or(StoreError::NoFile)?;
        let kept = list_versions(path);
        let Some((_, vpath)) = n.checked_sub(1).and_then(|i| kept.get(i)) else {
            return Err(StoreError::NoVersion { n, kept: kept.len() });
        };
        let old = fs::read(vpath).map_err(io_err("read", vpath))?;
        let text = String::from_utf8(old.clone()).map_err(|_| StoreError::BadVersion {
            n,
            reason: Box::new(StoreError::Syntax { line: 1, message: "not UTF-8 text".into() }),
        })?;
        let config = validate(&text, self.board_ports).map_err(|e| StoreError::BadVersion { n, reason: Box::new(e) })?;
        self.replace(path, &old, config)
    }

    /// Keeps the file at `path` as version 1, marks the change pending and
    /// writes `bytes` over it.
    fn replace(&self, path: &Path, bytes: &[u8], config: Config) -> Result<Saved, StoreError> {
        let previous = save_file(path, bytes)?;
        Ok(Saved { path: path.to_path_buf(), previous, config })
    }
}

/// The disk half of a commit (`bytes` already validated): keeps the file at
/// `path` as version 1, marks the change pending and writes `bytes` over
/// the file, each step atomic. Returns where the old file is kept.
pub fn save_file(path: &Path, bytes: &[u8]) -> Result<PathBuf, StoreError> {
    let current = fs::read(path).map_err(io_err("read", path))?;
    let previous = push_version(path, &current)?;
    write_atomically(&suffixed(path, ".pending"), b"")?;
    write_atomically(path, bytes)?;
    Ok(previous)
}

/// Parses and validates a whole document; an error names the field path
/// (`sip.passwd`, `fxs[2]`) rather than a line.
fn validate(text: &str, board_ports: usize) -> Result<Config, StoreError> {
    let config: Config = toml::from_str(text).map_err(|e| {
        let field = e.span().and_then(|s| field_at(text, s.start)).unwrap_or_default();
        let mut message = e.message().trim().to_string();
        if field.is_empty() {
            if let Some(s) = e.span() {
                let line = text[..s.start.min(text.len())].lines().count().max(1);
                message = format!("line {line}: {message}");
            }
        }
        StoreError::Invalid { field, message }
    })?;
    config.validate(board_ports).map_err(|e| StoreError::Invalid { field: e.field, message: e.reason })?;
    Ok(config)
}

/// The path of the innermost key or value of `text` at byte `offset`.
fn field_at(text: &str, offset: usize) -> Option<String> {
    let doc = toml_edit::Document::parse(text).ok()?;
    fn in_item(item: &Item, path: &str, offset: usize) -> Option<String> {
        match item {
            Item::Table(t) => in_table(t, path, offset).or_else(|| t.span().filter(|s| s.contains(&offset)).map(|_| path.to_string())),
            Item::ArrayOfTables(a) => a.iter().enumerate().find_map(|(i, t)| {
                let p = format!("{path}[{i}]");
                in_table(t, &p, offset).or_else(|| t.span().filter(|s| s.contains(&offset)).map(|_| p))
            }),
            Item::Value(v) => in_value(v, path, offset),
            Item::None => None,
        }
    }
    fn in_value(v: &toml_edit::Value, path: &str, offset: usize) -> Option<String> {
        let inner = match v {
            toml_edit::Value::InlineTable(t) => t.iter().find_map(|(k, v)| {
                let p = join(path, k);
                in_value(v, &p, offset).or_else(|| t.key(k).and_then(|k| k.span()).filter(|s| s.contains(&offset)).map(|_| p))
            }),
            toml_edit::Value::Array(a) => a.iter().enumerate().find_map(|(i, v)| in_value(v, &format!("{path}[{i}]"), offset)),
            _ => None,
        };
        inner.or_else(|| v.span().filter(|s| s.contains(&offset)).map(|_| path.to_string()))
    }
    fn in_table(t: &toml_edit::Table, path: &str, offset: usize) -> Option<String> {
        t.iter().find_map(|(k, item)| {
            let p = join(path, k);
            in_item(item, &p, offset).or_else(|| t.key(k).and_then(|k| k.span()).filter(|s| s.contains(&offset)).map(|_| p))
        })
    }
    in_table(doc.as_table(), "", offset)
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// `text` as the configuration would read it (defaults filled in), or as
/// plain TOML if it is not one (yet).
fn as_config_table(text: &str) -> toml::Table {
    match toml::from_str::<Config>(text) {
        Ok(c) => to_table(&c),
        Err(_) => toml::from_str(text).unwrap_or_default(),
    }
}

fn diff_tables(before: &toml::Table, after: &toml::Table) -> Vec<String> {
    let mut b = Vec::new();
    flatten("", &toml::Value::Table(before.clone()), &mut b);
    let mut a = Vec::new();
    flatten("", &toml::Value::Table(after.clone()), &mut a);
    let mut out = Vec::new();
    for (k, v) in &b {
        match a.iter().find(|(k2, _)| k2 == k) {
            Some((_, v2)) if v2 == v => {}
            Some((_, v2)) => {
                out.push(format!("- {k} = {}", shown(k, v)));
                out.push(format!("+ {k} = {}", shown(k, v2)));
            }
            None => out.push(format!("- {k} = {}", shown(k, v))),
        }
    }
    for (k, v) in &a {
        if !b.iter().any(|(k2, _)| k2 == k) {
            out.push(format!("+ {k} = {}", shown(k, v)));
        }
    }
    out
}

/// The configuration at `path` is up: a change to it is no longer pending.
pub fn confirm(path: &Path) {
    let _ = fs::remove_file(suffixed(path, ".pending"));
}

/// Called when gatewayd cannot start with the configuration at `path`. If
/// that configuration is a pending change, puts the newest kept version back
/// (the failed file kept as `.failed`), clears the marker and returns
/// `Ok(true)`: start again. `Ok(false)`: no change was pending.
pub fn recover_failed_change(path: &Path) -> Result<bool, StoreError> {
    let pending = suffixed(path, ".pending");
    if !pending.exists() {
        return Ok(false);
    }
    // The marker goes first: whatever happens next, this never loops.
    fs::remove_file(&pending).map_err(io_err("remove", &pending))?;
    let Some((_, newest)) = list_versions(path).into_iter().next() else {
        return Err(StoreError::NoVersion { n: 1, kept: 0 });
    };
    let old = fs::read(&newest).map_err(io_err("read", &newest))?;
    let failed = fs::read(path).map_err(io_err("read", path))?;
    write_atomically(&suffixed(path, ".failed"), &failed)?;
    write_atomically(path, &old)?;
    Ok(true)
}

/// Where the versions of the file at `path` are kept.
pub fn versions_dir(path: &Path) -> PathBuf {
    suffixed(path, ".versions")
}

/// The kept versions (sequence number, file), newest first. Anything else in
/// the directory (a temporary file left by a kill) is ignored.
fn list_versions(path: &Path) -> Vec<(u64, PathBuf)> {
    let mut out: Vec<(u64, PathBuf)> = fs::read_dir(versions_dir(path))
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().into_string().ok()?;
            let seq = name.strip_suffix(".toml")?.parse::<u64>().ok()?;
            Some((seq, e.path()))
        })
        .collect();
    out.sort_by_key(|e| std::cmp::Reverse(e.0));
    out
}

/// Keeps `bytes` as the newest version of `path` and drops the ones past
/// [`KEEP_VERSIONS`]. Returns the new version's file.
fn push_version(path: &Path, bytes: &[u8]) -> Result<PathBuf, StoreError> {
    let dir = versions_dir(path);
    fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
    let kept = list_versions(path);
    let seq = kept.first().map_or(1, |(s, _)| s + 1);
    let file = dir.join(format!("{seq:06}.toml"));
    write_atomically(&file, bytes)?;
    for (_, old) in kept.iter().skip(KEEP_VERSIONS - 1) {
        let _ = fs::remove_file(old);
    }
    Ok(file)
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Writes `bytes` to a temporary file next to `path`, syncs it and renames
/// it over `path`: a reader (or a power cut, or a kill) sees the old or the
/// new file, never a mix.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = suffixed(path, ".tmp");
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    };
    write().map_err(io_err("save", path))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

fn to_table(config: &Config) -> toml::Table {
    // A Config always serializes (plain data); a failure is a defect here.
    toml::Table::try_from(config).expect("configuration serializes to TOML")
}

/// `password`, `web_password`, `fxs[0].password`...
fn is_secret(key: &str) -> bool {
    key.rsplit('.').next().is_some_and(|k| k.ends_with("password"))
}

/// Calls `f` with every leaf value of `item` and its path (`sip.proxy`,
/// `fxs[0].number`, `route[1].to[0].trunk`); lists of plain values are
/// leaves.
fn visit_leaves(item: &mut Item, path: &str, f: &mut dyn FnMut(&str, &mut toml_edit::Value)) {
    match item {
        Item::Table(t) => {
            for (k, v) in t.iter_mut() {
                visit_leaves(v, &join(path, k.get()), f);
            }
        }
        Item::ArrayOfTables(a) => {
            for (i, t) in a.iter_mut().enumerate() {
                for (k, v) in t.iter_mut() {
                    visit_leaves(v, &join(&format!("{path}[{i}]"), k.get()), f);
                }
            }
        }
        Item::Value(v) => visit_value(v, path, f),
        Item::None => {}
    }
}

fn visit_value(v: &mut toml_edit::Value, path: &str, f: &mut dyn FnMut(&str, &mut toml_edit::Value)) {
    match v {
        toml_edit::Value::InlineTable(t) => {
            for (k, v) in t.iter_mut() {
                visit_value(v, &join(path, k.get()), f);
            }
        }
        toml_edit::Value::Array(a) if a.iter().any(toml_edit::Value::is_inline_table) => {
            for (i, v) in a.iter_mut().enumerate() {
                visit_value(v, &format!("{path}[{i}]"), f);
            }
        }
        other => f(path, other),
    }
}

fn mask(doc: &mut DocumentMut) {
    visit_leaves(doc.as_item_mut(), "", &mut |p, v| {
        if is_secret(p) && v.is_str() {
            let decor = v.decor().clone();
            *v = toml_edit::Value::from(SECRET_MASK);
            *v.decor_mut() = decor;
        }
    });
}

/// Puts back the running value wherever `doc` holds the mask of a secret.
fn unmask(doc: &mut DocumentMut, running: &[(String, toml::Value)]) {
    visit_leaves(doc.as_item_mut(), "", &mut |p, v| {
        if is_secret(p) && v.as_str() == Some(SECRET_MASK) {
            if let Some((_, toml::Value::String(r))) = running.iter().find(|(k, _)| k == p) {
                let decor = v.decor().clone();
                *v = toml_edit::Value::from(r.as_str());
                *v.decor_mut() = decor;
            }
        }
    });
}

fn shown(path: &str, v: &toml::Value) -> String {
    if is_secret(path) {
        SECRET_MASK.into()
    } else {
        v.to_string()
    }
}

/// Leaf values with their paths (`sip.proxy`, `fxs[0].number`).
fn flatten(prefix: &str, v: &toml::Value, out: &mut Vec<(String, toml::Value)>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                flatten(&join(prefix, k), v, out);
            }
        }
        toml::Value::Array(a) if a.iter().any(toml::Value::is_table) => {
            for (i, v) in a.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), v, out);
            }
        }
        other => out.push((prefix.to_string(), other.clone())),
    }
}

impl Candidate {
    /// Sets `path` (`section.key`, `fxs[1].number`) to `value`, a TOML value
    /// (`120`, `true`, `"text"`, `["PCMU"]`, `{ port = 5, number = "1005" }`);
    /// a bare word is taken as a string. The value must have the type of the
    /// one it replaces; the comment beside it stays. A section the file
    /// leaves out (all defaults) is added. The whole candidate is only
    /// checked at commit.
    pub fn set(&mut self, path: &str, value: &str) -> Result<(), StoreError> {
        let segs = parse_path(path)?;
        let mut new = parse_value(value);
        if new.as_str() == Some(SECRET_MASK) {
            return Err(edit_err(path, "that is the mask shown for secrets, not a value"));
        }
        let (last, parents) = segs.split_last().ok_or_else(|| edit_err(path, "empty path"))?;
        let known = known_value(&to_table_lossy(&self.doc), &segs).or_else(|| known_value(&default_table(), &segs));
        let parent = walk(self.doc.as_item_mut(), parents, path, true)?;
        match (parent, last) {
            (Slot::Table(t), Seg::Key(k)) => match t.get_mut(k) {
                Some(Item::Value(old)) => {
                    if old.is_str() && !matches!(new, toml_edit::Value::Array(_) | toml_edit::Value::InlineTable(_)) {
                        new = toml_edit::Value::from(unquoted(value));
                    }
                    same_type(path, old, &new)?;
                    *new.decor_mut() = old.decor().clone();
                    *old = new;
                }
                Some(old @ Item::Table(_)) => match new {
                    toml_edit::Value::InlineTable(it) => *old = Item::Table(it.into_table()),
                    _ => return Err(edit_err(path, format!("expected a section ({{ key = value, ... }}), got {}", new.to_string().trim()))),
                },
                Some(old @ Item::ArrayOfTables(_)) => match new {
                    toml_edit::Value::Array(a) if a.iter().all(toml_edit::Value::is_inline_table) => {
                        let mut aot = toml_edit::ArrayOfTables::new();
                        for v in a {
                            if let toml_edit::Value::InlineTable(t) = v {
                                aot.push(t.into_table());
                            }
                        }
                        *old = Item::ArrayOfTables(aot);
                    }
                    _ => return Err(edit_err(path, format!("expected a list of sections, got {}", new.to_string().trim()))),
                },
                _ => {
                    if let Some(k) = &known {
                        if k.is_str() && !matches!(new, toml_edit::Value::Array(_) | toml_edit::Value::InlineTable(_)) {
                            new = toml_edit::Value::from(unquoted(value));
                        }
                        same_type_known(path, k, &new)?;
                    }
                    t.insert(k, Item::Value(new));
                }
            },
            (Slot::Tables(a), Seg::Index(i)) => {
                let toml_edit::Value::InlineTable(it) = new else {
                    return Err(edit_err(path, format!("expected a section ({{ key = value, ... }}), got {}", new.to_string().trim())));
                };
                if let Some(t) = a.get_mut(*i) {
                    *t = it.into_table();
                } else if *i == a.len() {
                    a.push(it.into_table());
                } else {
                    return Err(edit_err(path, format!("index {i} is past the end (length {})", a.len())));
                }
            }
            (Slot::Array(a), Seg::Index(i)) => {
                if let Some(old) = a.get_mut(*i) {
                    same_type(path, old, &new)?;
                    *new.decor_mut() = old.decor().clone();
                    *old = new;
                } else if *i == a.len() {
                    if let Some(first) = a.get(0) {
                        same_type(path, first, &new)?;
                    }
                    a.push_formatted(new.decorated(if a.is_empty() { "" } else { " " }, ""));
                } else {
                    return Err(edit_err(path, format!("index {i} is past the end (length {})", a.len())));
                }
            }
            (Slot::Table(_), Seg::Index(_)) => return Err(edit_err(path, "not a list")),
            (Slot::Tables(_) | Slot::Array(_), Seg::Key(_)) => return Err(edit_err(path, "a list needs an index, e.g. [0]")),
        }
        Ok(())
    }

    /// Removes `path`: the key's default applies, or a list element goes. A
    /// key the configuration cannot do without is set back to the embedded
    /// default's value instead (said in the answer).
    pub fn unset(&mut self, path: &str) -> Result<Unset, StoreError> {
        let segs = parse_path(path)?;
        let (last, parents) = segs.split_last().ok_or_else(|| edit_err(path, "empty path"))?;
        let required = required_default(&segs);
        match (walk(self.doc.as_item_mut(), parents, path, false)?, last) {
            (Slot::Table(t), Seg::Key(k)) => {
                let Some(item) = t.get_mut(k) else { return Err(edit_err(path, "not set")) };
                match required {
                    Some(default) => {
                        let shown = match &default {
                            Item::Value(v) if is_secret(path) => {
                                let _ = v;
                                SECRET_MASK.to_string()
                            }
                            Item::Value(v) => v.to_string().trim().to_string(),
                            _ => "the default section".to_string(),
                        };
                        match (item, default) {
                            (Item::Value(old), Item::Value(mut d)) => {
                                *d.decor_mut() = old.decor().clone();
                                *old = d;
                            }
                            (item, d) => *item = d,
                        }
                        Ok(Unset::Default(shown))
                    }
                    None => {
                        t.remove(k);
                        Ok(Unset::Removed)
                    }
                }
            }
            (Slot::Tables(a), Seg::Index(i)) if *i < a.len() => {
                a.remove(*i);
                Ok(Unset::Removed)
            }
            (Slot::Array(a), Seg::Index(i)) if *i < a.len() => {
                a.remove(*i);
                Ok(Unset::Removed)
            }
            _ => Err(edit_err(path, "not set")),
        }
    }

    /// The candidate as TOML, secrets masked.
    pub fn show(&self) -> String {
        let mut doc = self.doc.clone();
        mask(&mut doc);
        doc.to_string()
    }

    /// The candidate's document as it would be saved (secrets and all).
    pub fn text(&self) -> String {
        self.doc.to_string()
    }
}

/// The embedded default as a table (what a section the file leaves out
/// holds).
fn default_table() -> toml::Table {
    toml::from_str(DEFAULT_TOML).unwrap_or_default()
}

fn to_table_lossy(doc: &DocumentMut) -> toml::Table {
    toml::from_str(&doc.to_string()).unwrap_or_default()
}

/// The value at `segs` in `table`, if there is one.
fn known_value(table: &toml::Table, segs: &[Seg]) -> Option<toml::Value> {
    let mut v = toml::Value::Table(table.clone());
    for s in segs {
        v = match (v, s) {
            (toml::Value::Table(mut t), Seg::Key(k)) => t.remove(k)?,
            (toml::Value::Array(mut a), Seg::Index(i)) if *i < a.len() => a.swap_remove(*i),
            _ => return None,
        };
    }
    Some(v)
}

/// The embedded default's value at `segs` if the configuration cannot do
/// without the key there (a missing field).
fn required_default(segs: &[Seg]) -> Option<Item> {
    let mut doc: DocumentMut = DEFAULT_TOML.parse().ok()?;
    let (last, parents) = segs.split_last()?;
    let Seg::Key(k) = last else { return None };
    let default = match walk(doc.as_item_mut(), parents, "", false).ok()? {
        Slot::Table(t) => t.remove(k)?,
        _ => return None,
    };
    match toml::from_str::<Config>(&doc.to_string()) {
        Err(e) if e.message().contains("missing field") => Some(default),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn parse_path(path: &str) -> Result<Vec<Seg>, StoreError> {
    let bad = || StoreError::Edit {
        path: format!("{path:?}"),
        message: "not a configuration path (e.g. sip.register_expires, fxs[0].number)".into(),
    };
    let mut segs = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(bad());
        }
        segs.push(Seg::Key(key.to_string()));
        while !rest.is_empty() {
            let close = rest.find(']').ok_or_else(bad)?;
            let idx: usize = rest[1..close].parse().map_err(|_| bad())?;
            segs.push(Seg::Index(idx));
            rest = &rest[close + 1..];
            if !rest.is_empty() && !rest.starts_with('[') {
                return Err(bad());
            }
        }
    }
    Ok(segs)
}

fn parse_value(value: &str) -> toml_edit::Value {
    let value = value.trim();
    let mut v = value.parse::<toml_edit::Value>().unwrap_or_else(|_| toml_edit::Value::from(value));
    v.decor_mut().clear();
    v
}

/// `value` as text: the TOML string if it is one, else the trimmed input.
fn unquoted(value: &str) -> String {
    match parse_value(value) {
        toml_edit::Value::String(s) => s.value().clone(),
        _ => value.trim().to_string(),
    }
}

fn type_name(v: &toml_edit::Value) -> &'static str {
    v.type_name()
}

fn same_type(path: &str, old: &toml_edit::Value, new: &toml_edit::Value) -> Result<(), StoreError> {
    use toml_edit::Value::*;
    let ok = matches!(
        (old, new),
        (String(_), String(_))
            | (Integer(_), Integer(_))
            | (Float(_), Float(_) | Integer(_))
            | (Boolean(_), Boolean(_))
            | (Datetime(_), Datetime(_))
            | (Array(_), Array(_))
            | (InlineTable(_), InlineTable(_))
    );
    if ok {
        Ok(())
    } else {
        Err(edit_err(path, format!("expected {}, got {}", type_name(old), new.to_string().trim())))
    }
}

fn same_type_known(path: &str, old: &toml::Value, new: &toml_edit::Value) -> Result<(), StoreError> {
    use toml_edit::Value as V;
    let ok = matches!(
        (old, new),
        (toml::Value::String(_), V::String(_))
            | (toml::Value::Integer(_), V::Integer(_))
            | (toml::Value::Float(_), V::Float(_) | V::Integer(_))
            | (toml::Value::Boolean(_), V::Boolean(_))
            | (toml::Value::Datetime(_), V::Datetime(_))
            | (toml::Value::Array(_), V::Array(_))
            | (toml::Value::Table(_), V::InlineTable(_))
    );
    if ok {
        Ok(())
    } else {
        Err(edit_err(path, format!("expected {}, got {}", old.type_str(), new.to_string().trim())))
    }
}

enum Slot<'a> {
    Table(&'a mut dyn toml_edit::TableLike),
    Tables(&'a mut toml_edit::ArrayOfTables),
    Array(&'a mut toml_edit::Array),
}

/// Walks to the table or list at `segs`. With `create`, a section the
/// document leaves out but the configuration has (all defaults) is added.
fn walk<'a>(root: &'a mut Item, segs: &[Seg], path: &str, create: bool) -> Result<Slot<'a>, StoreError> {
    let no_section = || edit_err(path, "no such section");
    let mut slot = item_slot(root).ok_or_else(no_section)?;
    for (depth, seg) in segs.iter().enumerate() {
        let next = match (slot, seg) {
            (Slot::Table(t), Seg::Key(k)) => {
                if t.get(k).is_none() && create && known_value(&default_table(), &segs[..=depth]).is_some_and(|v| v.is_table()) {
                    let mut section = toml_edit::Table::new();
                    section.set_implicit(false);
                    t.insert(k, Item::Table(section));
                }
                t.get_mut(k).and_then(item_slot)
            }
            (Slot::Tables(a), Seg::Index(i)) => a.get_mut(*i).map(|t| Slot::Table(t as &mut dyn toml_edit::TableLike)),
            (Slot::Array(a), Seg::Index(i)) => a.get_mut(*i).and_then(value_slot),
            _ => None,
        };
        slot = next.ok_or_else(no_section)?;
    }
    Ok(slot)
}

fn item_slot(item: &mut Item) -> Option<Slot<'_>> {
    match item {
        Item::Table(t) => Some(Slot::Table(t)),
        Item::ArrayOfTables(a) => Some(Slot::Tables(a)),
        Item::Value(v) => value_slot(v),
        Item::None => None,
    }
}

fn value_slot(v: &mut toml_edit::Value) -> Option<Slot<'_>> {
    match v {
        toml_edit::Value::InlineTable(t) => Some(Slot::Table(t)),
        toml_edit::Value::Array(a) => Some(Slot::Array(a)),
        _ => None,
    }
}

/// What the console and web UI tests run against.
#[cfg(test)]
pub(crate) struct Fixture {
    pub store: Arc<std::sync::Mutex<ConfigStore>>,
    pub status: crate::status::SharedStatus,
    /// Counts into `restarts`.
    pub restart: Arc<dyn Fn() + Send + Sync>,
    pub restarts: Arc<std::sync::atomic::AtomicU32>,
    /// Counts into `applies` (changes applied live).
    pub apply: Arc<dyn Fn(Config) + Send + Sync>,
    pub applies: Arc<std::sync::atomic::AtomicU32>,
    pub path: PathBuf,
}

/// A configuration file in `dir` holding `text`, its store, a status and a
/// restart hook that counts.
#[cfg(test)]
pub(crate) fn fixture(dir: &Path, text: &str) -> Fixture {
    use std::sync::atomic::{AtomicU32, Ordering};
    let path = dir.join("gw.toml");
    fs::write(&path, text).unwrap();
    let running = Config::load(&path, 4).unwrap();
    let restarts = Arc::new(AtomicU32::new(0));
    let r = restarts.clone();
    let rt = crate::rt::RtStats::new(0).snapshot();
    let status = Arc::new(std::sync::Mutex::new(crate::status::Status::new("sim".into(), "x".into(), None, rt)));
    let store = Arc::new(std::sync::Mutex::new(ConfigStore::new(Some(path.clone()), 4, running)));
    let restart: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        r.fetch_add(1, Ordering::Relaxed);
    });
    let applies = Arc::new(AtomicU32::new(0));
    let a = applies.clone();
    let apply: Arc<dyn Fn(Config) + Send + Sync> = Arc::new(move |_| {
        a.fetch_add(1, Ordering::Relaxed);
    });
    Fixture { store, status, restart, restarts, apply, applies, path }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_in(dir: &Path) -> (ConfigStore, PathBuf) {
        store_with(dir, DEFAULT_TOML)
    }

    fn store_with(dir: &Path, text: &str) -> (ConfigStore, PathBuf) {
        let path = dir.join("gw.toml");
        fs::write(&path, text).unwrap();
        let running = Config::load(&path, 4).unwrap();
        (ConfigStore::new(Some(path.clone()), 4, running), path)
    }

    /// The store after the change was applied (as gatewayd does).
    fn reload(path: &Path) -> ConfigStore {
        ConfigStore::new(Some(path.to_path_buf()), 4, Config::load(path, 4).unwrap())
    }

    #[test]
    fn set_diff_commit_rollback() {
        let dir = tempfile::tempdir().unwrap();
        let (store, path) = store_in(dir.path());
        let mut c = store.candidate();
        assert!(store.diff(&c).is_empty());
        c.set("sip.register_expires", "120").unwrap();
        c.set("fxs[1].number", "2002").unwrap();
        c.set("caller_id.mode", "off").unwrap();
        assert_eq!(
            store.diff(&c),
            [
                "- caller_id.mode = \"auto\"",
                "+ caller_id.mode = \"off\"",
                "- fxs[1].number = \"1002\"",
                "+ fxs[1].number = \"2002\"",
                "- sip.register_expires = 300",
                "+ sip.register_expires = 120",
            ]
        );
        let saved = store.commit(&c).unwrap();
        assert_eq!(saved.path, path);
        let now = Config::load(&path, 4).unwrap();
        assert_eq!(now.sip.register_expires, 120);
        assert_eq!(now.fxs[1].number, "2002");
        assert_eq!(fs::read_to_string(&saved.previous).unwrap(), DEFAULT_TOML, "the old file kept whole");
        assert_eq!(saved.previous.parent().unwrap(), versions_dir(&path));

        // After the change the store runs the new file; rollback 1 swaps back,
        // and keeps the file it replaced: rollback 1 again undoes it.
        let store = reload(&path);
        let committed = fs::read_to_string(&path).unwrap();
        store.rollback(1).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), DEFAULT_TOML);
        let store = reload(&path);
        assert_eq!(store.versions().len(), 2);
        store.rollback(1).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), committed);
    }

    #[test]
    fn a_commit_keeps_the_installers_comments_and_order() {
        let dir = tempfile::tempdir().unwrap();
        // Sections in the installer's order (not the schema's), comments
        // above, beside and below, a section left out ([caller_id]).
        let text = DEFAULT_TOML.replace(
            "register_expires = 300",
            "register_expires = 300   # the carrier wants 5 minutes",
        );
        let (caller_id_at, dialplan_at) = (text.find("[caller_id]").unwrap(), text.find("[dialplan]").unwrap());
        let text = format!("# Site: Branch 7, rack 2\n{}{}", &text[..caller_id_at], &text[dialplan_at..]);
        let (store, path) = store_with(dir.path(), &text);
        let mut c = store.candidate();
        c.set("sip.register_expires", "120").unwrap();
        c.set("fxs[2].number", "1333").unwrap();
        c.set("caller_id.mode", "off").unwrap();
        c.set("media.codecs[2]", "\"G722\"").unwrap();
        store.commit(&c).unwrap();
        let saved = fs::read_to_string(&path).unwrap();
        let expected = text
            .replace("register_expires = 300   # the carrier", "register_expires = 120   # the carrier")
            .replace("number = \"1003\"", "number = \"1333\"")
            .replace("codecs = [\"PCMU\", \"PCMA\"]", "codecs = [\"PCMU\", \"PCMA\", \"G722\"]");
        // The only other change: the section that was left out, at the end.
        assert!(saved.starts_with(&expected), "{saved}");
        assert_eq!(&saved[expected.len()..], "\n[caller_id]\nmode = \"off\"\n");
        let cfg = Config::load(&path, 4).unwrap();
        assert_eq!(cfg.sip.register_expires, 120);
        assert_eq!(cfg.media.codecs.len(), 3);
        // show keeps the comments too, secrets masked.
        let shown = reload(&path).show_running();
        assert!(shown.starts_with("# Site: Branch 7") && shown.contains("# the carrier wants 5 minutes"), "{shown}");
        assert!(shown.contains(&format!("password = \"{SECRET_MASK}\"")) && !shown.contains("change-me"));
    }

    #[test]
    fn invalid_candidate_is_refused_and_nothing_changes() {
        let dir = tempfile::tempdir().unwrap();
        let (store, path) = store_in(dir.path());
        let mut c = store.candidate();
        c.set("media.ptime_ms", "25").unwrap();
        let e = store.commit(&c).unwrap_err();
        assert!(matches!(&e, StoreError::Invalid { field, message } if field == "media.ptime_ms" && message.contains("must be 10, 20")), "{e:?}");
        assert_eq!(fs::read_to_string(&path).unwrap(), DEFAULT_TOML);
        assert!(store.versions().is_empty());
        // Two ports with one number: a whole-document rule.
        let mut c = store.candidate();
        c.set("fxs[1].number", "1001").unwrap();
        assert!(store.commit(&c).unwrap_err().to_string().contains("fxs[1].number"));
        // An unknown key is refused at commit with its path in the document.
        let mut c = store.candidate();
        c.set("sip.passwd", "x").unwrap();
        let e = store.commit(&c).unwrap_err();
        assert!(matches!(&e, StoreError::Invalid { field, message } if field == "sip.passwd" && message.contains("unknown field")), "{e:?}");
        assert_eq!(store.commit(&store.candidate()).unwrap_err(), StoreError::Unchanged);
        assert_eq!(fs::read_to_string(&path).unwrap(), DEFAULT_TOML);
    }

    #[test]
    fn errors_name_the_field_path_not_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store_in(dir.path());
        let cases = [
            (DEFAULT_TOML.replace("register_expires = 300", "register_expires = \"soon\""), "sip.register_expires"),
            (DEFAULT_TOML.replace("port = 3\nnumber = \"1003\"", "port = 3"), "fxs[2]"),
            (DEFAULT_TOML.replace("to = [{ owner = true }]", "to = [{ owner = true, when = 1 }]"), "route[0].to[0].when"),
            (DEFAULT_TOML.replace("[log]", "[log]\nlevel = \"debug\""), "log.level"),
        ];
        for (text, field) in cases {
            let e = store.commit(&store.candidate_from_text(&text).unwrap()).unwrap_err();
            assert!(matches!(&e, StoreError::Invalid { field: f, .. } if f == field), "{field}: {e:?}");
            assert!(!e.to_string().contains("line "), "{e}");
        }
    }

    #[test]
    fn set_checks_paths_and_types() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store_in(dir.path());
        let mut c = store.candidate();
        let before = c.clone();
        assert_eq!(c.set("sip.register_expires", "soon").unwrap_err().to_string(), "sip.register_expires: expected integer, got \"soon\"");
        assert!(c.set("media.echo_canceller", "1").unwrap_err().to_string().contains("expected boolean"));
        assert!(c.set("nosuch.key", "1").unwrap_err().to_string().contains("no such section"));
        assert!(c.set("fxs[9].number", "1").unwrap_err().to_string().contains("no such section"));
        assert!(c.set("fxs[4]", "{ port = 5 }").is_ok(), "appending an element");
        assert!(c.set("fxs[7]", "{ port = 8 }").unwrap_err().to_string().contains("past the end"));
        assert!(c.set("fxs[3]", "5").unwrap_err().to_string().contains("expected a section"));
        assert!(c.set("sip..x", "1").unwrap_err().to_string().contains("not a configuration path"));
        assert!(c.set("fxs[x].number", "1").unwrap_err().to_string().contains("not a configuration path"));
        assert!(c.set("sip.password", SECRET_MASK).unwrap_err().to_string().contains("mask"));
        // A key the file leaves out is checked against the configuration's type.
        assert!(c.set("log.file_keep", "many").unwrap_err().to_string().contains("expected integer"));
        c.unset("fxs[4]").unwrap();
        assert_eq!(c, before, "refused edits left the candidate as it was");
        // Strings may be bare or quoted; floats accept integers.
        c.set("sip.user_agent", "gw 2").unwrap();
        c.set("caller_id.level_dbm0", "-10").unwrap();
        c.set("media.codecs", "[\"PCMA\"]").unwrap();
        c.set("sip.domain", "10.0.0.1").unwrap();
        let cfg = Config::from_toml(&c.text(), 4).unwrap();
        assert_eq!((cfg.sip.user_agent.as_str(), cfg.caller_id.level_dbm0), ("gw 2", -10.0));
        assert_eq!((cfg.media.codecs.len(), cfg.sip.domain.as_str()), (1, "10.0.0.1"));
    }

    #[test]
    fn unset_of_a_required_field_restores_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let text = DEFAULT_TOML.replace("proxy = \"127.0.0.1:5060\"", "proxy = \"192.0.2.7:5060\" # the carrier");
        let (store, path) = store_with(dir.path(), &text);
        let mut c = store.candidate();
        // Required: back to the embedded default, the comment kept.
        assert_eq!(c.unset("sip.proxy").unwrap(), Unset::Default("\"127.0.0.1:5060\"".into()));
        assert!(c.text().contains("proxy = \"127.0.0.1:5060\" # the carrier"), "{}", c.text());
        assert_eq!(c.unset("sip.password").unwrap(), Unset::Default(SECRET_MASK.into()), "secrets not shown");
        // Optional: removed, its default applies.
        assert_eq!(c.unset("system.rt_core").unwrap(), Unset::Removed);
        assert_eq!(c.unset("system.rt_core").unwrap_err().to_string(), "system.rt_core: not set");
        assert_eq!(c.unset("media.jitter_ms").unwrap(), Unset::Default("60".into()));
        store.commit(&c).unwrap();
        let cfg = Config::load(&path, 4).unwrap();
        assert_eq!((cfg.sip.proxy.to_string().as_str(), cfg.system.rt_core), ("127.0.0.1:5060", None));
    }

    #[test]
    fn versions_are_kept_listed_and_restored_by_number() {
        let dir = tempfile::tempdir().unwrap();
        let (_, path) = store_in(dir.path());
        for i in 0..(KEEP_VERSIONS + 3) {
            let store = reload(&path);
            let mut c = store.candidate();
            c.set("sip.register_expires", &(100 + i).to_string()).unwrap();
            store.commit(&c).unwrap();
        }
        let store = reload(&path);
        assert_eq!(store.running().sip.register_expires, 112);
        let v = store.versions();
        assert_eq!(v.len(), KEEP_VERSIONS, "the oldest are dropped");
        assert_eq!(v.iter().map(|v| v.n).collect::<Vec<_>>(), (1..=KEEP_VERSIONS).collect::<Vec<_>>());
        assert!(v.iter().all(|v| v.changes == Ok(1) && v.bytes > 1000 && v.saved_unix > 1_700_000_000), "{v:?}");
        // Version 3: the file before the last three commits (111, 110, 109).
        store.rollback(3).unwrap();
        assert_eq!(Config::load(&path, 4).unwrap().sip.register_expires, 109);
        let store = reload(&path);
        assert_eq!(store.rollback(11).unwrap_err(), StoreError::NoVersion { n: 11, kept: KEEP_VERSIONS });
        assert!(matches!(store.rollback(0), Err(StoreError::NoVersion { n: 0, .. })));
        // A kept version that is not valid (edited by hand) is refused.
        fs::write(&store.versions()[1].path, "[system]\ncountry = \"XX\"\n").unwrap();
        let e = store.rollback(2).unwrap_err();
        assert!(e.to_string().starts_with("version 2 is not valid, nothing changed"), "{e}");
        assert!(store.versions()[1].changes.is_err());
        assert_eq!(Config::load(&path, 4).unwrap().sip.register_expires, 109);
    }

    #[test]
    fn a_disk_failure_is_not_an_invalid_document() {
        let dir = tempfile::tempdir().unwrap();
        let (store, path) = store_in(dir.path());
        // The versions directory cannot be made (a file is in the way).
        fs::write(versions_dir(&path), b"").unwrap();
        let mut c = store.candidate();
        c.set("sip.register_expires", "120").unwrap();
        let e = store.commit(&c).unwrap_err();
        assert!(matches!(&e, StoreError::Io { action: "create", .. }), "{e:?}");
        assert!(e.to_string().starts_with("cannot create"), "{e}");
        assert_eq!(fs::read_to_string(&path).unwrap(), DEFAULT_TOML);
    }

    #[test]
    fn import_is_validated_whole_and_export_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let (store, path) = store_in(dir.path());
        let exported = store.export(false);
        assert!(exported.contains(SECRET_MASK) && !exported.contains("change-me"));
        assert_eq!(store.export(true), DEFAULT_TOML);
        // A truncated document, bytes that are not UTF-8 and an invalid one:
        // refused whole, nothing changed.
        let truncated = &DEFAULT_TOML.as_bytes()[..DEFAULT_TOML.find("[[fxs]]").unwrap() + 4];
        assert!(matches!(store.import(truncated), Err(StoreError::Syntax { .. })));
        let mut bad = exported.clone().into_bytes();
        bad.extend_from_slice(b"\n# \xff\xfe\n");
        assert!(matches!(store.import(&bad), Err(StoreError::Syntax { message, .. }) if message == "not UTF-8 text"));
        let invalid = exported.replace("ptime_ms = 20", "ptime_ms = 25");
        assert!(matches!(store.import(invalid.as_bytes()), Err(StoreError::Invalid { field, .. }) if field == "media.ptime_ms"));
        assert_eq!(store.import(exported.as_bytes()).unwrap_err(), StoreError::Unchanged);
        assert_eq!(fs::read_to_string(&path).unwrap(), DEFAULT_TOML);
        assert!(store.versions().is_empty());
        // An edited export: masked secrets keep their values.
        let edited = exported.replace("register_expires = 300", "register_expires = 120");
        store.import(edited.as_bytes()).unwrap();
        let saved = Config::load(&path, 4).unwrap();
        assert_eq!((saved.sip.register_expires, saved.sip.password.as_str()), (120, "change-me"));
        let e = store.candidate_from_text("[sip]\nproxy = \n").unwrap_err();
        assert!(matches!(e, StoreError::Syntax { line: 2, .. }), "{e:?}");
    }

    #[test]
    fn factory_reset_writes_the_default_with_fresh_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let (store, path) = store_in(dir.path());
        let mut c = store.candidate();
        c.set("sip.register_expires", "120").unwrap();
        store.commit(&c).unwrap();
        let store = reload(&path);
        let (saved, fresh) = store.factory_reset().unwrap();
        assert_eq!(fresh.len(), 1, "{fresh:?}");
        assert_eq!(fresh[0].0, "sip.password");
        let cfg = Config::load(&path, 4).unwrap();
        assert_eq!(cfg.sip.password, fresh[0].1);
        assert_ne!(cfg.sip.password, "change-me");
        assert_eq!(cfg.sip.register_expires, 300);
        assert!(fs::read_to_string(&path).unwrap().starts_with("# gatewayd configuration: the embedded default"));
        assert!(fs::read_to_string(&saved.previous).unwrap().contains("register_expires = 120"), "undoable");
        let (_, again) = reload(&path).factory_reset().unwrap();
        assert_ne!(again[0].1, fresh[0].1, "fresh each time");
    }

    #[test]
    fn secrets_are_masked_in_show_and_diff() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store_in(dir.path());
        assert!(!store.show_running().contains("change-me"));
        assert!(store.show_running().contains(&format!("password = \"{SECRET_MASK}\"")));
        let mut c = store.candidate();
        c.set("fxs[0].password", "\"n3w-secret\"").unwrap();
        assert!(!c.show().contains("n3w-secret"));
        assert!(store.diff(&c).iter().all(|l| !l.contains("n3w-secret")), "{:?}", store.diff(&c));
        assert!(is_secret("management.web_password") && is_secret("fxs[0].password") && !is_secret("sip.proxy"));
    }

    #[test]
    fn without_a_file_nothing_can_be_saved_and_that_is_said_first() {
        let store = ConfigStore::new(None, 4, Config::default_sim());
        assert_eq!(store.can_save(), Err(StoreError::NoFile));
        let mut c = store.candidate();
        assert_eq!(c.text(), DEFAULT_TOML, "the embedded default's own text");
        c.set("sip.register_expires", "120").unwrap();
        assert_eq!(store.commit(&c).unwrap_err(), StoreError::NoFile);
        assert!(store.commit(&c).unwrap_err().to_string().contains("--config FILE"));
        assert_eq!(store.rollback(1).unwrap_err(), StoreError::NoFile);
        assert_eq!(store.factory_reset().unwrap_err(), StoreError::NoFile);
        assert!(store.versions().is_empty());
    }

    #[test]
    fn a_change_that_fails_to_start_is_undone_once() {
        let dir = tempfile::tempdir().unwrap();
        let (store, path) = store_in(dir.path());
        assert_eq!(recover_failed_change(&path), Ok(false), "nothing pending at first start");
        let mut c = store.candidate();
        c.set("management.http_listen", "\"127.0.0.1:1\"").unwrap();
        store.commit(&c).unwrap();
        assert!(suffixed(&path, ".pending").exists());
        let committed = fs::read_to_string(&path).unwrap();
        // gatewayd could not start with it: back to the previous file.
        assert_eq!(recover_failed_change(&path), Ok(true));
        assert_eq!(fs::read_to_string(&path).unwrap(), DEFAULT_TOML);
        assert_eq!(fs::read_to_string(suffixed(&path, ".failed")).unwrap(), committed);
        assert!(!suffixed(&path, ".pending").exists());
        assert_eq!(recover_failed_change(&path), Ok(false), "a second failure is not undone again");
        // A change that starts is confirmed: nothing to undo later.
        store.commit(&c).unwrap();
        confirm(&path);
        assert_eq!(recover_failed_change(&path), Ok(false));
        assert_eq!(fs::read_to_string(&path).unwrap(), committed);
    }
}
