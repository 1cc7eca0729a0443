//! Compile-time trigonometry, so that detectors can have a `const fn new()` with their
//! filter coefficients computed from the frequencies instead of pasted as magic numbers.
//!
//! `libm` is not `const`; these Taylor series are, and are accurate to ~1e-15 after the
//! argument is reduced to [-pi, pi].

pub(crate) const PI: f64 = core::f64::consts::PI;

const fn reduce(x: f64) -> f64 {
    let two_pi = 2.0 * PI;
    let k = (x / two_pi) as i64;
    let mut y = x - (k as f64) * two_pi;
    while y > PI {
        y -= two_pi;
    }
    while y < -PI {
        y += two_pi;
    }
    y
}

/// cos(x), usable in constant expressions.
pub(crate) const fn cos(x: f64) -> f64 {
    let y = reduce(x);
    let y2 = y * y;
    let mut term = 1.0;
    let mut sum = 1.0;
    let mut n = 0;
    while n < 24 {
        let k = (2 * n + 1) as f64 * (2 * n + 2) as f64;
        term = -term * y2 / k;
        sum += term;
        n += 1;
    }
    sum
}

/// sin(x), usable in constant expressions.
pub(crate) const fn sin(x: f64) -> f64 {
    cos(x - PI / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn const_trig_matches_libm() {
        let mut x = -20.0;
        while x < 20.0 {
            assert!((cos(x) - libm::cos(x)).abs() < 1e-12, "cos({x})");
            assert!((sin(x) - libm::sin(x)).abs() < 1e-12, "sin({x})");
            x += 0.0137;
        }
    }
}
