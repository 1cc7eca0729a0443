//! The web UI's TLS: the per-device identity and the HTTPS listener.
//!
//! - [`Identity::load_or_create`]`(dir)`: the device's P-256 key
//!   (`web-key.pem`, PKCS#8, mode 0600) and its self-signed certificate
//!   (`web-cert.pem`), made on first start from the OS random source with
//!   rcgen and reused afterwards; [`Identity::fingerprint`] is the SHA-256 of
//!   the certificate, printed on the console for the installer to compare
//!   with what the browser shows. Without a directory (the embedded default
//!   configuration) a new identity is made at every start.
//! - [`TlsListener`]: an `axum::serve` listener over the web UI's
//!   [`LimitedListener`](crate::conn_limit::LimitedListener) (connection
//!   budget, idle timeout): each handshake runs in its own task with
//!   [`HANDSHAKE_TIMEOUT`], so half-open or slow clients hold neither the
//!   accept loop nor, for long, a connection slot.
//!
//! The crypto provider is graviola (pure Rust and assembly): it needs no C
//! compiler, so the aarch64-musl image cross-builds with rust-lld alone.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use p256::ecdsa::signature::Signer;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::{debug, info};

use crate::conn_limit::{IdleTimeout, LimitedListener};

pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
pub const KEY_FILE: &str = "web-key.pem";
pub const CERT_FILE: &str = "web-cert.pem";

/// The device's key and certificate.
pub struct Identity {
    key: p256::ecdsa::SigningKey,
    cert_der: Vec<u8>,
    /// True when made by this start (first boot).
    pub created: bool,
}

/// rcgen's view of the device key (rcgen's own crypto backends need C).
struct RcgenKey<'a> {
    key: &'a p256::ecdsa::SigningKey,
    public: Vec<u8>,
}

impl rcgen::PublicKeyData for RcgenKey<'_> {
    fn der_bytes(&self) -> &[u8] {
        &self.public
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl rcgen::SigningKey for RcgenKey<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let sig: p256::ecdsa::Signature = self.key.sign(msg);
        Ok(sig.to_der().as_bytes().to_vec())
    }
}

fn new_key() -> p256::ecdsa::SigningKey {
    loop {
        let mut bytes = [0u8; 32];
        getrandom::getrandom(&mut bytes).expect("the OS random source");
        // Out of range (about 2^-32): draw again.
        if let Ok(k) = p256::ecdsa::SigningKey::from_slice(&bytes) {
            return k;
        }
    }
}

impl Identity {
    /// A new key and a self-signed certificate for `localhost`, the
    /// loopback addresses and `addresses` (the box's listening addresses).
    pub fn generate(addresses: &[IpAddr]) -> Result<Identity, String> {
        let key = new_key();
        let public = key.verifying_key().to_encoded_point(false).as_bytes().to_vec();
        let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
        for a in addresses.iter().filter(|a| !a.is_unspecified() && !a.is_loopback()) {
            names.push(a.to_string());
        }
        let mut params = rcgen::CertificateParams::new(names).map_err(|e| e.to_string())?;
        params.distinguished_name.push(rcgen::DnType::CommonName, "gatewayd");
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "gatewayd device certificate");
        let mut serial = [0u8; 16];
        getrandom::getrandom(&mut serial).expect("the OS random source");
        serial[0] &= 0x7f;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        let cert = params.self_signed(&RcgenKey { key: &key, public }).map_err(|e| e.to_string())?;
        Ok(Identity { key, cert_der: cert.der().to_vec(), created: true })
    }

    /// The identity stored in `dir`, or a new one saved there; `None`: a
    /// new one kept in memory.
    pub fn load_or_create(dir: Option<&Path>, addresses: &[IpAddr]) -> Result<Identity, String> {
        let Some(dir) = dir else { return Self::generate(addresses) };
        let (key_path, cert_path) = (dir.join(KEY_FILE), dir.join(CERT_FILE));
        if key_path.exists() && cert_path.exists() {
            let key_pem = std::fs::read_to_string(&key_path).map_err(|e| format!("{}: {e}", key_path.display()))?;
            let key = p256::ecdsa::SigningKey::from_pkcs8_pem(&key_pem)
                .map_err(|e| format!("{}: not a P-256 PKCS#8 key: {e}", key_path.display()))?;
            let cert_pem = std::fs::read_to_string(&cert_path).map_err(|e| format!("{}: {e}", cert_path.display()))?;
            let cert_der = pem_der(&cert_pem, "CERTIFICATE").ok_or_else(|| format!("{}: no certificate", cert_path.display()))?;
            return Ok(Identity { key, cert_der, created: false });
        }
        let id = Self::generate(addresses)?;
        let key_pem = id.key.to_pkcs8_pem(LineEnding::LF).map_err(|e| e.to_string())?;
        crate::accounts::write_atomic(&key_path, key_pem.as_bytes(), true).map_err(|e| format!("{}: {e}", key_path.display()))?;
        crate::accounts::write_atomic(&cert_path, id.cert_pem().as_bytes(), false)
            .map_err(|e| format!("{}: {e}", cert_path.display()))?;
        info!(cert = %cert_path.display(), fingerprint = %id.fingerprint(), "web UI certificate created");
        Ok(id)
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    pub fn cert_pem(&self) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&self.cert_der);
        let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
        out
    }

    /// `AB:CD:...`: SHA-256 of the certificate, as browsers show it.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert_der)
    }

    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, String> {
        let key_der = self.key.to_pkcs8_der().map_err(|e| e.to_string())?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der.as_bytes().to_vec()));
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls_graviola::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(vec![CertificateDer::from(self.cert_der.clone())], key)
            .map_err(|e| e.to_string())?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// SHA-256 of DER bytes as colon-separated upper-case hex.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

