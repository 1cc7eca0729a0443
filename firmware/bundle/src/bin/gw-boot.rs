//! gw-boot: the appliance's first stage decision and the build host's bundle tool.
//!
//! ```text
//! gw-boot select STATE          count this boot; prints "A" or "B trial" (or "A exhausted")
//! gw-boot mark-good STATE SLOT  the slot is healthy: attempts back to 3
//! gw-boot is-good STATE SLOT    exit 0 if the slot is marked good
//! gw-boot show STATE            the state, one line
//! gw-boot keygen PRIVATE PUBLIC        a new key pair from /dev/urandom (hex files)
//! gw-boot bundle PRIVATE IMAGE VERSION COMPATIBLE OUT   sign IMAGE into a bundle
//! gw-boot verify PUBLIC BUNDLE COMPATIBLE               check a bundle
//! ```
use std::path::Path;
use std::process::ExitCode;

use gw_bundle::boot::{self, Slot};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match run(&a) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gw-boot: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(a: &[&str]) -> Result<ExitCode, String> {
    let slot = |s: &str| Slot::parse(s).ok_or_else(|| format!("no slot {s:?} (A or B)"));
    match a {
        ["select", state] => {
            let p = Path::new(state);
            let mut st = boot::load(p).unwrap_or_else(|e| {
                eprintln!("gw-boot: {e}; using the factory state");
                boot::BootState::default()
            });
            let c = st.select();
            boot::store(p, &st).map_err(|e| format!("{state}: {e}"))?;
            let extra = if c.trial { " trial" } else if c.exhausted { " exhausted" } else { "" };
            println!("{}{extra}", c.slot.name());
            Ok(ExitCode::SUCCESS)
        }
        ["mark-good", state, s] => {
            let p = Path::new(state);
            let mut st = boot::load(p)?;
            st.mark_good(slot(s)?);
            boot::store(p, &st).map_err(|e| format!("{state}: {e}"))?;
            Ok(ExitCode::SUCCESS)
        }
        ["is-good", state, s] => {
            let st = boot::load(Path::new(state))?;
            Ok(if st.slot(slot(s)?).good { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        ["show", state] => {
            println!("{}", boot::load(Path::new(state))?.summary());
            Ok(ExitCode::SUCCESS)
        }
        ["keygen", private, public] => {
            let mut seed = [0u8; 32];
            use std::io::Read;
            std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut seed)).map_err(|e| e.to_string())?;
            let k = gw_bundle::signing_key_from_seed(seed);
            std::fs::write(private, gw_bundle::to_hex(&k.to_bytes()) + "\n").map_err(|e| format!("{private}: {e}"))?;
            std::fs::write(public, gw_bundle::to_hex(k.verifying_key().as_bytes()) + "\n")
                .map_err(|e| format!("{public}: {e}"))?;
            Ok(ExitCode::SUCCESS)
        }
        ["bundle", private, image, version, compatible, out] => {
            let key = std::fs::read_to_string(private).map_err(|e| format!("{private}: {e}"))?;
            let key = gw_bundle::parse_signing_key(&key).map_err(|e| format!("{private}: {e}"))?;
            let img = std::fs::read(image).map_err(|e| format!("{image}: {e}"))?;
            let m = gw_bundle::Manifest { compatible: compatible.to_string(), version: version.to_string() };
            std::fs::write(out, gw_bundle::create(&m, &img, &key)).map_err(|e| format!("{out}: {e}"))?;
            Ok(ExitCode::SUCCESS)
        }
        ["verify", public, bundle, compatible] => {
            let key = std::fs::read_to_string(public).map_err(|e| format!("{public}: {e}"))?;
            let key = gw_bundle::parse_public_key(&key).map_err(|e| format!("{public}: {e}"))?;
            let b = std::fs::read(bundle).map_err(|e| format!("{bundle}: {e}"))?;
            let v = gw_bundle::verify(&b, &key, compatible).map_err(|e| e.to_string())?;
            println!("ok: version {} ({} bytes)", v.manifest.version, v.image.len());
            Ok(ExitCode::SUCCESS)
        }
        _ => Err("usage: gw-boot select|mark-good|is-good|show|keygen|bundle|verify ... (see the source's header)".into()),
    }
}
