//! Server certificate verification with Node.js's semantics on top of rustls's WebPKI.
//!
//! WebPKI refuses a self-signed certificate marked as a CA (`CaUsedAsEndEntity`) even when
//! the application trusts exactly that certificate; OpenSSL, and so Node.js, accept it when
//! it is in the trusted set (the `ca` option or `NODE_EXTRA_CA_CERTS`). Tests and private
//! relays use such certificates, so: a chain WebPKI accepts is accepted; otherwise a
//! self-signed leaf that is itself one of the trusted certificates is accepted once its names
//! match the host. A leaf issued by a CA is not trusted by being listed itself (OpenSSL
//! wants its chain, as without `X509_V_FLAG_PARTIAL_CHAIN`).
//! Everything else fails as WebPKI says, except an untrusted self-signed leaf, reported as
//! Node.js does (`DEPTH_ZERO_SELF_SIGNED_CERT`).

use std::sync::Arc;

use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    CertificateError, DigitallySignedStruct, Error, OtherError, SignatureScheme,
};

/// Why a chain with no trusted issuer fails, told apart as OpenSSL (and so Node.js) tells
/// it: a TLS-inspecting proxy or a private CA shows as one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Untrusted {
    /// The server sent only a self-signed certificate: `DEPTH_ZERO_SELF_SIGNED_CERT`.
    SelfSigned,
    /// The chain ends in a self-signed root nobody trusts: `SELF_SIGNED_CERT_IN_CHAIN`.
    SelfSignedInChain,
    /// The chain's last certificate has an issuer nobody trusts:
    /// `UNABLE_TO_GET_ISSUER_CERT_LOCALLY`.
    IssuerNotLocal,
}

impl Untrusted {
    /// Node.js's code.
    pub fn code(self) -> &'static str {
        match self {
            Untrusted::SelfSigned => "DEPTH_ZERO_SELF_SIGNED_CERT",
            Untrusted::SelfSignedInChain => "SELF_SIGNED_CERT_IN_CHAIN",
            Untrusted::IssuerNotLocal => "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
        }
    }
}

impl std::fmt::Display for Untrusted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Untrusted::SelfSigned => "self-signed certificate",
            Untrusted::SelfSignedInChain => "self-signed certificate in certificate chain",
            Untrusted::IssuerNotLocal => "unable to get local issuer certificate",
        })
    }
}

impl std::error::Error for Untrusted {}

/// WebPKI, plus trusted leaves.
#[derive(Debug)]
pub struct Verifier {
    inner: Arc<WebPkiServerVerifier>,
    trusted_leaves: Vec<CertificateDer<'static>>,
}

impl Verifier {
    /// Wraps `inner`; `trusted_leaves` are the certificates the application added.
    pub fn new(
        inner: Arc<WebPkiServerVerifier>,
        trusted_leaves: Vec<CertificateDer<'static>>,
    ) -> Self {
        Verifier {
            inner,
            trusted_leaves,
        }
    }
}

/// One DER element: its tag, the whole element, its contents, and what follows it.
type Tlv<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

/// Reads one DER TLV at the start of `d`.
fn tlv(d: &[u8]) -> Option<Tlv<'_>> {
    let tag = *d.first()?;
    let first = *d.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | usize::from(*d.get(2 + i)?);
        }
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    if end > d.len() {
        return None;
    }
    Some((tag, &d[..end], &d[header..end], &d[end..]))
}

/// The issuer, validity contents and subject of a certificate (DER).
fn tbs_fields(cert: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let (_, _, certificate, _) = tlv(cert)?;
    let (_, _, tbs, _) = tlv(certificate)?;
    let mut rest = tbs;
    // [0] version, optional.
    if rest.first() == Some(&0xa0) {
        rest = tlv(rest)?.3;
    }
    let rest = tlv(rest)?.3; // serialNumber
    let rest = tlv(rest)?.3; // signature algorithm
    let (_, issuer, _, rest) = tlv(rest)?;
    let (_, _, validity, rest) = tlv(rest)?;
    let (_, subject, _, _) = tlv(rest)?;
    Some((issuer, validity, subject))
}

