//! TLS for `wss://`: a rustls server configuration from PEM.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use crate::error::{Error, Result};
use crate::relay::config::TlsPem;

/// Builds the acceptor for `pem`.
pub fn acceptor(pem: &TlsPem) -> Result<TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem.cert)
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| Error::TlsConfig("tls.cert is not a PEM certificate chain".into()))?;
    if certs.is_empty() {
        return Err(Error::TlsConfig("tls.cert holds no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(&pem.key)
        .map_err(|_| Error::TlsConfig("tls.key is not a PEM private key".into()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::TlsConfig(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            Error::TlsConfig(format!("the certificate and key do not fit together: {e}"))
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
