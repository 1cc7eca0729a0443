//! The fuzz seed corpus under testdata/ is real input: every file must be accepted, so that
//! fuzzing starts from the interesting paths (see fuzz/Cargo.toml).

use gw_sip::{auth, sdp};

fn files(dir: &str) -> Vec<(String, String)> {
    let dir = format!("{}/testdata/{dir}", env!("CARGO_MANIFEST_DIR"));
    let mut out: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (p.display().to_string(), std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn sdp_seeds_parse_and_round_trip() {
    let seeds = files("sdp");
    assert!(seeds.len() >= 3);
    for (name, text) in seeds {
        let d = sdp::SessionDescription::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(sdp::SessionDescription::parse(&d.to_string()).unwrap(), d, "{name}");
        let local = "192.0.2.1".parse().unwrap();
        let (ans, _) = sdp::answer(&d, local, 4000, &[sdp::Codec::Pcmu, sdp::Codec::Pcma], 7)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(ans.media.len(), d.media.len(), "{name}");
    }
}

#[test]
fn auth_seeds_parse() {
    let seeds = files("auth");
    assert!(seeds.len() >= 3);
    for (name, text) in seeds {
        for line in text.lines() {
            auth::Challenge::parse(line).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert!(auth::best_challenge(text.lines()).is_some(), "{name}");
    }
}
