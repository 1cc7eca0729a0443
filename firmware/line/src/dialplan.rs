//! Digit maps: when has the caller dialled enough?
//!
//! Patterns use Asterisk's extension-pattern syntax (a leading `_` is
//! accepted and ignored): literal `0-9 * #`, `x` any digit 0-9, `z` 1-9,
//! `n` 2-9, classes `[135]`, `[1-5]`, `[0-4*#]`, and a trailing `.` meaning
//! one or more further digits or `*` (so the number is only known to be
//! complete at the inter-digit timeout or at `#`; unlike Asterisk, `.` does
//! not take `#`, which stays the "send now" key). Letters are
//! case-insensitive.
//!
//! [`DialPlan::check`] answers for the digits so far, over all patterns:
//! - [`Match::Complete`]: a pattern matches and no pattern could take more:
//!   place the call now.
//! - [`Match::CompleteOrMore`]: a pattern matches but more digits could still
//!   match something: wait for the inter-digit timeout or `#`.
//! - [`Match::Partial`]: a prefix of some pattern; keep collecting.
//! - [`Match::NoMatch`]: nothing can match any more.

use core::fmt;

/// Result of [`DialPlan::check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Match {
    Complete,
    CompleteOrMore,
    Partial,
    NoMatch,
}

/// What is wrong with a pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DialPlanErrorReason {
    /// The plan has no patterns.
    NoPatterns,
    /// A pattern is empty (or only `_`).
    EmptyPattern,
    /// A character that is not part of the syntax.
    BadChar(char),
    /// `[` without `]`.
    UnclosedClass,
    /// `[]`.
    EmptyClass,
    /// `a-b` with `a > b` or with a non-digit end.
    BadRange,
    /// `.` anywhere but at the end.
    DotNotLast,
    /// `.` with nothing before it.
    DotAlone,
}

/// A pattern that failed to parse: which one, where, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DialPlanError {
    /// Index of the pattern in the list given to [`DialPlan::new`].
    pub pattern: usize,
    /// Byte offset in that pattern.
    pub position: usize,
    pub reason: DialPlanErrorReason,
}

impl fmt::Display for DialPlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use DialPlanErrorReason::*;
        write!(f, "pattern {} at {}: ", self.pattern, self.position)?;
        match self.reason {
            NoPatterns => write!(f, "no patterns"),
            EmptyPattern => write!(f, "empty pattern"),
            BadChar(c) => write!(f, "unexpected character {c:?}"),
            UnclosedClass => write!(f, "'[' without ']'"),
            EmptyClass => write!(f, "empty class '[]'"),
            BadRange => write!(f, "bad range in class"),
            DotNotLast => write!(f, "'.' must be last"),
            DotAlone => write!(f, "'.' needs something before it"),
        }
    }
}

impl std::error::Error for DialPlanError {}

/// Symbol index: 0-9 digits, 10 `*`, 11 `#`.
fn symbol(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'*' => Some(10),
        b'#' => Some(11),
        _ => None,
    }
}

const DIGITS: u16 = 0x3ff;
/// What a trailing `.` accepts: digits and `*`.
const DOT: u16 = DIGITS | 1 << 10;

/// One compiled pattern: a set of allowed symbols per position.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Pattern {
    elems: Vec<u16>,
    /// Trailing `.`: one or more further symbols.
    more: bool,
}

