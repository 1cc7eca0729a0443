mod support;
use gw_dsp::echo::EchoCanceller;
use support::*;
#[test]
fn scratch() {
    let n = 4 * 8000;
    let text = TEXTS.iter().find(|t| t.0 == "en-us").unwrap().1;
    let x = espeak("en-us", 150, 40, text).unwrap();
    let far: Vec<i16> = at_active_level(&x[..n.min(x.len())], -16.0).iter().map(|&v| law(v)).collect();
    let n = far.len();
    let mut lv = String::new();
    for w in (0..16000).step_by(400) { lv += &format!(" {:.0}", level_dbm0(far[w..w+2000].iter().map(|&v| v as f32))); }
    eprintln!("far level {lv}");
    for (name, m) in models().iter() {
        let echo = echo_of(m, 320, 6.0, &far);
        let near = near_in(&echo, &vec![0.0; n]);
        let mut ec = Box::new(EchoCanceller::new(1024));
        ec.set_nlp(false);
        let mut out = vec![0i16; n];
        for i in (0..n - 79).step_by(80) { ec.process(&far[i..i + 80], &near[i..i + 80], &mut out[i..i + 80]); }
        let mut s = String::new();
        for w in (0..16000).step_by(400) {
            let pe = power(echo[w..w+2000].iter().copied());
            if pe < 1e4 { s += "   -"; continue; }
            s += &format!(" {:>3.0}", db(pe / power(out[w..w+2000].iter().map(|&v| v as f32))));
        }
        eprintln!("{name}: {s}");
    }
}
