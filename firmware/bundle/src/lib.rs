//! Signed firmware bundles and the A/B boot state of the appliance.
//!
//! A bundle is one file:
//!
//! ```text
//! "GWBNDL1\n"                 8 bytes, the format
//! manifest length             u32, little endian (at most 4096)
//! manifest                    UTF-8 `key=value` lines: compatible, version, image
//! image length                u64, little endian
//! image                       the slot's content (the gatewayd executable)
//! signature                   64 bytes: ed25519 over every byte before it
//! ```
//!
//! The signature covers the header, the manifest and the image, so nothing in
//! a verified bundle can have been changed. A bundle is verified completely
//! (length, signature, manifest, compatibility) before any byte of it is
//! written anywhere: a refused bundle changes nothing.
//!
//! The boot state (`boot.rs`) is RAUC's model for a boot loader: an order of
//! slots and an attempts counter per slot, decremented by the first stage on
//! every boot and reset by `mark-good` once the booted system is healthy.
#![forbid(unsafe_code)]

pub mod boot;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

pub const MAGIC: &[u8; 8] = b"GWBNDL1\n";
pub const MAX_MANIFEST: usize = 4096;
pub const SIGNATURE_LEN: usize = 64;
/// Header (magic + manifest length) before the manifest.
const HEAD: usize = 8 + 4;

/// What a bundle says about itself (signed with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Which devices may install it (e.g. `gatewayd-qemu-aarch64`).
    pub compatible: String,
    /// Free text, shown in the status (e.g. `0.1.0+2`).
    pub version: String,
}

impl Manifest {
    fn to_text(&self) -> String {
        format!("compatible={}\nversion={}\nimage=gatewayd\n", self.compatible, self.version)
    }

    fn parse(text: &str) -> Result<Manifest, BundleError> {
        let mut compatible = None;
        let mut version = None;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (k, v) = line.split_once('=').ok_or_else(|| BundleError::Manifest(format!("not key=value: {line:?}")))?;
            match k {
                "compatible" => compatible = Some(v.to_string()),
                "version" => version = Some(v.to_string()),
                "image" if v == "gatewayd" => {}
                "image" => return Err(BundleError::Manifest(format!("unknown image kind {v:?}"))),
                _ => {} // later keys are ignored by this reader
            }
        }
        let field = |f: Option<String>, name: &str| f.ok_or_else(|| BundleError::Manifest(format!("no {name}")));
        let version = field(version, "version")?;
        if version.is_empty() || version.len() > 64 || !version.chars().all(|c| c.is_ascii_graphic()) {
            return Err(BundleError::Manifest(format!("bad version {version:?}")));
        }
        Ok(Manifest { compatible: field(compatible, "compatible")?, version })
    }
}

/// Why a bundle is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleError {
    NotABundle,
    /// Fewer bytes than the header announces: an interrupted transfer.
    Truncated { expected: u64, got: u64 },
    TrailingBytes { expected: u64, got: u64 },
    Manifest(String),
    BadSignature,
    Incompatible { bundle: String, device: String },
    BadKey(String),
}

impl std::fmt::Display for BundleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BundleError::NotABundle => write!(f, "not a gatewayd bundle (bad magic)"),
            BundleError::Truncated { expected, got } => {
                write!(f, "truncated bundle: {got} bytes of {expected} (transfer interrupted?)")
            }
            BundleError::TrailingBytes { expected, got } => {
                write!(f, "bundle has {} bytes after its end ({got} bytes, {expected} expected)", got - expected)
            }
            BundleError::Manifest(m) => write!(f, "bad manifest: {m}"),
            BundleError::BadSignature => {
                write!(f, "signature does not verify: not signed by this device's update key, or altered")
            }
            BundleError::Incompatible { bundle, device } => {
                write!(f, "bundle is for {bundle:?}, this device is {device:?}")
            }
            BundleError::BadKey(m) => write!(f, "bad key: {m}"),
        }
    }
}

impl std::error::Error for BundleError {}

/// A bundle whose signature verified.
#[derive(Debug)]
pub struct Verified<'a> {
    pub manifest: Manifest,
    pub image: &'a [u8],
}

