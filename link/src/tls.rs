//! TLS without web PKI: link certificates self-signed by a node's Ed25519
//! identity, and the rustls verifiers that pin or read that identity.
//!
//! A certificate is only a container for the key: validity dates, names and
//! the self-signature are ignored. What authenticates a peer is the TLS 1.3
//! handshake signature, made with the key in the certificate's
//! SubjectPublicKeyInfo, which the dialer compares byte for byte with the
//! identity it expected. Both the comparison and the signature check read the
//! certificate through the same parser (rustls-webpki), so they cannot
//! disagree about which key the certificate holds.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use trine_circuit::keys::{IdentityKey, KEY_LEN, RelayId};
use zeroize::Zeroizing;

use crate::error::{CertError, LinkError};

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE {
/// AlgorithmIdentifier { id-Ed25519 }, BIT STRING (0 unused bits) }, followed
/// by the 32 key bytes.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// DER prefix of a PKCS#8 v1 Ed25519 private key (RFC 8410): SEQUENCE {
/// version 0, AlgorithmIdentifier { id-Ed25519 }, OCTET STRING { OCTET
/// STRING seed } }, followed by the 32-byte seed.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The only signature scheme links use.
const SCHEME: SignatureScheme = SignatureScheme::ED25519;

/// The crypto provider of every link: rustls' ring backend.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the self-signed link certificate for `identity` and loads the key
/// into rustls, once per endpoint.
pub(crate) fn certified_key(
    identity: &IdentityKey,
    provider: &CryptoProvider,
) -> Result<Arc<SingleCertAndKey>, LinkError> {
    let seed = identity.to_secret_bytes();
    let mut pkcs8 = Zeroizing::new(Vec::with_capacity(ED25519_PKCS8_PREFIX.len() + KEY_LEN));
    pkcs8.extend_from_slice(&ED25519_PKCS8_PREFIX);
    pkcs8.extend_from_slice(&seed[..]);

    let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &PrivatePkcs8KeyDer::from(&pkcs8[..]),
        &rcgen::PKCS_ED25519,
    )?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "trine");
    let cert = params.self_signed(&key_pair)?.der().clone();

    // rustls wants an owned key; the copy it parses is dropped inside
    // `from_der`. ring keeps the expanded key for the endpoint's lifetime.
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8.to_vec()));
    let certified = CertifiedKey::from_der(vec![cert], key, provider)?;
    Ok(Arc::new(SingleCertAndKey::from(certified)))
}

/// Reads the Ed25519 identity out of a certificate.
pub(crate) fn identity_of(cert: &CertificateDer<'_>) -> Result<RelayId, CertError> {
    let parsed = ParsedCertificate::try_from(cert).map_err(|_| CertError::Malformed)?;
    let spki = parsed.subject_public_key_info();
    let key = spki
        .strip_prefix(&ED25519_SPKI_PREFIX[..])
        .and_then(|key| <[u8; KEY_LEN]>::try_from(key).ok())
        .ok_or(CertError::NotEd25519)?;
    Ok(RelayId::from_bytes(key))
}

/// Checks a TLS 1.3 handshake signature by `cert`'s key: Ed25519 only.
fn verify_signature(
    provider: &CryptoProvider,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    if dss.scheme != SCHEME {
        return Err(rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme.into());
    }
    rustls::crypto::verify_tls13_signature(
        message,
        cert,
        dss,
        &provider.signature_verification_algorithms,
    )
}

fn refuse_tls12() -> rustls::Error {
    rustls::Error::PeerIncompatible(rustls::PeerIncompatible::SupportedVersionsExtensionRequired)
}

/// Maps a certificate problem onto the alert rustls sends.
fn cert_alert(error: CertError) -> rustls::Error {
    match error {
        CertError::Malformed => CertificateError::BadEncoding.into(),
        CertError::NotEd25519 => CertificateError::ApplicationVerificationFailure.into(),
    }
}

