//! Configuration editing: a candidate edited key by key, validated whole,
//! saved atomically with the previous file kept for rollback.
//!
//! The installer edits a *candidate* (a copy of the running configuration as
//! a TOML table) with `set`/`unset`; nothing runs with it until `commit`.
//! A commit parses and validates the whole candidate exactly as a start-up
//! would ([`Config::from_toml`]); a refusal names the field and the reason
//! and changes nothing. An accepted candidate replaces the configuration file
//! atomically (write to a temporary file, fsync, rename), the file it
//! replaces is kept as `<file>.prev`, and the caller restarts gatewayd so the
//! whole configuration takes effect at once (no half-applied change).
//! `rollback` swaps the two files back, under the same checks.
//!
//! The file is rewritten from the table, so comments in a hand-written file
//! do not survive a commit (the `.prev` file keeps them).
//!
//! A configuration can be valid and still fail to start (an address taken
//! by another process, an interface gone). Commit and rollback therefore
//! leave a `<file>.pending` marker; gatewayd removes it ([`confirm`]) once
//! the new configuration is up. If it fails to start while the marker is
//! there, [`recover_failed_change`] puts the previous file back (the failed
//! one is kept as `<file>.failed`) and gatewayd starts again with it, so a
//! bad change cannot leave the box down.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
#[cfg(test)]
use std::sync::Arc;

use crate::config::Config;

/// What `show` prints in place of a secret.
pub const SECRET_MASK: &str = "********";

/// The running configuration and where it is saved.
#[derive(Debug)]
pub struct ConfigStore {
    /// `None`: running from the embedded default; nothing can be saved.
    path: Option<PathBuf>,
    board_ports: usize,
    running: Config,
}

/// A configuration being edited (one per console session).
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    table: toml::Table,
}

/// What a successful commit or rollback did.
#[derive(Debug, Clone, PartialEq)]
pub struct Saved {
    pub path: PathBuf,
    pub previous: PathBuf,
    /// The configuration now in the file (validated).
    pub config: Config,
}

impl ConfigStore {
    pub fn new(path: Option<PathBuf>, board_ports: usize, running: Config) -> Self {
        ConfigStore { path, board_ports, running }
    }

    pub fn running(&self) -> &Config {
        &self.running
    }

    /// The configuration now running, after a change applied without a
    /// restart.
    pub fn set_running(&mut self, config: Config) {
        self.running = config;
    }

    /// The running configuration as TOML, secrets masked.
    pub fn show_running(&self) -> String {
        show(&to_table(&self.running))
    }

    /// A candidate starting from the running configuration.
    pub fn candidate(&self) -> Candidate {
        Candidate { table: to_table(&self.running) }
    }

    /// A candidate from a whole TOML document (the web UI's form). Secrets
    /// left as [`SECRET_MASK`] (as `show` printed them) keep their running
    /// values, so the masked text can be edited and sent back.
    pub fn candidate_from_text(&self, text: &str) -> Result<Candidate, String> {
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let line = e.span().map(|s| text[..s.start.min(text.len())].lines().count().max(1)).unwrap_or(1);
            format!("line {line}: {}", e.message())
        })?;
        unmask(&mut table, &to_table(&self.running));
        Ok(Candidate { table })
    }

    /// The changes `candidate` makes to the running configuration, one line
    /// per key: `- path = old` / `+ path = new` (secrets masked).
    pub fn diff(&self, candidate: &Candidate) -> Vec<String> {
        let mut before = Vec::new();
        flatten("", &toml::Value::Table(to_table(&self.running)), &mut before);
        let mut after = Vec::new();
        flatten("", &toml::Value::Table(candidate.table.clone()), &mut after);
        let mut out = Vec::new();
        for (k, v) in &before {
            match after.iter().find(|(k2, _)| k2 == k) {
                Some((_, v2)) if v2 == v => {}
                Some((_, v2)) => {
                    out.push(format!("- {k} = {}", shown(k, v)));
                    out.push(format!("+ {k} = {}", shown(k, v2)));
                }
                None => out.push(format!("- {k} = {}", shown(k, v))),
            }
        }
        for (k, v) in &after {
            if !before.iter().any(|(k2, _)| k2 == k) {
                out.push(format!("+ {k} = {}", shown(k, v)));
            }
        }
        out
    }

    /// Validates `candidate` whole and, if it is good and differs from the
    /// running configuration, saves it (the old file kept as `.prev`).
    /// The caller restarts gatewayd to apply it. On any error nothing changed.
    pub fn commit(&self, candidate: &Candidate) -> Result<Saved, String> {
        let path = self.path.as_ref().ok_or_else(no_file)?;
        let text = toml::to_string(&candidate.table).map_err(|e| format!("cannot write the candidate: {e}"))?;
        let config = Config::from_toml(&text, self.board_ports).map_err(|e| format!("refused, nothing changed: {e}"))?;
        if config == self.running {
            return Err("nothing to commit: the candidate is the running configuration".into());
        }
        let header = "# Written by gatewayd `config commit`; the file it replaced is kept as .prev.\n";
        let previous = prev_path(path);
        let current = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        write_atomically(&previous, &current)?;
        write_atomically(&suffixed(path, ".pending"), b"")?;
        write_atomically(path, format!("{header}{text}").as_bytes())?;
        Ok(Saved { path: path.clone(), previous, config })
    }

    /// Swaps the configuration file and `.prev`, if `.prev` is a valid
    /// configuration. The caller restarts gatewayd to apply it.
    pub fn rollback(&self) -> Result<Saved, String> {
        let path = self.path.as_ref().ok_or_else(no_file)?;
        let previous = prev_path(path);
        let old = fs::read(&previous).map_err(|_| format!("no previous configuration ({})", previous.display()))?;
        let old_text = String::from_utf8(old.clone()).map_err(|_| "the previous configuration is not UTF-8".to_string())?;
        let config = Config::from_toml(&old_text, self.board_ports)
            .map_err(|e| format!("the previous configuration is not valid, nothing changed: {e}"))?;
        let current = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        write_atomically(&previous, &current)?;
        write_atomically(&suffixed(path, ".pending"), b"")?;
        write_atomically(path, &old)?;
        Ok(Saved { path: path.clone(), previous, config })
    }
}