impl Pattern {
    fn parse(p: &str) -> Result<Self, (usize, DialPlanErrorReason)> {
        use DialPlanErrorReason::*;
        let b = p.as_bytes();
        let mut i = usize::from(b.first() == Some(&b'_'));
        let mut elems = Vec::new();
        let mut more = false;
        while i < b.len() {
            let c = b[i];
            let set = match c.to_ascii_lowercase() {
                b'x' => DIGITS,
                b'z' => DIGITS & !1,
                b'n' => DIGITS & !3,
                b'.' => {
                    if i + 1 != b.len() {
                        return Err((i, DotNotLast));
                    }
                    if elems.is_empty() {
                        return Err((i, DotAlone));
                    }
                    more = true;
                    i += 1;
                    continue;
                }
                b'[' => {
                    let open = i;
                    let mut set = 0u16;
                    i += 1;
                    loop {
                        let Some(&c) = b.get(i) else {
                            return Err((open, UnclosedClass));
                        };
                        if c == b']' {
                            break;
                        }
                        let Some(lo) = symbol(c) else {
                            return Err((i, BadChar(p[i..].chars().next().unwrap_or('?'))));
                        };
                        if b.get(i + 1) == Some(&b'-') {
                            let hi = b.get(i + 2).and_then(|&h| symbol(h));
                            match hi {
                                Some(hi) if lo <= 9 && hi <= 9 && lo <= hi => {
                                    for s in lo..=hi {
                                        set |= 1 << s;
                                    }
                                    i += 3;
                                    continue;
                                }
                                _ => return Err((i, BadRange)),
                            }
                        }
                        set |= 1 << lo;
                        i += 1;
                    }
                    if set == 0 {
                        return Err((open, EmptyClass));
                    }
                    set
                }
                _ => match symbol(c) {
                    Some(s) => 1 << s,
                    None => return Err((i, BadChar(p[i..].chars().next().unwrap_or('?')))),
                },
            };
            elems.push(set);
            i += 1;
        }
        if elems.is_empty() {
            return Err((0, EmptyPattern));
        }
        Ok(Self { elems, more })
    }

    fn check(&self, syms: &[u8]) -> Match {
        let fixed = self.elems.len().min(syms.len());
        if !syms[..fixed].iter().zip(&self.elems).all(|(&s, &set)| set & (1 << s) != 0) {
            return Match::NoMatch;
        }
        if syms[fixed..].iter().any(|&s| DOT & (1 << s) == 0) {
            return Match::NoMatch;
        }
        match (syms.len().cmp(&self.elems.len()), self.more) {
            (core::cmp::Ordering::Less, _) => Match::Partial,
            (core::cmp::Ordering::Equal, false) => Match::Complete,
            (core::cmp::Ordering::Equal, true) => Match::Partial,
            (core::cmp::Ordering::Greater, true) => Match::CompleteOrMore,
            (core::cmp::Ordering::Greater, false) => Match::NoMatch,
        }
    }
}

/// A set of patterns; see the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DialPlan {
    patterns: Vec<Pattern>,
}

impl DialPlan {
    /// Compiles `patterns`; the first bad one is reported with its index,
    /// the byte position and the reason.
    pub fn new(patterns: &[&str]) -> Result<Self, DialPlanError> {
        if patterns.is_empty() {
            return Err(DialPlanError { pattern: 0, position: 0, reason: DialPlanErrorReason::NoPatterns });
        }
        let patterns = patterns
            .iter()
            .enumerate()
            .map(|(n, p)| Pattern::parse(p).map_err(|(position, reason)| DialPlanError { pattern: n, position, reason }))
            .collect::<Result<_, _>>()?;
        Ok(Self { patterns })
    }

