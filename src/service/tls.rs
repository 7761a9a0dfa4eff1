//! TLS on the listeners (rustls with aws-lc-rs): the certificate and key read from PEM
//! files and read again when either changes — new handshakes get the new certificate,
//! connections already open keep theirs — and client certificates verified against
//! `tls.client_ca_file` when it is set.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read `{path}`: {message}")]
    Read { path: String, message: String },
    #[error("`{path}` holds no {what}")]
    Empty { path: String, what: &'static str },
    #[error("the key in `{path}` is not usable: {message}")]
    Key { path: String, message: String },
    #[error("cannot set up TLS: {0}")]
    Setup(String),
}

/// The certificate in force, swapped whole when the files change.
#[derive(Debug)]
pub struct Certificates {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone(),
        )
    }
}

impl Certificates {
    /// Reads the files again and puts the new certificate in force; on failure the one in
    /// force stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let loaded = Arc::new(certified_key(&self.cert_file, &self.key_file)?);
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = loaded;
        Ok(())
    }

    fn stamps(&self) -> (Option<SystemTime>, Option<SystemTime>) {
        let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
        (modified(&self.cert_file), modified(&self.key_file))
    }
}

/// The acceptor of `tls`, and its certificates for [`watch`].
pub fn acceptor(tls: &TlsConfig) -> Result<Option<(TlsAcceptor, Arc<Certificates>)>, TlsError> {
    let (Some(cert_file), Some(key_file)) = (&tls.cert_file, &tls.key_file) else {
        return Ok(None);
    };
    let certificates = Arc::new(Certificates {
        cert_file: cert_file.clone(),
        key_file: key_file.clone(),
        current: RwLock::new(Arc::new(certified_key(cert_file, key_file)?)),
    });
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::Setup(error.to_string()))?;
    let builder = match &tls.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca_file) => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in read_certificates(ca_file)? {
                roots
                    .add(certificate)
                    .map_err(|error| TlsError::Setup(error.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|error| TlsError::Setup(error.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(certificates.clone());
    // HTTP/1.1 for the console and `/metrics` on the admin listener (a browser or a
    // scraper may not speak HTTP/2); gRPC clients pick h2.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some((TlsAcceptor::from(Arc::new(config)), certificates)))
}

/// Reads the certificate files again whenever their modification times change.
pub async fn watch(certificates: Arc<Certificates>, every: Duration) {
    let mut seen = certificates.stamps();
    loop {
        tokio::time::sleep(every).await;
        let now = certificates.stamps();
        if now == seen {
            continue;
        }
        match certificates.reload() {
            Ok(()) => {
                tracing::info!(cert_file = %certificates.cert_file.display(), "TLS certificate reloaded");
                seen = now;
            }
            // A half-written pair is tried again at the next change.
            Err(error) => {
                tracing::warn!(%error, "TLS certificate not reloaded; the one in force stays")
            }
        }
    }
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read_error = |message: String| TlsError::Read {
        path: path.display().to_string(),
        message,
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| read_error(error.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| read_error(error.to_string()))?;
    if certificates.is_empty() {
        return Err(TlsError::Empty {
            path: path.display().to_string(),
            what: "PEM certificate",
        });
    }
    Ok(certificates)
}

fn certified_key(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = read_certificates(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|error| TlsError::Read {
        path: key_file.display().to_string(),
        message: error.to_string(),
    })?;
    let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key).map_err(|error| {
        TlsError::Key {
            path: key_file.display().to_string(),
            message: error.to_string(),
        }
    })?;
    let certified = CertifiedKey::new(chain, signing);
    // A key that is not the certificate's (one file replaced, the other not yet) is
    // refused, so the pair in force stays.
    certified.keys_match().map_err(|error| TlsError::Key {
        path: key_file.display().to_string(),
        message: format!("it does not match `{}`: {error}", cert_file.display()),
    })?;
    Ok(certified)
}
