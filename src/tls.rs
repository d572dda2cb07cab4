//! TLS for RTMPS and RTMPTS: loads the configured PEM certificate chain and key into a rustls
//! (ring provider) acceptor, and swaps it on reload so new handshakes use the new files.
//!
//! Sessions already running keep the TLS state they negotiated; a reload never drops them.
//! [`client_connector`] is the client side, for `rtmps://` relay upstreams.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS is not configured (set tls.cert and tls.key, or --tls-cert and --tls-key)")]
    NotConfigured,
    #[error("cannot read TLS certificate {path}: {message}")]
    Cert { path: PathBuf, message: String },
    #[error("cannot read TLS key {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("TLS certificate and key do not make a server configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The current acceptor, if a certificate is configured. Cheap to read on every accept.
pub struct TlsState {
    /// The files `reload` re-reads; a config reload may point them elsewhere.
    paths: RwLock<Option<(PathBuf, PathBuf)>>,
    acceptor: RwLock<Option<TlsAcceptor>>,
}

/// Certificate files loaded and checked, not yet in service (see [`TlsState::install`]).
pub struct PreparedTls {
    paths: Option<(PathBuf, PathBuf)>,
    acceptor: Option<TlsAcceptor>,
}

impl PreparedTls {
    /// Loads `cert` and `key` (both `None`: TLS off).
    pub fn load(cert: Option<&Path>, key: Option<&Path>) -> Result<PreparedTls, TlsError> {
        let paths = match (cert, key) {
            (Some(c), Some(k)) => Some((c.to_path_buf(), k.to_path_buf())),
            _ => None,
        };
        let acceptor = match &paths {
            Some((c, k)) => Some(load(c, k)?),
            None => None,
        };
        Ok(PreparedTls { paths, acceptor })
    }

    pub fn is_enabled(&self) -> bool {
        self.acceptor.is_some()
    }
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

impl TlsState {
    /// Loads the files now; a configured but unreadable certificate is a start-up error.
    pub fn new(cert: Option<&Path>, key: Option<&Path>) -> Result<TlsState, TlsError> {
        let p = PreparedTls::load(cert, key)?;
        Ok(TlsState {
            paths: RwLock::new(p.paths),
            acceptor: RwLock::new(p.acceptor),
        })
    }

    /// Puts loaded files in service (config reload): new handshakes use them, or are refused
    /// when TLS was turned off.
    pub fn install(&self, p: PreparedTls) {
        *write(&self.paths) = p.paths;
        *write(&self.acceptor) = p.acceptor;
    }

    /// The acceptor for a new connection, or `None` when TLS is off.
    pub fn acceptor(&self) -> Option<TlsAcceptor> {
        match self.acceptor.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-reads the certificate and key. On error the previous acceptor stays in service.
    pub fn reload(&self) -> Result<(), TlsError> {
        let paths = self.paths.read().unwrap_or_else(|p| p.into_inner()).clone();
        let Some((cert, key)) = &paths else {
            return Err(TlsError::NotConfigured);
        };
        match load(cert, key) {
            Ok(acceptor) => {
                *write(&self.acceptor) = Some(acceptor);
                info!(cert = %cert.display(), "TLS certificate reloaded");
                Ok(())
            }
            Err(e) => {
                warn!(error = %e, "TLS reload failed; keeping the previous certificate");
                Err(e)
            }
        }
    }
}

fn load(cert_path: &Path, key_path: &Path) -> Result<TlsAcceptor, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Cert {
            path: cert_path.to_path_buf(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Cert {
            path: cert_path.to_path_buf(),
            message: "no CERTIFICATE block found".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| TlsError::Key {
        path: key_path.to_path_buf(),
        message: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    // RTMPTS clients speak HTTP/1.1; offering nothing else keeps ALPN out of the way.
    config.alpn_protocols = Vec::new();
    // No session resumption: gateway sessions are long-lived, and librtmp's GnuTLS reader
    // chokes on TLS 1.3 tickets arriving after the handshake.
    config.send_tls13_tickets = 0;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Where Debian (and most distributions) keep the system's CA bundle.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A TLS client for `rtmps://` relay upstreams, verifying servers against the PEM
/// certificates in `ca_file` (the system bundle when `None`).
pub fn client_connector(ca_file: Option<&Path>) -> Result<tokio_rustls::TlsConnector, TlsError> {
    let path = ca_file.unwrap_or(Path::new(SYSTEM_CA_BUNDLE));
    let bad = |message: String| TlsError::Cert {
        path: path.to_path_buf(),
        message,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(bad("no usable CA certificate found".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_are_named() {
        let e = TlsState::new(
            Some(Path::new("/nonexistent/c.pem")),
            Some(Path::new("/nonexistent/k.pem")),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(e.contains("/nonexistent/c.pem"), "{e}");
    }

    #[test]
    fn without_paths_tls_is_off() {
        let t = TlsState::new(None, None).unwrap();
        assert!(t.acceptor().is_none());
        assert!(matches!(t.reload(), Err(TlsError::NotConfigured)));
    }
}