/// Builds and signs a bundle (the build host's side; the key never goes on the device).
pub fn create(manifest: &Manifest, image: &[u8], key: &SigningKey) -> Vec<u8> {
    let m = manifest.to_text();
    let mut out = Vec::with_capacity(HEAD + m.len() + 8 + image.len() + SIGNATURE_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(m.len() as u32).to_le_bytes());
    out.extend_from_slice(m.as_bytes());
    out.extend_from_slice(&(image.len() as u64).to_le_bytes());
    out.extend_from_slice(image);
    let sig = key.sign(&out);
    out.extend_from_slice(&sig.to_bytes());
    out
}

/// The total length a bundle announces, from its first bytes (None: not
/// enough bytes yet to tell, or not a bundle).
pub fn announced_len(head: &[u8]) -> Option<u64> {
    if head.len() < HEAD || &head[..8] != MAGIC {
        return None;
    }
    let mlen = u32::from_le_bytes(head[8..12].try_into().ok()?) as usize;
    if mlen > MAX_MANIFEST || head.len() < HEAD + mlen + 8 {
        return None;
    }
    let ilen = u64::from_le_bytes(head[HEAD + mlen..HEAD + mlen + 8].try_into().ok()?);
    Some((HEAD + mlen + 8) as u64 + SIGNATURE_LEN as u64).and_then(|n| n.checked_add(ilen))
}

/// Checks length, signature, manifest and compatibility, in that order.
pub fn verify<'a>(bundle: &'a [u8], key: &VerifyingKey, device: &str) -> Result<Verified<'a>, BundleError> {
    let got = bundle.len() as u64;
    if bundle.len() < 8 || &bundle[..8] != MAGIC {
        return Err(if bundle.len() < 8 && MAGIC.starts_with(bundle) && !bundle.is_empty() {
            BundleError::Truncated { expected: (HEAD + 8 + SIGNATURE_LEN) as u64, got }
        } else {
            BundleError::NotABundle
        });
    }
    let short = |expected: u64| BundleError::Truncated { expected, got };
    if bundle.len() < HEAD {
        return Err(short((HEAD + 8 + SIGNATURE_LEN) as u64));
    }
    let mlen = u32::from_le_bytes(bundle[8..12].try_into().expect("4 bytes")) as usize;
    if mlen > MAX_MANIFEST {
        return Err(BundleError::Manifest(format!("{mlen} bytes (at most {MAX_MANIFEST})")));
    }
    let expected = announced_len(bundle).ok_or_else(|| short((HEAD + mlen + 8 + SIGNATURE_LEN) as u64))?;
    if got < expected {
        return Err(short(expected));
    }
    if got > expected {
        return Err(BundleError::TrailingBytes { expected, got });
    }
    let body = &bundle[..bundle.len() - SIGNATURE_LEN];
    let sig = Signature::from_bytes(bundle[body.len()..].try_into().expect("64 bytes"));
    key.verify(body, &sig).map_err(|_| BundleError::BadSignature)?;
    let text = std::str::from_utf8(&bundle[HEAD..HEAD + mlen]).map_err(|_| BundleError::Manifest("not UTF-8".into()))?;
    let manifest = Manifest::parse(text)?;
    if manifest.compatible != device {
        return Err(BundleError::Incompatible { bundle: manifest.compatible, device: device.into() });
    }
    Ok(Verified { manifest, image: &body[HEAD + mlen + 8..] })
}

/// A public key file: 64 hex digits (whitespace around them ignored).
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, BundleError> {
    let bytes = from_hex::<32>(text.trim())?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| BundleError::BadKey(e.to_string()))
}

/// A private key file: the 32-byte seed as 64 hex digits.
pub fn parse_signing_key(text: &str) -> Result<SigningKey, BundleError> {
    Ok(SigningKey::from_bytes(&from_hex::<32>(text.trim())?))
}

pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex<const N: usize>(s: &str) -> Result<[u8; N], BundleError> {
    if s.len() != 2 * N || !s.is_ascii() {
        return Err(BundleError::BadKey(format!("want {} hex digits, got {} characters", 2 * N, s.len())));
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| BundleError::BadKey("not hex".into()))?;
    }
    Ok(out)
}

