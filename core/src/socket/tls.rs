//! TLS for clients: rustls with Mozilla's roots (as Node's default store), plus the
//! certificates of `NODE_EXTRA_CA_CERTS` and of the `ca` option. Verification is always on.

use std::sync::{Arc, Mutex, OnceLock};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use crate::error::{Error, Result};
use crate::socket::verify::Verifier;

/// Certificates from the file named by `NODE_EXTRA_CA_CERTS`, read once per process as
/// Node.js does. A missing or unreadable file is logged and ignored, as Node.js does.
fn extra_ca_certs() -> &'static [CertificateDer<'static>] {
    static EXTRA: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    EXTRA.get_or_init(|| {
        let Some(path) = std::env::var_os("NODE_EXTRA_CA_CERTS") else {
            return Vec::new();
        };
        match std::fs::read(&path) {
            Ok(pem) => CertificateDer::pem_slice_iter(&pem)
                .filter_map(|c| c.ok())
                .collect(),
            Err(e) => {
                log::warn!(
                    "NODE_EXTRA_CA_CERTS: cannot read {}: {e}",
                    path.to_string_lossy()
                );
                Vec::new()
            }
        }
    })
}

/// Configurations built so far, by `ca` contents: building one parses every root, and
/// sharing one lets connections resume TLS sessions.
static CONFIGS: Mutex<Vec<CachedConfig>> = Mutex::new(Vec::new());

/// A configuration and the `ca` PEM blobs it was built for.
type CachedConfig = (Vec<Vec<u8>>, Arc<ClientConfig>);

/// How many distinct `ca` sets are remembered.
const CACHED_CONFIGS: usize = 16;

/// The client configuration for extra `ca` PEM blobs (none: Mozilla's roots and
/// `NODE_EXTRA_CA_CERTS` alone).
pub fn client_config(ca: &[Vec<u8>]) -> Result<Arc<ClientConfig>> {
    if let Ok(cache) = CONFIGS.lock() {
        if let Some((_, c)) = cache.iter().find(|(k, _)| k.as_slice() == ca) {
            return Ok(c.clone());
        }
    }
    let config = build(ca)?;
    if let Ok(mut cache) = CONFIGS.lock() {
        if cache.len() >= CACHED_CONFIGS {
            cache.remove(0);
        }
        cache.push((ca.to_vec(), config.clone()));
    }
    Ok(config)
}

fn build(ca: &[Vec<u8>]) -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let mut added: Vec<CertificateDer<'static>> = Vec::new();
    for cert in extra_ca_certs() {
        // A certificate the store cannot use is skipped, as Node.js skips it.
        let _ = roots.add(cert.clone());
        added.push(cert.clone());
    }
    for pem in ca {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| Error::arg_type("options.ca", "must hold PEM certificates"))?;
        if certs.is_empty() {
            return Err(Error::arg_type("options.ca", "must hold PEM certificates"));
        }
        for c in certs {
            roots.add(c.clone()).map_err(|e| {
                Error::TlsConfig(format!("options.ca holds an unusable certificate: {e}"))
            })?;
            added.push(c);
        }
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| Error::TlsConfig(e.to_string()))?;
    // The verifier is WebPKI's, plus Node.js's acceptance of trusted self-signed leaves
    // (see socket::verify); nothing is ever accepted unverified.
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::TlsConfig(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Verifier::new(webpki, added)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}
