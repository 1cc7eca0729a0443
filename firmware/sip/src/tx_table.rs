//! A transaction table whose per-event cost does not grow with its size.
//!
//! The user agent used to walk every transaction after every datagram (to
//! collect output and drop finished ones) and again for every timeout and
//! wake-up time: under a flood of OPTIONS or INVITEs each of which leaves a
//! server transaction for up to 32 s, the cost of one event grew with the
//! number of live transactions (set-up 18 ms -> 321 ms at 1,000 INVITE/s).
//!
//! Here a mutable access marks the transaction dirty; after an input the
//! owner visits only the dirty ones ([`TxTable::take_dirty`]), then
//! [`TxTable::settle`]s each: a finished one is removed, a live one is filed
//! under its next deadline in an ordered timer index. [`TxTable::due`] and
//! [`TxTable::next_timeout`] read that index. Every operation is a hash or
//! B-tree step: O(log n) per touched transaction.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use crate::transaction::TransactionKey;

/// What the table needs to know of a transaction.
pub(crate) trait Timed {
    fn poll_timeout(&self) -> Option<Instant>;
    fn is_terminated(&self) -> bool;
}

struct Entry<V> {
    tx: V,
    /// The deadline it is filed under in `timers`.
    filed: Option<Instant>,
    dirty: bool,
}

pub(crate) struct TxTable<V> {
    map: HashMap<TransactionKey, Entry<V>>,
    timers: BTreeSet<(Instant, TransactionKey)>,
    dirty: Vec<TransactionKey>,
}

impl<V: Timed> TxTable<V> {
    pub(crate) fn new() -> Self {
        TxTable { map: HashMap::new(), timers: BTreeSet::new(), dirty: Vec::new() }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn get(&self, k: &TransactionKey) -> Option<&V> {
        self.map.get(k).map(|e| &e.tx)
    }

    /// Access that may change the transaction: it is visited at the next
    /// [`TxTable::take_dirty`].
    pub(crate) fn get_mut(&mut self, k: &TransactionKey) -> Option<&mut V> {
        let e = self.map.get_mut(k)?;
        if !e.dirty {
            e.dirty = true;
            self.dirty.push(k.clone());
        }
        Some(&mut e.tx)
    }

    pub(crate) fn insert(&mut self, k: TransactionKey, tx: V) {
        if let Some(old) = self.map.remove(&k) {
            if let Some(t) = old.filed {
                self.timers.remove(&(t, k.clone()));
            }
        }
        self.dirty.push(k.clone());
        self.map.insert(k, Entry { tx, filed: None, dirty: true });
    }

    /// The transactions touched since the last call, to be polled and then
    /// [`TxTable::settle`]d.
    pub(crate) fn take_dirty(&mut self) -> Vec<TransactionKey> {
        let keys = std::mem::take(&mut self.dirty);
        for k in &keys {
            if let Some(e) = self.map.get_mut(k) {
                e.dirty = false;
            }
        }
        keys
    }

    /// Access for the owner's visit of a dirty transaction (no re-marking).
    pub(crate) fn visit(&mut self, k: &TransactionKey) -> Option<&mut V> {
        self.map.get_mut(k).map(|e| &mut e.tx)
    }

    /// Removes a finished transaction, or files a live one under its deadline.
    pub(crate) fn settle(&mut self, k: &TransactionKey) {
        let Some(e) = self.map.get_mut(k) else { return };
        let next = if e.tx.is_terminated() { None } else { e.tx.poll_timeout() };
        if e.filed != next {
            if let Some(t) = e.filed {
                self.timers.remove(&(t, k.clone()));
            }
            if let Some(t) = next {
                self.timers.insert((t, k.clone()));
            }
            e.filed = next;
        }
        if e.tx.is_terminated() && !e.dirty {
            self.map.remove(k);
        }
    }

    /// Transactions whose deadline has come, marked dirty.
    pub(crate) fn due(&mut self, now: Instant) -> Vec<TransactionKey> {
        let keys: Vec<TransactionKey> =
            self.timers.iter().take_while(|(t, _)| *t <= now).map(|(_, k)| k.clone()).collect();
        for k in &keys {
            let _ = self.get_mut(k);
        }
        keys
    }

    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(t, _)| *t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    struct T {
        at: Option<Instant>,
        done: bool,
    }

    impl Timed for T {
        fn poll_timeout(&self) -> Option<Instant> {
            self.at
        }
        fn is_terminated(&self) -> bool {
            self.done
        }
    }

    fn key(i: u32) -> TransactionKey {
        TransactionKey { branch: format!("z9hG4bK{i}"), sent_by: "h".into(), method: "OPTIONS".into() }
    }

    #[test]
    fn only_touched_transactions_are_visited_and_timers_are_indexed() {
        let t0 = Instant::now();
        let mut t: TxTable<T> = TxTable::new();
        for i in 0..10_000 {
            t.insert(key(i), T { at: Some(t0 + Duration::from_millis(i as u64 + 1)), done: false });
        }
        let d = t.take_dirty();
        assert_eq!(d.len(), 10_000);
        for k in &d {
            t.settle(k);
        }
        assert_eq!(t.next_timeout(), Some(t0 + Duration::from_millis(1)));
        // One touch: one visit.
        t.get_mut(&key(5000)).unwrap().done = true;
        let d = t.take_dirty();
        assert_eq!(d, vec![key(5000)]);
        t.settle(&d[0]);
        assert_eq!(t.len(), 9_999);
        // Due ones only.
        let due = t.due(t0 + Duration::from_millis(3));
        assert_eq!(due, vec![key(0), key(1), key(2)]);
        for k in t.take_dirty() {
            t.visit(&k).unwrap().at = None;
            t.settle(&k);
        }
        assert_eq!(t.next_timeout(), Some(t0 + Duration::from_millis(4)));
        assert!(t.get(&key(0)).is_some(), "no deadline is not finished");
    }
}
