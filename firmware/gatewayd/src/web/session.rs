//! Web UI sessions: the cookie's random id, the user and role behind it,
//! its CSRF synchroniser token, and the idle expiry. Sans-IO: `now` is an
//! input.
//!
//! - [`Sessions::create`] after a successful login: a 256-bit id from the
//!   OS random source (the cookie) and a separate 256-bit CSRF token (put in
//!   every form of the session's pages, checked on every state-changing
//!   request with [`Session::csrf_ok`], compared in constant time);
//! - [`Sessions::get`]: the session for a cookie, refreshed, or `None` once
//!   idle for longer than the idle timeout (then removed);
//! - [`Sessions::remove`] (logout), [`Sessions::remove_user`] (account
//!   removed or its password reset: its sessions end).
//!
//! At most `max` sessions: a new one beyond that evicts the least recently
//! used.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::accounts::Role;

pub const COOKIE: &str = "gw_session";

#[derive(Clone, Debug)]
pub struct Session {
    pub user: String,
    pub role: Role,
    pub csrf: String,
    /// Only the password change is allowed until it is done.
    pub must_change: bool,
    last_seen: Instant,
}

impl Session {
    /// The form's or header's token against the session's, without an early exit.
    pub fn csrf_ok(&self, token: Option<&str>) -> bool {
        let Some(t) = token else { return false };
        t.len() == self.csrf.len() && t.bytes().zip(self.csrf.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

pub struct Sessions {
    map: HashMap<String, Session>,
    idle: Duration,
    max: usize,
}

pub fn random_token() -> String {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).expect("the OS random source");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Sessions {
    pub fn new(idle: Duration, max: usize) -> Self {
        Sessions { map: HashMap::new(), idle, max: max.max(1) }
    }

    /// A new session; returns its id (the cookie value).
    pub fn create(&mut self, user: &str, role: Role, must_change: bool, now: Instant) -> String {
        self.map.retain(|_, s| now.saturating_duration_since(s.last_seen) < self.idle);
        while self.map.len() >= self.max {
            let oldest = self.map.iter().min_by_key(|(_, s)| s.last_seen).map(|(k, _)| k.clone());
            match oldest {
                Some(k) => self.map.remove(&k),
                None => break,
            };
        }
        let id = random_token();
        self.map.insert(id.clone(), Session { user: user.into(), role, csrf: random_token(), must_change, last_seen: now });
        id
    }

    pub fn get(&mut self, id: &str, now: Instant) -> Option<Session> {
        let s = self.map.get_mut(id)?;
        if now.saturating_duration_since(s.last_seen) >= self.idle {
            self.map.remove(id);
            return None;
        }
        s.last_seen = now;
        Some(s.clone())
    }

    pub fn password_changed(&mut self, id: &str) {
        if let Some(s) = self.map.get_mut(id) {
            s.must_change = false;
        }
    }

    pub fn remove(&mut self, id: &str) {
        self.map.remove(id);
    }

    /// Ends every session of `user` but `keep`.
    pub fn remove_user(&mut self, user: &str, keep: Option<&str>) {
        self.map.retain(|id, s| s.user != user || Some(id.as_str()) == keep);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_when_idle_and_are_refreshed_by_use() {
        let t0 = Instant::now();
        let mut s = Sessions::new(Duration::from_secs(600), 8);
        let id = s.create("admin", Role::Admin, false, t0);
        assert_eq!(id.len(), 64);
        assert!(s.get(&id, t0 + Duration::from_secs(599)).is_some());
        // Used at 599 s: good until 1199 s.
        assert!(s.get(&id, t0 + Duration::from_secs(1198)).is_some());
        assert!(s.get(&id, t0 + Duration::from_secs(1798)).is_none());
        assert!(s.is_empty(), "an expired session is gone");
        assert!(s.get("not-a-session", t0).is_none());
    }

    #[test]
    fn the_csrf_token_is_per_session_and_must_match_exactly() {
        let t0 = Instant::now();
        let mut s = Sessions::new(Duration::from_secs(600), 8);
        let a_id = s.create("admin", Role::Admin, false, t0);
        let a = s.get(&a_id, t0).unwrap();
        let b_id = s.create("viewer", Role::ReadOnly, false, t0);
        let b = s.get(&b_id, t0).unwrap();
        assert_ne!(a.csrf, b.csrf);
        assert!(a.csrf_ok(Some(&a.csrf)));
        assert!(!a.csrf_ok(Some(&b.csrf)), "another session's token");
        assert!(!a.csrf_ok(None));
        assert!(!a.csrf_ok(Some("")));
        assert!(!a.csrf_ok(Some(&a.csrf[..63])));
    }

    #[test]
    fn sessions_are_bounded_and_end_with_their_user() {
        let t0 = Instant::now();
        let mut s = Sessions::new(Duration::from_secs(600), 3);
        let first = s.create("a", Role::Admin, false, t0);
        let ids: Vec<String> = (1..4).map(|i| s.create("b", Role::ReadOnly, false, t0 + Duration::from_secs(i))).collect();
        assert_eq!(s.len(), 3);
        assert!(s.get(&first, t0 + Duration::from_secs(5)).is_none(), "least recently used evicted");
        s.remove_user("b", Some(&ids[2]));
        assert_eq!(s.len(), 1);
        assert!(s.get(&ids[2], t0 + Duration::from_secs(5)).is_some());
        s.remove(&ids[2]);
        assert!(s.is_empty());
    }
}
