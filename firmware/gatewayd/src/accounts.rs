//! The management accounts: who may log in to the web UI and the console,
//! with which role, and the brakes on guessing.
//!
//! # API
//!
//! - [`Accounts::open`]`(path)`: loads `accounts.toml` (next to the
//!   configuration), or on first start creates it with one `admin` account
//!   whose **initial password** is drawn from the OS random source
//!   ([`generate_password`]) and returned once as [`Opened::initial_password`]
//!   for the start-up banner; only its argon2 hash is stored, and the account
//!   is flagged `must_change`. [`Accounts::in_memory`] does the same without
//!   a file (gatewayd on the embedded default configuration).
//! - [`Accounts::verify`]`(user, password, from, now)`: `Ok(`[`Login`]`)` with
//!   the role and the `must_change` flag, or an [`AuthError`]. Failed and
//!   successful attempts are logged (never the password). Rate limiting: per
//!   source address and per user name, the first [`FREE_FAILURES`] failures
//!   cost nothing, each further one doubles a back-off (1 s, 2 s, 4 s ...,
//!   capped at [`MAX_BACKOFF`]) during which every attempt from that address
//!   or for that user is refused *without checking the password*
//!   ([`AuthError::RateLimited`]). A success clears the address's and the
//!   user's record; a record with no failure for [`FORGET_AFTER`] is dropped.
//!   The tables are bounded ([`MAX_TRACKED`]).
//! - [`Accounts::change_password`]`(user, old, new, from, now)`: the user's
//!   own change (needs the old password, clears `must_change`);
//!   [`Accounts::set_password`], [`Accounts::add`], [`Accounts::remove`]:
//!   an admin's changes. Every change is saved before it returns `Ok`, by an
//!   atomic replace (temporary file, fsync, rename, fsync of the directory):
//!   a crash leaves the old or the new file, never a mix.
//!
//! `now` is an input (a monotonic [`Instant`]): nothing here reads the clock,
//! so the limiter is tested in virtual time. Hashing is deliberately slow
//! (argon2id, 19 MiB, 2 passes): callers on an async runtime run `verify`
//! and the password changes in `spawn_blocking`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

/// Failures per address or user that cost nothing (typos).
pub const FREE_FAILURES: u32 = 3;
/// The longest back-off after repeated failures.
pub const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// A failure record this old (since its last failure) is forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);
/// At most this many addresses and as many user names are tracked; the
/// oldest record goes first when full.
pub const MAX_TRACKED: usize = 4096;
/// Password length bounds (characters).
pub const MIN_PASSWORD: usize = 8;
pub const MAX_PASSWORD: usize = 128;
/// The user created on first start.
pub const FIRST_USER: &str = "admin";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Views and changes everything, manages accounts.
    Admin,
    /// Views; every change is refused.
    ReadOnly,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::ReadOnly => "read-only",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "read-only" => Some(Role::ReadOnly),
            _ => None,
        }
    }
    pub fn may_change(self) -> bool {
        self == Role::Admin
    }
}

/// One stored account. `hash` is an argon2 PHC string.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub name: String,
    pub role: Role,
    pub hash: String,
    #[serde(default)]
    pub must_change: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    #[serde(default, rename = "account")]
    accounts: Vec<Account>,
}

/// A successful verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Login {
    pub user: String,
    pub role: Role,
    /// The password is the initial one (or was reset by an admin): nothing
    /// but the password change is allowed until it is changed.
    pub must_change: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// Unknown user or wrong password (deliberately the same answer).
    Denied,
    /// Too many failures from this address or for this user: try again
    /// after `retry_after`. The password was not checked.
    RateLimited { retry_after: Duration },
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::Denied => f.write_str("wrong user name or password"),
            AuthError::RateLimited { retry_after } => {
                write!(f, "too many failed logins: try again in {} s", retry_after.as_secs().max(1))
            }
        }
    }
}