/// True when the certificate's issuer and subject are the same name.
pub fn is_self_signed(cert: &[u8]) -> bool {
    tbs_fields(cert).is_some_and(|(issuer, _, subject)| issuer == subject)
}

/// Seconds since the epoch of a UTCTime (tag 0x17) or GeneralizedTime (0x18) `YYMMDDHHMMSSZ`.
fn parse_time(tag: u8, text: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 => {
            let yy: u64 = s.get(0..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, s.get(2..)?)
        }
        0x18 => (s.get(0..4)?.parse().ok()?, s.get(4..)?),
        _ => return None,
    };
    let field = |i: usize| -> Option<u64> { rest.get(i..i + 2)?.parse().ok() };
    let (month, day, hour, min, sec) = (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || year < 1970 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm), for years after 1970.
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + min * 60 + sec)
}

/// Where `now` lies against the certificate's validity period.
#[derive(Debug, PartialEq, Eq)]
enum Validity {
    Current,
    NotYetValid,
    /// Expired, or the dates cannot be read (refused either way).
    Expired,
}

fn validity(cert: &[u8], now: UnixTime) -> Validity {
    let check = || -> Option<Validity> {
        let (_, validity, _) = tbs_fields(cert)?;
        let (t1, _, not_before, rest) = tlv(validity)?;
        let (t2, _, not_after, _) = tlv(rest)?;
        let (from, to) = (parse_time(t1, not_before)?, parse_time(t2, not_after)?);
        let now = now.as_secs();
        Some(if now < from {
            Validity::NotYetValid
        } else if now > to {
            Validity::Expired
        } else {
            Validity::Current
        })
    };
    check().unwrap_or(Validity::Expired)
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let err = match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if is_self_signed(end_entity)
            && self
                .trusted_leaves
                .iter()
                .any(|c| c.as_ref() == end_entity.as_ref())
        {
            match validity(end_entity, now) {
                Validity::Current => {}
                Validity::NotYetValid => {
                    return Err(Error::InvalidCertificate(CertificateError::NotValidYet))
                }
                Validity::Expired => {
                    return Err(Error::InvalidCertificate(CertificateError::Expired))
                }
            }
            let cert = webpki::EndEntityCert::try_from(end_entity)
                .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
            return match cert.verify_is_valid_for_subject_name(server_name) {
                Ok(()) => Ok(ServerCertVerified::assertion()),
                Err(_) => Err(Error::InvalidCertificate(CertificateError::NotValidForName)),
            };
        }
        let unknown_issuer = matches!(
            &err,
            Error::InvalidCertificate(CertificateError::UnknownIssuer)
        );
        // A self-signed leaf alone may fail as webpki's CaUsedAsEndEntity (an `Other`);
        // with intermediates, only an unknown issuer is "untrusted" (an `Other` there is a
        // chain that reached a trusted root and broke a rule: name or path constraints).
        let leaf_alone_unknown =
            unknown_issuer || matches!(&err, Error::InvalidCertificate(CertificateError::Other(_)));
        let why = match intermediates.last() {
            None if leaf_alone_unknown && is_self_signed(end_entity) => Some(Untrusted::SelfSigned),
            _ if !unknown_issuer => None,
            // A leaf alone: webpki's UnknownIssuer is Node's UNABLE_TO_VERIFY_LEAF_SIGNATURE.
            None => None,
            Some(top) if is_self_signed(top) => Some(Untrusted::SelfSignedInChain),
            Some(_) => Some(Untrusted::IssuerNotLocal),
        };
        match why {
            Some(why) => Err(Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(why)),
            ))),
            None => Err(err),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_certificate_times() {
        assert_eq!(parse_time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(parse_time(0x17, b"251128000000Z"), Some(1_764_288_000));
        assert_eq!(parse_time(0x18, b"20251128000000Z"), Some(1_764_288_000));
        assert_eq!(parse_time(0x18, b"21000301120000Z"), Some(4_107_585_600));
        assert_eq!(parse_time(0x17, b"garbage"), None);
    }

    #[test]
    fn garbage_is_not_self_signed() {
        assert!(!is_self_signed(b""));
        assert!(!is_self_signed(&[0x30, 0x82, 0xff, 0xff]));
    }
}