fn pem_der(pem: &str, label: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let body = pem.split_once(&begin)?.1.split_once(&end)?.0;
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// The directory for the web identity and the accounts: the configuration
/// file's directory.
pub fn state_dir(config_path: Option<&Path>) -> Option<PathBuf> {
    config_path.map(|p| p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf())
}

pub type TlsIo = tokio_rustls::server::TlsStream<IdleTimeout<TcpStream>>;

/// HTTPS connections for `axum::serve` (module docs).
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsIo, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    pub fn new(mut inner: LimitedListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        use axum::serve::Listener;
        let local = inner.local_addr()?;
        let (tx, rx) = mpsc::channel(16);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let (io, peer) = inner.accept().await;
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                if tx.is_closed() {
                    return;
                }
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => debug!(%peer, %e, "TLS handshake failed"),
                        Err(_) => debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { rx, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(x) => x,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_is_made_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(Some(dir.path()), &["192.0.2.7".parse().unwrap()]).unwrap();
        assert!(a.created);
        let b = Identity::load_or_create(Some(dir.path()), &[]).unwrap();
        assert!(!b.created);
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint().len(), 32 * 3 - 1);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions().mode() & 0o777, 0o600);
        // Another device: another key.
        let c = Identity::generate(&[]).unwrap();
        assert_ne!(a.fingerprint(), c.fingerprint());
        assert!(b.server_config().is_ok());
        std::fs::write(dir.path().join(KEY_FILE), "garbage").unwrap();
        assert!(Identity::load_or_create(Some(dir.path()), &[]).is_err(), "a broken key is an error, not a new identity");
    }

    #[tokio::test]
    async fn a_client_pinning_the_fingerprint_completes_a_handshake_and_a_silent_one_is_dropped() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let id = Identity::generate(&[]).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let budget = crate::conn_limit::Budget::new("web", 4, crate::conn_limit::WEB_REFUSAL);
        let limited = LimitedListener::new(listener, budget, Duration::from_secs(5));
        let mut tls = TlsListener::new(limited, id.server_config().unwrap()).unwrap();
        let addr = axum::serve::Listener::local_addr(&tls).unwrap();
        // A silent TCP connection (half-open handshake) does not block the next one.
        let _silent = TcpStream::connect(addr).await.unwrap();
        let client = tokio::spawn(async move {
            let config = test_client_config(fingerprint_of_cert(&id));
            let connector = tokio_rustls::TlsConnector::from(config);
            let tcp = TcpStream::connect(addr).await.unwrap();
            let mut s = connector.connect("localhost".try_into().unwrap(), tcp).await.unwrap();
            s.write_all(b"ping").await.unwrap();
            s.flush().await.unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.unwrap();
            buf
        });
        let (mut io, _) = tokio::time::timeout(Duration::from_secs(5), axum::serve::Listener::accept(&mut tls)).await.unwrap();
        let mut buf = [0u8; 4];
        io.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        io.write_all(b"pong").await.unwrap();
        io.flush().await.unwrap();
        assert_eq!(&client.await.unwrap(), b"pong");
    }

    fn fingerprint_of_cert(id: &Identity) -> String {
        id.fingerprint()
    }

    /// A client that accepts exactly the certificate with `fingerprint`.
    pub(crate) fn test_client_config(fingerprint: String) -> Arc<rustls::ClientConfig> {
        #[derive(Debug)]
        struct Pinned(String, Arc<rustls::crypto::CryptoProvider>);
        impl rustls::client::danger::ServerCertVerifier for Pinned {
            fn verify_server_cert(
                &self,
                end_entity: &CertificateDer<'_>,
                _: &[CertificateDer<'_>],
                _: &rustls::pki_types::ServerName<'_>,
                _: &[u8],
                _: rustls::pki_types::UnixTime,
            ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
                if super::fingerprint(end_entity) == self.0 {
                    Ok(rustls::client::danger::ServerCertVerified::assertion())
                } else {
                    Err(rustls::Error::General("certificate fingerprint mismatch".into()))
                }
            }
            fn verify_tls12_signature(
                &self,
                m: &[u8],
                c: &CertificateDer<'_>,
                d: &rustls::DigitallySignedStruct,
            ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
                rustls::crypto::verify_tls12_signature(m, c, d, &self.1.signature_verification_algorithms)
            }
            fn verify_tls13_signature(
                &self,
                m: &[u8],
                c: &CertificateDer<'_>,
                d: &rustls::DigitallySignedStruct,
            ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
                rustls::crypto::verify_tls13_signature(m, c, d, &self.1.signature_verification_algorithms)
            }
            fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
                self.1.signature_verification_algorithms.supported_schemes()
            }
        }
        let provider = Arc::new(rustls_graviola::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned(fingerprint, provider)))
            .with_no_client_auth();
        Arc::new(config)
    }
}