/// Why a change to the accounts was refused (nothing changed), or could not
/// be saved (nothing changed either: the file and the memory agree).
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AccountError {
    Auth(AuthError),
    /// The new password breaks the policy (the reason in words).
    WeakPassword(&'static str),
    /// User names: 1-32 of `a-z 0-9 . _ -`, starting with a letter.
    BadName,
    Exists,
    NoSuchUser,
    /// The last admin cannot be removed or demoted.
    LastAdmin,
    /// The file could not be written (the change was not made).
    Save(String),
    /// The file could not be read or parsed.
    Load(String),
}

impl fmt::Display for AccountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccountError::Auth(e) => e.fmt(f),
            AccountError::WeakPassword(why) => write!(f, "password refused: {why}"),
            AccountError::BadName => f.write_str("user names are 1-32 characters of a-z 0-9 . _ - starting with a letter"),
            AccountError::Exists => f.write_str("that user exists already"),
            AccountError::NoSuchUser => f.write_str("no such user"),
            AccountError::LastAdmin => f.write_str("the last admin account cannot be removed or demoted"),
            AccountError::Save(e) => write!(f, "cannot save the accounts: {e}"),
            AccountError::Load(e) => write!(f, "cannot read the accounts: {e}"),
        }
    }
}

impl From<AuthError> for AccountError {
    fn from(e: AuthError) -> Self {
        AccountError::Auth(e)
    }
}

/// What [`Accounts::open`] found.
pub struct Opened {
    pub accounts: Accounts,
    /// Set on first start only: the admin's initial password, to show once.
    pub initial_password: Option<String>,
}

#[derive(Clone, Copy, Debug)]
struct Record {
    failures: u32,
    last_failure: Instant,
    blocked_until: Option<Instant>,
}

/// Failure records keyed by address or by user name, bounded.
#[derive(Debug)]
struct Limiter<K> {
    records: HashMap<K, Record>,
}

impl<K: std::hash::Hash + Eq + Clone> Limiter<K> {
    fn new() -> Self {
        Limiter { records: HashMap::new() }
    }

    /// `Some(wait)` while `key` is backed off.
    fn blocked(&mut self, key: &K, now: Instant) -> Option<Duration> {
        let r = self.records.get(key)?;
        if now.saturating_duration_since(r.last_failure) >= FORGET_AFTER {
            self.records.remove(key);
            return None;
        }
        r.blocked_until.and_then(|until| until.checked_duration_since(now)).filter(|d| !d.is_zero())
    }

    fn fail(&mut self, key: &K, now: Instant) {
        if !self.records.contains_key(key) && self.records.len() >= MAX_TRACKED {
            self.records.retain(|_, r| now.saturating_duration_since(r.last_failure) < FORGET_AFTER);
            if self.records.len() >= MAX_TRACKED {
                if let Some(oldest) = self.records.iter().min_by_key(|(_, r)| r.last_failure).map(|(k, _)| k.clone()) {
                    self.records.remove(&oldest);
                }
            }
        }
        let r = self.records.entry(key.clone()).or_insert(Record { failures: 0, last_failure: now, blocked_until: None });
        r.failures = r.failures.saturating_add(1);
        r.last_failure = now;
        if r.failures > FREE_FAILURES {
            let doublings = (r.failures - FREE_FAILURES - 1).min(20);
            let backoff = Duration::from_secs(1u64 << doublings).min(MAX_BACKOFF);
            r.blocked_until = Some(now + backoff);
        }
    }

    fn clear(&mut self, key: &K) {
        self.records.remove(key);
    }
}

/// The accounts and the login limiter. Not `Sync`-shared by itself: the
/// caller keeps it behind a mutex.
pub struct Accounts {
    path: Option<PathBuf>,
    users: BTreeMap<String, Account>,
    by_addr: Limiter<IpAddr>,
    by_user: Limiter<String>,
    hasher: Argon2<'static>,
    /// A hash of a random password, verified against for an unknown user
    /// so that the answer takes as long as for a known one.
    dummy: String,
}

impl fmt::Debug for Accounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Accounts").field("path", &self.path).field("users", &self.users.keys().collect::<Vec<_>>()).finish()
    }
}

/// 16 characters from a 32-letter alphabet without look-alikes (80 bits),
/// from the OS random source, in groups of four for reading off a console.
pub fn generate_password() -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghjkmnpqrstuvwxyz23456789_";
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).expect("the OS random source");
    let mut out = String::with_capacity(19);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        out.push(ALPHABET[usize::from(b & 31)] as char);
    }
    out
}