/// The configuration at `path` is up: a change to it is no longer pending.
pub fn confirm(path: &Path) {
    let _ = fs::remove_file(suffixed(path, ".pending"));
}

/// Called when gatewayd cannot start with the configuration at `path`. If
/// that configuration is a pending change, puts the previous file back (the
/// failed one kept as `.failed`), clears the marker and returns `Ok(true)`:
/// start again. `Ok(false)`: no change was pending, nothing to undo.
pub fn recover_failed_change(path: &Path) -> Result<bool, String> {
    let pending = suffixed(path, ".pending");
    if !pending.exists() {
        return Ok(false);
    }
    // The marker goes first: whatever happens next, this never loops.
    fs::remove_file(&pending).map_err(|e| format!("cannot remove {}: {e}", pending.display()))?;
    let previous = prev_path(path);
    let old = fs::read(&previous).map_err(|e| format!("no previous configuration to go back to: {e}"))?;
    let failed = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    write_atomically(&suffixed(path, ".failed"), &failed)?;
    write_atomically(path, &old)?;
    Ok(true)
}

impl Candidate {
    /// Sets `path` (`section.key`, `fxs[1].number`) to `value`, a TOML value
    /// (`120`, `true`, `"text"`, `["PCMU"]`, `{ port = 5, number = "1005" }`);
    /// a bare word is taken as a string. The value must have the type of the
    /// one it replaces. The whole candidate is only checked at commit.
    pub fn set(&mut self, path: &str, value: &str) -> Result<(), String> {
        let segs = parse_path(path)?;
        let mut new = parse_value(value);
        if new.as_str() == Some(SECRET_MASK) {
            return Err(format!("{path}: that is the mask shown for secrets, not a value"));
        }
        let (last, parents) = segs.split_last().ok_or_else(|| "empty path".to_string())?;
        let parent = walk(&mut self.table, parents, path)?;
        match (parent, last) {
            (Slot::Table(t), Seg::Key(k)) => {
                if let Some(old) = t.get(k) {
                    // A number typed bare where text is expected is text.
                    if old.is_str() && !matches!(new, toml::Value::Array(_) | toml::Value::Table(_)) {
                        new = toml::Value::String(unquoted(value));
                    }
                    same_type(path, old, &new)?;
                }
                t.insert(k.clone(), new);
            }
            (Slot::Array(a), Seg::Index(i)) => {
                if let Some(old) = a.get(*i) {
                    same_type(path, old, &new)?;
                    a[*i] = new;
                } else if *i == a.len() {
                    if let Some(first) = a.first() {
                        same_type(path, first, &new)?;
                    }
                    a.push(new);
                } else {
                    return Err(format!("{path}: index {i} is past the end (length {})", a.len()));
                }
            }
            (Slot::Table(_), Seg::Index(_)) => return Err(format!("{path}: not a list")),
            (Slot::Array(_), Seg::Key(_)) => return Err(format!("{path}: a list needs an index, e.g. [0]")),
        }
        Ok(())
    }

    /// Removes `path` (the key's default applies, or an array element goes).
    pub fn unset(&mut self, path: &str) -> Result<(), String> {
        let segs = parse_path(path)?;
        let (last, parents) = segs.split_last().ok_or_else(|| "empty path".to_string())?;
        match (walk(&mut self.table, parents, path)?, last) {
            (Slot::Table(t), Seg::Key(k)) => t.remove(k).map(|_| ()).ok_or_else(|| format!("{path}: not set")),
            (Slot::Array(a), Seg::Index(i)) if *i < a.len() => {
                a.remove(*i);
                Ok(())
            }
            _ => Err(format!("{path}: not set")),
        }
    }