    /// How `digits` (ASCII `0-9 * #`) stand against the plan. Any other
    /// character makes it [`Match::NoMatch`].
    pub fn check(&self, digits: &str) -> Match {
        let mut syms = Vec::with_capacity(digits.len());
        for c in digits.bytes() {
            match symbol(c) {
                Some(s) => syms.push(s),
                None => return Match::NoMatch,
            }
        }
        let (mut complete, mut more, mut open_ended) = (false, false, false);
        for p in &self.patterns {
            match p.check(&syms) {
                Match::Complete => complete = true,
                Match::Partial => more = true,
                Match::CompleteOrMore => open_ended = true,
                Match::NoMatch => {}
            }
        }
        match (complete, more, open_ended) {
            (true, false, false) => Match::Complete,
            (true, _, _) | (_, _, true) => Match::CompleteOrMore,
            (false, true, false) => Match::Partial,
            (false, false, false) => Match::NoMatch,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn plan(p: &[&str]) -> DialPlan {
        DialPlan::new(p).unwrap()
    }

    #[test]
    fn literal_and_wildcards() {
        let d = plan(&["911", "_1NXXNXXXXXX", "*6[79]", "0[1-35]z"]);
        assert_eq!(d.check(""), Match::Partial);
        assert_eq!(d.check("9"), Match::Partial);
        assert_eq!(d.check("911"), Match::Complete);
        assert_eq!(d.check("912"), Match::NoMatch);
        assert_eq!(d.check("1212555121"), Match::Partial);
        assert_eq!(d.check("12125551212"), Match::Complete);
        assert_eq!(d.check("11125551212"), Match::NoMatch, "N excludes 1");
        assert_eq!(d.check("*67"), Match::Complete);
        assert_eq!(d.check("*68"), Match::NoMatch);
        assert_eq!(d.check("031"), Match::Complete);
        assert_eq!(d.check("041"), Match::NoMatch, "4 not in [1-35]");
        assert_eq!(d.check("050"), Match::NoMatch, "z excludes 0");
        assert_eq!(d.check("91a"), Match::NoMatch);
    }

    #[test]
    fn trailing_dot_needs_one_more_and_stays_open() {
        let d = plan(&["9x."]);
        assert_eq!(d.check("95"), Match::Partial);
        assert_eq!(d.check("955"), Match::CompleteOrMore);
        assert_eq!(d.check("9551234567"), Match::CompleteOrMore);
        assert_eq!(d.check("8"), Match::NoMatch);
    }

    #[test]
    fn overlap_between_patterns_is_complete_or_more() {
        let d = plan(&["11x", "11xx"]);
        assert_eq!(d.check("112"), Match::CompleteOrMore);
        assert_eq!(d.check("1123"), Match::Complete);
        assert_eq!(d.check("11234"), Match::NoMatch);
    }

    #[test]
    fn hash_and_star_in_patterns_and_classes() {
        let d = plan(&["*72x.", "[*#]0"]);
        assert_eq!(d.check("*725*5"), Match::CompleteOrMore, "`.` takes *");
        assert_eq!(d.check("*7255#"), Match::NoMatch, "`.` does not take #");
        assert_eq!(d.check("#0"), Match::Complete);
        assert_eq!(d.check("*0"), Match::Complete);
    }

    #[test]
    fn syntax_errors_have_position_and_reason() {
        use DialPlanErrorReason::*;
        let e = |p: &[&str]| DialPlan::new(p).unwrap_err();
        assert_eq!(e(&[]).reason, NoPatterns);
        assert_eq!(e(&["911", ""]), DialPlanError { pattern: 1, position: 0, reason: EmptyPattern });
        assert_eq!(e(&["_"]).reason, EmptyPattern);
        assert_eq!(e(&["91q"]), DialPlanError { pattern: 0, position: 2, reason: BadChar('q') });
        assert_eq!(e(&["9[12"]), DialPlanError { pattern: 0, position: 1, reason: UnclosedClass });
        assert_eq!(e(&["9[]"]).reason, EmptyClass);
        assert_eq!(e(&["[5-1]"]), DialPlanError { pattern: 0, position: 1, reason: BadRange });
        assert_eq!(e(&["[1-]"]).reason, BadRange);
        assert_eq!(e(&["[*-9]"]).reason, BadRange);
        assert_eq!(e(&["9.1"]), DialPlanError { pattern: 0, position: 1, reason: DotNotLast });
        assert_eq!(e(&["."]).reason, DotAlone);
        assert_eq!(e(&["9é"]).reason, BadChar('é'));
        assert!(e(&["9é"]).to_string().contains("pattern 0 at 1"));
    }

    proptest! {
        #[test]
        fn arbitrary_patterns_and_digits_never_panic(p in "\\PC{0,12}", d in "[0-9*#a]{0,12}") {
            if let Ok(plan) = DialPlan::new(&[&p]) {
                let _ = plan.check(&d);
            }
        }

        #[test]
        fn a_number_matches_its_own_literal_pattern(n in "[0-9*#]{1,15}") {
            let plan = DialPlan::new(&[&n]).unwrap();
            prop_assert_eq!(plan.check(&n), Match::Complete);
            prop_assert_eq!(plan.check(&n[..n.len() - 1]), Match::Partial);
        }
    }
}