/// Why a dial's verifier refused the server, kept so the dialer can return a
/// typed error (rustls and quinn only pass on an alert and a string).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Refusal {
    /// The certificate holds another identity.
    Mismatch(RelayId),
    /// The certificate holds no usable identity.
    BadCert(CertError),
}

/// Client side: accepts exactly one server identity. One per dial.
#[derive(Debug)]
pub(crate) struct PinnedServerVerifier {
    expected: RelayId,
    provider: Arc<CryptoProvider>,
    refusal: Arc<OnceLock<Refusal>>,
}

impl PinnedServerVerifier {
    /// A verifier for `expected`, and the slot where it records a refusal.
    pub(crate) fn new(
        expected: RelayId,
        provider: Arc<CryptoProvider>,
    ) -> (Arc<Self>, Arc<OnceLock<Refusal>>) {
        let refusal = Arc::new(OnceLock::new());
        let verifier = Self {
            expected,
            provider,
            refusal: refusal.clone(),
        };
        (Arc::new(verifier), refusal)
    }

    fn check(&self, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let refusal = match identity_of(cert) {
            Ok(presented) if presented == self.expected => return Ok(()),
            Ok(presented) => Refusal::Mismatch(presented),
            Err(error) => Refusal::BadCert(error),
        };
        // Only the first refusal matters; a handshake stops at it.
        let _ = self.refusal.set(refusal);
        Err(match refusal {
            Refusal::Mismatch(_) => CertificateError::ApplicationVerificationFailure.into(),
            Refusal::BadCert(error) => cert_alert(error),
        })
    }
}

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(refuse_tls12())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // rustls passes the certificate accepted above; check again anyway,
        // so the key that signed is provably the key that was pinned.
        self.check(cert)?;
        verify_signature(&self.provider, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SCHEME]
    }
}

/// Server side: client certificates are optional (clients present none);
/// a presented one must hold an Ed25519 key that signs the handshake.
#[derive(Debug)]
pub(crate) struct OptionalClientVerifier {
    provider: Arc<CryptoProvider>,
}

impl OptionalClientVerifier {
    pub(crate) fn new(provider: Arc<CryptoProvider>) -> Arc<Self> {
        Arc::new(Self { provider })
    }
}

impl ClientCertVerifier for OptionalClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        identity_of(end_entity).map_err(cert_alert)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(refuse_tls12())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        identity_of(cert).map_err(cert_alert)?;
        verify_signature(&self.provider, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SCHEME]
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn certificate_carries_the_identity_as_its_ed25519_spki() {
        let identity = IdentityKey::generate(&mut rand_chacha::ChaCha20Rng::seed_from_u64(1));
        let provider = provider();
        let resolver = certified_key(&identity, &provider).unwrap();
        let cert = rustls::client::ResolvesClientCert::resolve(&*resolver, &[], &[SCHEME])
            .unwrap()
            .cert[0]
            .clone();
        assert_eq!(identity_of(&cert).unwrap(), identity.relay_id());
        // The key rustls loaded is the identity's own.
        let spki = resolver_spki(&resolver);
        assert_eq!(&spki[..12], &ED25519_SPKI_PREFIX);
        assert_eq!(&spki[12..], identity.relay_id().as_bytes());
    }

    fn resolver_spki(resolver: &SingleCertAndKey) -> Vec<u8> {
        let key = rustls::client::ResolvesClientCert::resolve(resolver, &[], &[SCHEME]).unwrap();
        key.key.public_key().unwrap().to_vec()
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert_eq!(
            identity_of(&CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00])),
            Err(CertError::Malformed)
        );
        assert_eq!(
            identity_of(&CertificateDer::from(Vec::new())),
            Err(CertError::Malformed)
        );
    }

    #[test]
    fn a_non_ed25519_certificate_is_refused() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::default()
            .self_signed(&key)
            .unwrap();
        assert_eq!(identity_of(cert.der()), Err(CertError::NotEd25519));
    }
}