    /// The candidate as TOML, secrets masked.
    pub fn show(&self) -> String {
        show(&self.table)
    }
}

fn no_file() -> String {
    "running from the embedded default: start gatewayd with --config FILE to save changes".into()
}

fn prev_path(path: &Path) -> PathBuf {
    suffixed(path, ".prev")
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Writes `bytes` to a temporary file next to `path`, syncs it and renames
/// it over `path`: a reader (or a power cut) sees the old or the new file,
/// never a mix.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let err = |e: std::io::Error| format!("cannot save {}: {e}", path.display());
    let mut f = fs::File::create(&tmp).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    fs::rename(&tmp, path).map_err(err)?;
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

fn mask(table: &toml::Table) -> toml::Table {
    table
        .iter()
        .map(|(k, v)| {
            let v = match v {
                toml::Value::String(_) if is_secret(k) => toml::Value::String(SECRET_MASK.into()),
                toml::Value::Table(t) => toml::Value::Table(mask(t)),
                toml::Value::Array(a) => toml::Value::Array(
                    a.iter()
                        .map(|e| match e {
                            toml::Value::Table(t) => toml::Value::Table(mask(t)),
                            other => other.clone(),
                        })
                        .collect(),
                ),
                other => other.clone(),
            };
            (k.clone(), v)
        })
        .collect()
}

/// Puts back `running`'s value wherever `table` holds the mask of a secret.
fn unmask(table: &mut toml::Table, running: &toml::Table) {
    for (k, v) in table.iter_mut() {
        match v {
            toml::Value::String(s) if is_secret(k) && s == SECRET_MASK => {
                if let Some(r) = running.get(k) {
                    *v = r.clone();
                }
            }
            toml::Value::Table(t) => {
                if let Some(toml::Value::Table(r)) = running.get(k) {
                    unmask(t, r);
                }
            }
            toml::Value::Array(a) => {
                if let Some(toml::Value::Array(r)) = running.get(k) {
                    for (e, re) in a.iter_mut().zip(r) {
                        if let (toml::Value::Table(t), toml::Value::Table(rt)) = (e, re) {
                            unmask(t, rt);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

fn show(table: &toml::Table) -> String {
    toml::to_string(&mask(table)).unwrap_or_else(|e| format!("(cannot show: {e})\n"))
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
                let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&p, v, out);
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

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn parse_path(path: &str) -> Result<Vec<Seg>, String> {
    let bad = || format!("{path:?}: not a configuration path (e.g. sip.register_expires, fxs[0].number)");
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

fn parse_value(value: &str) -> toml::Value {
    let value = value.trim();
    toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()))
}

/// `value` as text: the TOML string if it is one, else the trimmed input.
fn unquoted(value: &str) -> String {
    match parse_value(value) {
        toml::Value::String(s) => s,
        _ => value.trim().to_string(),
    }
}

fn same_type(path: &str, old: &toml::Value, new: &toml::Value) -> Result<(), String> {
    use toml::Value::*;
    let ok = matches!(
        (old, new),
        (String(_), String(_))
            | (Integer(_), Integer(_))
            | (Float(_), Float(_) | Integer(_))
            | (Boolean(_), Boolean(_))
            | (Array(_), Array(_))
            | (Table(_), Table(_))
    );
    if ok {
        Ok(())
    } else {
        Err(format!("{path}: expected {}, got {new}", old.type_str()))
    }
}

enum Slot<'a> {
    Table(&'a mut toml::Table),
    Array(&'a mut Vec<toml::Value>),
}

fn walk<'a>(root: &'a mut toml::Table, segs: &[Seg], path: &str) -> Result<Slot<'a>, String> {
    let mut slot = Slot::Table(root);
    for seg in segs {
        let next = match (slot, seg) {
            (Slot::Table(t), Seg::Key(k)) => t.get_mut(k),
            (Slot::Array(a), Seg::Index(i)) => a.get_mut(*i),
            _ => None,
        };
        slot = match next {
            Some(toml::Value::Table(t)) => Slot::Table(t),
            Some(toml::Value::Array(a)) => Slot::Array(a),
            _ => return Err(format!("{path}: no such section")),
        };
    }
    Ok(slot)
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
    use crate::config::DEFAULT_TOML;

    fn store_in(dir: &Path) -> (ConfigStore, PathBuf) {
        let path = dir.join("gw.toml");
        fs::write(&path, DEFAULT_TOML).unwrap();
        let running = Config::load(&path, 4).unwrap();
        (ConfigStore::new(Some(path.clone()), 4, running), path)
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

        // After the restart the store runs the new file; rollback swaps back.
        let store = ConfigStore::new(Some(path.clone()), 4, now);
        store.rollback().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), DEFAULT_TOML);
        assert_eq!(Config::load(&saved.previous, 4).unwrap().sip.register_expires, 120);
    }

    #[test]
    fn invalid_candidate_is_refused_and_nothing_changes() {
        let dir = tempfile::tempdir().unwrap();
        let (store, path) = store_in(dir.path());
        let mut c = store.candidate();
        c.set("media.ptime_ms", "25").unwrap();
        let e = store.commit(&c).unwrap_err();
        assert!(e.contains("media.ptime_ms") && e.contains("must be 10, 20"), "{e}");
        assert_eq!(fs::read_to_string(&path).unwrap(), DEFAULT_TOML);
        assert!(!prev_path(&path).exists());
        // Two ports with one number: a whole-document rule.
        let mut c = store.candidate();
        c.set("fxs[1].number", "1001").unwrap();
        assert!(store.commit(&c).unwrap_err().contains("fxs[1].number"));
        // An unknown key is refused at commit with its name.
        let mut c = store.candidate();
        c.set("sip.passwd", "x").unwrap();
        assert!(store.commit(&c).unwrap_err().contains("passwd"));
        assert_eq!(store.commit(&store.candidate()).unwrap_err(), "nothing to commit: the candidate is the running configuration");
    }

    #[test]
    fn set_checks_paths_and_types() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store_in(dir.path());
        let mut c = store.candidate();
        let before = c.clone();
        assert_eq!(c.set("sip.register_expires", "soon").unwrap_err(), "sip.register_expires: expected integer, got \"soon\"");
        assert!(c.set("media.echo_canceller", "1").unwrap_err().contains("expected boolean"));
        assert!(c.set("nosuch.key", "1").unwrap_err().contains("no such section"));
        assert!(c.set("fxs[9].number", "1").unwrap_err().contains("no such section"));
        assert!(c.set("fxs[4]", "{ port = 5 }").is_ok(), "appending an element");
        assert!(c.set("fxs[7]", "{ port = 8 }").unwrap_err().contains("past the end"));
        assert!(c.set("sip..x", "1").unwrap_err().contains("not a configuration path"));
        assert!(c.set("fxs[x].number", "1").unwrap_err().contains("not a configuration path"));
        assert!(c.set("sip.password", SECRET_MASK).unwrap_err().contains("mask"));
        c.unset("fxs[4]").unwrap();
        assert_eq!(c, before, "refused edits left the candidate as it was");
        // Strings may be bare or quoted; floats accept integers.
        c.set("sip.user_agent", "gw 2").unwrap();
        c.set("caller_id.level_dbm0", "-10").unwrap();
        c.set("media.codecs", "[\"PCMA\"]").unwrap();
        let text = toml::to_string(&c.table).unwrap();
        let cfg = Config::from_toml(&text, 4).unwrap();
        assert_eq!((cfg.sip.user_agent.as_str(), cfg.caller_id.level_dbm0), ("gw 2", -10.0));
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
    }

    #[test]
    fn a_whole_document_keeps_masked_secrets_and_reports_syntax_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (store, path) = store_in(dir.path());
        let edited = store.show_running().replace("register_expires = 300", "register_expires = 120");
        let c = store.candidate_from_text(&edited).unwrap();
        store.commit(&c).unwrap();
        let saved = Config::load(&path, 4).unwrap();
        assert_eq!(saved.sip.register_expires, 120);
        assert_eq!(saved.sip.password, "change-me", "the masked password kept its value");
        let e = store.candidate_from_text("[sip]\nproxy = \n").unwrap_err();
        assert!(e.starts_with("line 2"), "{e}");
        assert!(is_secret("management.web_password") && is_secret("fxs[0].password") && !is_secret("sip.proxy"));
    }

    #[test]
    fn without_a_file_nothing_can_be_saved() {
        let store = ConfigStore::new(None, 4, Config::default_sim());
        let mut c = store.candidate();
        c.set("sip.register_expires", "120").unwrap();
        assert!(store.commit(&c).unwrap_err().contains("--config FILE"));
        assert!(store.rollback().unwrap_err().contains("--config FILE"));
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

    #[test]
    fn rollback_needs_a_valid_previous_file() {
        let dir = tempfile::tempdir().unwrap();
        let (store, path) = store_in(dir.path());
        assert!(store.rollback().unwrap_err().contains("no previous configuration"));
        fs::write(prev_path(&path), "[system]\ncountry = \"XX\"\n").unwrap();
        let e = store.rollback().unwrap_err();
        assert!(e.contains("not valid"), "{e}");
        assert_eq!(fs::read_to_string(&path).unwrap(), DEFAULT_TOML);
    }
}
