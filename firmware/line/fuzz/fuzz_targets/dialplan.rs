//! Installer-supplied patterns and dialled digits: `DialPlan::new` rejects or
//! accepts, `check` answers; neither panics. Input: patterns separated by
//! `,`, then a newline, then the digits.
#![no_main]

use gw_line::DialPlan;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (patterns, digits) = text.split_once('\n').unwrap_or((text, ""));
    let patterns: Vec<&str> = patterns.split(',').collect();
    if let Ok(plan) = DialPlan::new(&patterns) {
        for end in 0..=digits.len() {
            if digits.is_char_boundary(end) {
                let _ = plan.check(&digits[..end]);
            }
        }
    }
});