/// The password policy: length only (NIST SP 800-63B 5.1.1), plus not the
/// user's name.
pub fn check_password(user: &str, password: &str) -> Result<(), AccountError> {
    let n = password.chars().count();
    if n < MIN_PASSWORD {
        return Err(AccountError::WeakPassword("at least 8 characters"));
    }
    if n > MAX_PASSWORD {
        return Err(AccountError::WeakPassword("at most 128 characters"));
    }
    if password.chars().any(char::is_control) {
        return Err(AccountError::WeakPassword("no control characters"));
    }
    if password.eq_ignore_ascii_case(user) {
        return Err(AccountError::WeakPassword("not the user name"));
    }
    Ok(())
}

pub fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

impl Accounts {
    /// Loads the accounts at `path`, or creates the file with a first admin
    /// and a fresh initial password.
    pub fn open(path: &Path) -> Result<Opened, AccountError> {
        Self::open_with(path, Argon2::default())
    }

    /// Accounts kept in memory only (no configuration file to sit next to):
    /// a new initial password at every start.
    pub fn in_memory() -> Opened {
        Self::create(None, Argon2::default()).expect("nothing to save")
    }

    fn open_with(path: &Path, hasher: Argon2<'static>) -> Result<Opened, AccountError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let file: File = toml::from_str(&text).map_err(|e| AccountError::Load(format!("{}: {e}", path.display())))?;
                let mut users = BTreeMap::new();
                for a in file.accounts {
                    if !valid_name(&a.name) || PasswordHash::new(&a.hash).is_err() {
                        return Err(AccountError::Load(format!("{}: account '{}' is malformed", path.display(), a.name)));
                    }
                    users.insert(a.name.clone(), a);
                }
                if !users.values().any(|a| a.role == Role::Admin) {
                    return Err(AccountError::Load(format!("{}: no admin account", path.display())));
                }
                let accounts = Self::with(Some(path.to_path_buf()), users, hasher);
                Ok(Opened { accounts, initial_password: None })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(Some(path.to_path_buf()), hasher),
            Err(e) => Err(AccountError::Load(format!("{}: {e}", path.display()))),
        }
    }

    fn create(path: Option<PathBuf>, hasher: Argon2<'static>) -> Result<Opened, AccountError> {
        let password = generate_password();
        let mut accounts = Self::with(path, BTreeMap::new(), hasher);
        let hash = accounts.hash(&password);
        accounts.users.insert(
            FIRST_USER.into(),
            Account { name: FIRST_USER.into(), role: Role::Admin, hash, must_change: true },
        );
        accounts.save()?;
        info!(user = FIRST_USER, "accounts created with a per-device initial password (to be changed at first login)");
        Ok(Opened { accounts, initial_password: Some(password) })
    }

    fn with(path: Option<PathBuf>, users: BTreeMap<String, Account>, hasher: Argon2<'static>) -> Self {
        let mut a = Accounts {
            path,
            users,
            by_addr: Limiter::new(),
            by_user: Limiter::new(),
            hasher,
            dummy: String::new(),
        };
        a.dummy = a.hash(&generate_password());
        a
    }

    fn hash(&self, password: &str) -> String {
        let mut salt = [0u8; 16];
        getrandom::getrandom(&mut salt).expect("the OS random source");
        let salt = SaltString::encode_b64(&salt).expect("16 bytes fit a salt");
        self.hasher.hash_password(password.as_bytes(), &salt).expect("argon2 with valid parameters").to_string()
    }

    fn matches(&self, hash: &str, password: &str) -> bool {
        PasswordHash::new(hash).is_ok_and(|h| self.hasher.verify_password(password.as_bytes(), &h).is_ok())
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The accounts, by name (hashes included: do not show them).
    pub fn list(&self) -> impl Iterator<Item = &Account> {
        self.users.values()
    }

    pub fn role(&self, user: &str) -> Option<Role> {
        self.users.get(user).map(|a| a.role)
    }

    pub fn must_change(&self, user: &str) -> bool {
        self.users.get(user).is_some_and(|a| a.must_change)
    }

    /// Checks `user`'s password, within the rate limits (module docs).
    pub fn verify(&mut self, user: &str, password: &str, from: IpAddr, now: Instant) -> Result<Login, AuthError> {
        let user_key = user.to_string();
        let wait = self.by_addr.blocked(&from, now).max(self.by_user.blocked(&user_key, now));
        if let Some(retry_after) = wait {
            warn!(user = %user.escape_debug(), %from, "login refused: rate limited");
            return Err(AuthError::RateLimited { retry_after });
        }
        let ok = match self.users.get(user) {
            Some(a) => self.matches(&a.hash, password),
            None => {
                let _ = self.matches(&self.dummy, password);
                false
            }
        };
        if !ok {
            self.by_addr.fail(&from, now);
            // Only known names are tracked per user: a flood of invented
            // names cannot crowd out the real ones.
            if self.users.contains_key(user) {
                self.by_user.fail(&user_key, now);
            }
            warn!(user = %user.escape_debug(), %from, "login failed");
            return Err(AuthError::Denied);
        }
        self.by_addr.clear(&from);
        self.by_user.clear(&user_key);
        let a = &self.users[user];
        info!(user, %from, role = a.role.as_str(), must_change = a.must_change, "login");
        Ok(Login { user: user.to_string(), role: a.role, must_change: a.must_change })
    }

    /// The user's own password change: the old password is verified (rate
    /// limited like a login), the new one must differ and pass the policy.
    pub fn change_password(
        &mut self,
        user: &str,
        old: &str,
        new: &str,
        from: IpAddr,
        now: Instant,
    ) -> Result<(), AccountError> {
        self.verify(user, old, from, now)?;
        check_password(user, new)?;
        if old == new {
            return Err(AccountError::WeakPassword("not the old password"));
        }
        self.update(user, |a, hash| {
            a.hash = hash;
            a.must_change = false;
        }, new)?;
        info!(user, %from, "password changed");
        Ok(())
    }

    /// An admin sets `user`'s password; `user` must change it at their next
    /// login unless it is the admin's own account.
    pub fn set_password(&mut self, user: &str, new: &str, must_change: bool) -> Result<(), AccountError> {
        check_password(user, new)?;
        self.update(user, |a, hash| {
            a.hash = hash;
            a.must_change = must_change;
        }, new)
    }

    pub fn add(&mut self, name: &str, role: Role, password: &str) -> Result<(), AccountError> {
        if !valid_name(name) {
            return Err(AccountError::BadName);
        }
        if self.users.contains_key(name) {
            return Err(AccountError::Exists);
        }
        check_password(name, password)?;
        let hash = self.hash(password);
        self.users.insert(name.into(), Account { name: name.into(), role, hash, must_change: true });
        if let Err(e) = self.save() {
            self.users.remove(name);
            return Err(e);
        }
        Ok(())
    }

    pub fn remove(&mut self, name: &str) -> Result<(), AccountError> {
        let Some(a) = self.users.get(name) else { return Err(AccountError::NoSuchUser) };
        if a.role == Role::Admin && self.users.values().filter(|a| a.role == Role::Admin).count() == 1 {
            return Err(AccountError::LastAdmin);
        }
        let old = self.users.remove(name).expect("just seen");
        if let Err(e) = self.save() {
            self.users.insert(name.into(), old);
            return Err(e);
        }
        Ok(())
    }

    fn update(&mut self, user: &str, f: impl FnOnce(&mut Account, String), password: &str) -> Result<(), AccountError> {
        if !self.users.contains_key(user) {
            return Err(AccountError::NoSuchUser);
        }
        let hash = self.hash(password);
        let a = self.users.get_mut(user).expect("checked");
        let old = a.clone();
        f(a, hash);
        if let Err(e) = self.save() {
            self.users.insert(user.into(), old);
            return Err(e);
        }
        Ok(())
    }

    fn save(&self) -> Result<(), AccountError> {
        let Some(path) = &self.path else { return Ok(()) };
        let file = File { accounts: self.users.values().cloned().collect() };
        let text = toml::to_string(&file).map_err(|e| AccountError::Save(e.to_string()))?;
        write_atomic(path, text.as_bytes(), true).map_err(|e| AccountError::Save(format!("{}: {e}", path.display())))
    }
}