/// A new signing key from 32 random bytes of the caller's (e.g. /dev/urandom).
pub fn signing_key_from_seed(seed: [u8; 32]) -> SigningKey {
    SigningKey::from_bytes(&seed)
}

/// CRC-32 (IEEE 802.3, as zlib), for the chunks of a transfer over a serial line.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

pub use ed25519_dalek::{SigningKey as PrivateKey, VerifyingKey as PublicKey};

#[cfg(test)]
mod tests {
    use super::*;

    const DEV: &str = "gatewayd-qemu-aarch64";

    fn key(n: u8) -> SigningKey {
        signing_key_from_seed([n; 32])
    }

    fn manifest() -> Manifest {
        Manifest { compatible: DEV.into(), version: "0.1.0+2".into() }
    }

    #[test]
    fn good_bundle_verifies_and_gives_back_the_image() {
        let image: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let b = create(&manifest(), &image, &key(1));
        assert_eq!(announced_len(&b), Some(b.len() as u64));
        let v = verify(&b, &key(1).verifying_key(), DEV).unwrap();
        assert_eq!(v.image, &image[..]);
        assert_eq!(v.manifest, manifest());
    }

    #[test]
    fn a_flipped_bit_anywhere_breaks_the_signature() {
        let b = create(&manifest(), b"#!/bin/sh\necho hi\n", &key(1));
        let k = key(1).verifying_key();
        // Every byte of the manifest, the image and the signature.
        for i in 12..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x10;
            let e = verify(&c, &k, DEV).unwrap_err();
            assert!(matches!(e, BundleError::BadSignature | BundleError::Truncated { .. } | BundleError::TrailingBytes { .. }), "byte {i}: {e}");
        }
    }

    #[test]
    fn wrong_key_is_refused_with_a_clear_message() {
        let b = create(&manifest(), b"image", &key(1));
        let e = verify(&b, &key(2).verifying_key(), DEV).unwrap_err();
        assert_eq!(e, BundleError::BadSignature);
        assert!(e.to_string().contains("signature does not verify"), "{e}");
    }

    #[test]
    fn truncated_at_every_length_is_refused_as_truncated() {
        let b = create(&manifest(), &[0x55; 300], &key(1));
        let k = key(1).verifying_key();
        for n in 1..b.len() {
            let e = verify(&b[..n], &k, DEV).unwrap_err();
            assert!(matches!(e, BundleError::Truncated { got, .. } if got == n as u64), "{n}: {e:?}");
            assert!(e.to_string().starts_with("truncated bundle"), "{e}");
        }
        assert_eq!(verify(&[], &k, DEV).unwrap_err(), BundleError::NotABundle);
        assert_eq!(verify(b"hello world, not a bundle", &k, DEV).unwrap_err(), BundleError::NotABundle);
        let mut long = b.clone();
        long.push(0);
        assert!(matches!(verify(&long, &k, DEV).unwrap_err(), BundleError::TrailingBytes { .. }));
    }

    #[test]
    fn other_device_and_bad_manifest_are_refused() {
        let m = Manifest { compatible: "other-board".into(), version: "1".into() };
        let b = create(&m, b"x", &key(1));
        assert!(matches!(verify(&b, &key(1).verifying_key(), DEV), Err(BundleError::Incompatible { .. })));
        let m = Manifest { compatible: DEV.into(), version: "has space".into() };
        let b = create(&m, b"x", &key(1));
        assert!(matches!(verify(&b, &key(1).verifying_key(), DEV), Err(BundleError::Manifest(_))));
    }

    #[test]
    fn crc32_check_values() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn key_files_round_trip_and_garbage_is_refused() {
        let k = key(9);
        let pubhex = to_hex(k.verifying_key().as_bytes());
        assert_eq!(parse_public_key(&format!("{pubhex}\n")).unwrap(), k.verifying_key());
        assert_eq!(parse_signing_key(&to_hex(&k.to_bytes())).unwrap().to_bytes(), k.to_bytes());
        assert!(parse_public_key("abc").is_err());
        assert!(parse_public_key(&"zz".repeat(32)).is_err());
        assert!(parse_public_key(&"é".repeat(32)).is_err());
    }
}