/// Replaces `path` with `bytes` so that a crash leaves the old or the new
/// content: a temporary file in the same directory, fsync, rename, fsync of
/// the directory. `private`: mode 0600 (secrets, hashes).
pub fn write_atomic(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| std::io::Error::other("not a file name"))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
pub(crate) fn fast_hasher() -> Argon2<'static> {
    // Tests: the same algorithm with a small cost, so they run in debug.
    Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, argon2::Params::new(256, 1, 1, None).unwrap())
}

#[cfg(test)]
pub(crate) fn open_fast(path: &Path) -> Result<Opened, AccountError> {
    Accounts::open_with(path, fast_hasher())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    fn fresh() -> (tempfile::TempDir, Accounts, String) {
        let dir = tempfile::tempdir().unwrap();
        let o = open_fast(&dir.path().join("accounts.toml")).unwrap();
        (dir, o.accounts, o.initial_password.unwrap())
    }

    #[test]
    fn first_start_creates_an_admin_with_a_random_initial_password_that_must_be_changed() {
        let (dir, mut acc, pw) = fresh();
        let path = dir.path().join("accounts.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&pw), "stored hashed only");
        assert!(text.contains("$argon2id$"), "{text}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        // Two devices never share it.
        let other = open_fast(&tempfile::tempdir().unwrap().path().join("a.toml")).unwrap();
        assert_ne!(other.initial_password.unwrap(), pw);
        assert_eq!(pw.len(), 19);
        let now = Instant::now();
        let login = acc.verify("admin", &pw, A, now).unwrap();
        assert_eq!(login, Login { user: "admin".into(), role: Role::Admin, must_change: true });
        // Same password again, too short, or a wrong old one: refused.
        assert!(matches!(acc.change_password("admin", &pw, &pw, A, now), Err(AccountError::WeakPassword(_))));
        assert!(matches!(acc.change_password("admin", &pw, "short", A, now), Err(AccountError::WeakPassword(_))));
        assert_eq!(acc.change_password("admin", "wrong-one", "new-secret-1", A, now), Err(AccountError::Auth(AuthError::Denied)));
        assert!(acc.must_change("admin"));
        acc.change_password("admin", &pw, "new-secret-1", A, now).unwrap();
        assert!(!acc.must_change("admin"));
        // Reopened: no new initial password, the change kept, the old refused.
        let mut again = open_fast(&path).unwrap();
        assert!(again.initial_password.is_none());
        assert!(again.accounts.verify("admin", &pw, B, now).is_err());
        assert!(!again.accounts.verify("admin", "new-secret-1", B, now).unwrap().must_change);
    }

    #[test]
    fn rate_limit_trips_after_the_free_failures_and_backs_off_exponentially() {
        let (_d, mut acc, pw) = fresh();
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES {
            assert_eq!(acc.verify("admin", "guess-guess", A, t0), Err(AuthError::Denied));
        }
        // The next failure starts a 1 s back-off ...
        assert_eq!(acc.verify("admin", "guess-guess", A, t0), Err(AuthError::Denied));
        // ... during which even the right password is refused unchecked.
        assert_eq!(acc.verify("admin", &pw, A, t0), Err(AuthError::RateLimited { retry_after: Duration::from_secs(1) }));
        // The user is limited from another address too (a distributed guess).
        assert!(matches!(acc.verify("admin", &pw, B, t0), Err(AuthError::RateLimited { .. })));
        // Then 2 s, 4 s ...
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(acc.verify("admin", "guess-guess", A, t1), Err(AuthError::Denied));
        assert_eq!(acc.verify("admin", &pw, A, t1), Err(AuthError::RateLimited { retry_after: Duration::from_secs(2) }));
        let t2 = t1 + Duration::from_secs(2);
        assert_eq!(acc.verify("admin", "guess-guess", A, t2), Err(AuthError::Denied));
        assert_eq!(acc.verify("admin", &pw, A, t2), Err(AuthError::RateLimited { retry_after: Duration::from_secs(4) }));
        // After the wait the right password works and clears the records.
        let t3 = t2 + Duration::from_secs(4);
        assert!(acc.verify("admin", &pw, A, t3).is_ok());
        assert_eq!(acc.verify("admin", "guess-guess", A, t3), Err(AuthError::Denied));
        assert!(acc.verify("admin", &pw, A, t3).is_ok());
    }

    #[test]
    fn guessing_from_one_address_is_limited_for_every_name_and_the_backoff_is_capped() {
        let (_d, mut acc, pw) = fresh();
        let t0 = Instant::now();
        let (mut t, mut longest) = (t0, Duration::ZERO);
        for i in 0..20 {
            // Invented names: the address is what gets limited.
            assert_eq!(acc.verify(&format!("user{i}"), "x", A, t), Err(AuthError::Denied));
            if let Some(w) = acc.by_addr.blocked(&A, t) {
                assert!(matches!(acc.verify("admin", &pw, A, t), Err(AuthError::RateLimited { .. })));
                longest = longest.max(w);
                t += w;
            }
        }
        assert_eq!(longest, MAX_BACKOFF);
        let _ = acc.verify("user", "x", A, t);
        assert!(acc.verify("admin", &pw, B, t).is_ok(), "another address is not affected");
        assert!(acc.by_user.records.is_empty(), "invented names are not tracked");
        // A record is forgotten an hour after its last failure.
        assert!(acc.by_addr.blocked(&A, t + FORGET_AFTER).is_none());
    }

    #[test]
    fn the_tables_are_bounded() {
        let mut l: Limiter<u32> = Limiter::new();
        let t0 = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 100) {
            l.fail(&i, t0 + Duration::from_millis(u64::from(i)));
        }
        assert_eq!(l.records.len(), MAX_TRACKED);
        assert!(!l.records.contains_key(&0), "the oldest went first");
    }

    #[test]
    fn admins_add_read_only_users_and_the_last_admin_stays() {
        let (dir, mut acc, _pw) = fresh();
        assert_eq!(acc.add("Bad Name", Role::ReadOnly, "long-enough"), Err(AccountError::BadName));
        assert_eq!(acc.add("viewer", Role::ReadOnly, "viewer"), Err(AccountError::WeakPassword("at least 8 characters")));
        acc.add("viewer", Role::ReadOnly, "viewer-pass-1").unwrap();
        assert_eq!(acc.add("viewer", Role::ReadOnly, "viewer-pass-1"), Err(AccountError::Exists));
        let login = acc.verify("viewer", "viewer-pass-1", A, Instant::now()).unwrap();
        assert_eq!((login.role, login.must_change), (Role::ReadOnly, true));
        assert_eq!(acc.remove("admin"), Err(AccountError::LastAdmin));
        assert_eq!(acc.remove("nobody"), Err(AccountError::NoSuchUser));
        let reopened = open_fast(&dir.path().join("accounts.toml")).unwrap().accounts;
        assert_eq!(reopened.role("viewer"), Some(Role::ReadOnly));
        acc.remove("viewer").unwrap();
        assert_eq!(open_fast(&dir.path().join("accounts.toml")).unwrap().accounts.role("viewer"), None);
    }

    #[test]
    fn a_failed_save_changes_nothing_and_a_broken_file_is_an_error_not_a_new_password() {
        let (dir, mut acc, _pw) = fresh();
        let path = dir.path().join("accounts.toml");
        acc.path = Some(dir.path().join("missing-dir").join("accounts.toml"));
        assert!(matches!(acc.add("viewer", Role::ReadOnly, "viewer-pass-1"), Err(AccountError::Save(_))));
        assert_eq!(acc.role("viewer"), None);
        assert!(matches!(acc.set_password("admin", "another-pass", false), Err(AccountError::Save(_))));
        assert!(acc.must_change("admin"));
        for bad in ["[[account]]\nname = 3\n", "not toml", "[[account]]\nname=\"admin\"\nrole=\"admin\"\nhash=\"x\"\n", ""] {
            std::fs::write(&path, bad).unwrap();
            assert!(matches!(open_fast(&path), Err(AccountError::Load(_))), "{bad:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// No password but the right one verifies (and the limiter never
        /// lets a wrong one through).
        #[test]
        fn a_wrong_password_never_verifies(guess in "\\PC{0,40}", user in "[a-z]{1,8}") {
            let o = Accounts::create(None, fast_hasher()).unwrap();
            let (mut acc, pw) = (o.accounts, o.initial_password.unwrap());
            prop_assume!(guess != pw);
            let now = Instant::now();
            prop_assert!(acc.verify("admin", &guess, A, now).is_err());
            prop_assert!(acc.verify(&user, &guess, A, now).is_err());
            prop_assert!(acc.verify(&user, &pw, A, now).is_err() || user == "admin");
        }
    }

    #[test]
    fn the_real_hash_parameters_verify() {
        // The production hasher (argon2id defaults): one hash and check.
        let o = Accounts::in_memory();
        let (mut acc, pw) = (o.accounts, o.initial_password.unwrap());
        assert!(acc.users["admin"].hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(acc.verify("admin", &pw, A, Instant::now()).is_ok());
    }
}
