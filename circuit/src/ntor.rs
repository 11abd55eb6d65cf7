//! The ntor handshake (tor-spec §5.1.4, "The ntor handshake") over X25519 with
//! HMAC-SHA256 and HKDF-SHA256, and the key generator it yields.
//!
//! The protocol id and the node-id bytes are parameters: Trine uses
//! [`TRINE_PROTOCOL_ID`] and the relay's 32-byte Ed25519 identity as node id;
//! the tests run the same code with Tor's protocol id and 20-byte node id
//! against Tor's published vectors. Ephemeral secrets are passed in by the
//! caller, so vectors are injected by passing fixed keys.
//!
//! ```text
//! client -> relay:  ID | B | X                      (len(ID) + 64 bytes)
//! relay  -> client: Y | AUTH                        (64 bytes)
//! secret_input = EXP(X,y) | EXP(X,b) | ID | B | X | Y | PROTOID   (relay)
//!              = EXP(Y,x) | EXP(B,x) | ID | B | X | Y | PROTOID   (client)
//! verify       = HMAC(PROTOID ":verify", secret_input)
//! auth_input   = verify | ID | B | Y | X | PROTOID | "Server"
//! AUTH         = HMAC(PROTOID ":mac", auth_input)
//! PRK          = HKDF-Extract(salt = PROTOID ":key_extract", secret_input)
//! keys         = HKDF-Expand(PRK, PROTOID ":key_expand" | label, n)
//! ```

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};
use zeroize::Zeroizing;

use crate::keys::{KEY_LEN, OnionPublicKey, OnionSecretKey};

/// Trine's protocol id. Changing it makes Trine incompatible with itself.
pub const TRINE_PROTOCOL_ID: &[u8] = b"trine-ntor-curve25519-sha256-1";

/// Length of the relay's reply, `Y | AUTH`.
pub const SERVER_MESSAGE_LEN: usize = 2 * KEY_LEN;

type HmacSha256 = Hmac<Sha256>;

/// Why a handshake failed. The client's cryptographic checks (non-zero DH
/// results, AUTH) are combined into the single [`HandshakeError::Failed`],
/// decided in constant time, so a peer learns nothing about which failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// A message was not the length this handshake requires.
    #[error("handshake message has length {got}, expected {expected}")]
    BadLength {
        /// Length received.
        got: usize,
        /// Length required.
        expected: usize,
    },
    /// The client asked for a node id that is not this relay's.
    #[error("handshake is addressed to another relay")]
    WrongNode,
    /// The client used an onion key this relay does not hold (or no longer holds).
    #[error("handshake uses an unknown onion key")]
    UnknownOnionKey,
    /// A Diffie-Hellman result was all zeros or AUTH did not match.
    #[error("handshake failed")]
    Failed,
}

/// The labels derived from one protocol id.
#[derive(Debug, Clone, Copy)]
pub struct NtorProtocol<'a> {
    id: &'a [u8],
}

impl NtorProtocol<'static> {
    /// Trine's production protocol.
    pub const TRINE: Self = Self {
        id: TRINE_PROTOCOL_ID,
    };
}

impl<'a> NtorProtocol<'a> {
    /// A protocol with another id (Tor's, in the vector tests).
    pub const fn with_id(id: &'a [u8]) -> Self {
        Self { id }
    }

    fn label(&self, suffix: &[u8]) -> Vec<u8> {
        [self.id, suffix].concat()
    }

    fn hmac(&self, key_suffix: &[u8], parts: &[&[u8]]) -> [u8; 32] {
        // HMAC accepts keys of any length; this cannot fail.
        let mut mac = match HmacSha256::new_from_slice(&self.label(key_suffix)) {
            Ok(mac) => mac,
            Err(_) => unreachable_hmac(),
        };
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

#[cold]
fn unreachable_hmac() -> ! {
    // HMAC-SHA256 takes keys of any length; `new_from_slice` has no error path.
    std::process::abort()
}

/// The client half of one handshake, waiting for the relay's reply.
pub struct NtorClient<'a> {
    protocol: NtorProtocol<'a>,
    node_id: Vec<u8>,
    onion_key: OnionPublicKey,
    ephemeral: OnionSecretKey,
}

impl std::fmt::Debug for NtorClient<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NtorClient")
            .field("onion_key", &self.onion_key)
            .finish_non_exhaustive()
    }
}

impl<'a> NtorClient<'a> {
    /// Starts a handshake with the relay named `node_id` holding `onion_key`,
    /// using the fresh secret `ephemeral` (`x`). Returns the state and the
    /// client message `ID | B | X`.
    pub fn start(
        protocol: NtorProtocol<'a>,
        node_id: &[u8],
        onion_key: OnionPublicKey,
        ephemeral: OnionSecretKey,
    ) -> (Self, Vec<u8>) {
        let message = [
            node_id,
            onion_key.as_bytes(),
            ephemeral.public_key().as_bytes(),
        ]
        .concat();
        let client = Self {
            protocol,
            node_id: node_id.to_vec(),
            onion_key,
            ephemeral,
        };
        (client, message)
    }

    /// Checks the relay's reply `Y | AUTH` and derives the shared keys.
    pub fn finish(self, reply: &[u8]) -> Result<KeyGenerator, HandshakeError> {
        let reply: &[u8; SERVER_MESSAGE_LEN] =
            reply.try_into().map_err(|_| HandshakeError::BadLength {
                got: reply.len(),
                expected: SERVER_MESSAGE_LEN,
            })?;
        let (y_bytes, auth) = reply.split_at(KEY_LEN);
        let mut y = [0u8; KEY_LEN];
        y.copy_from_slice(y_bytes);
        let server_ephemeral = OnionPublicKey::from_bytes(y);
        let x_public = self.ephemeral.public_key();

        let exp_yx = self.ephemeral.diffie_hellman(&server_ephemeral);
        let exp_bx = self.ephemeral.diffie_hellman(&self.onion_key);
        let transcript = Transcript {
            node_id: &self.node_id,
            onion_key: &self.onion_key,
            client_ephemeral: &x_public,
            server_ephemeral: &server_ephemeral,
        };
        let (keys, expected_auth) = transcript.derive(&self.protocol, &exp_yx, &exp_bx);
        let ok = is_nonzero(&exp_yx) & is_nonzero(&exp_bx) & expected_auth.ct_eq(auth);
        if bool::from(ok) {
            Ok(keys)
        } else {
            Err(HandshakeError::Failed)
        }
    }
}

/// The relay half: checks the client message, answers `Y | AUTH` and
/// returns the shared keys.
///
/// `node_id` is this relay's id; `onion_keys` are the onion secrets it
/// accepts (current and, during rotation, previous); `ephemeral` is a fresh
/// secret (`y`).
pub fn server_handshake(
    protocol: NtorProtocol<'_>,
    node_id: &[u8],
    onion_keys: &[&OnionSecretKey],
    ephemeral: OnionSecretKey,
    client_message: &[u8],
) -> Result<([u8; SERVER_MESSAGE_LEN], KeyGenerator), HandshakeError> {
    let expected = node_id.len() + 2 * KEY_LEN;
    if client_message.len() != expected {
        return Err(HandshakeError::BadLength {
            got: client_message.len(),
            expected,
        });
    }
    let (asked_id, rest) = client_message.split_at(node_id.len());
    if asked_id != node_id {
        return Err(HandshakeError::WrongNode);
    }
    let (b_bytes, x_bytes) = rest.split_at(KEY_LEN);
    let onion_key = onion_keys
        .iter()
        .find(|key| key.public_key().as_bytes().as_slice() == b_bytes)
        .ok_or(HandshakeError::UnknownOnionKey)?;
    let mut x = [0u8; KEY_LEN];
    x.copy_from_slice(x_bytes);
    let client_ephemeral = OnionPublicKey::from_bytes(x);

    let exp_xy = ephemeral.diffie_hellman(&client_ephemeral);
    let exp_xb = onion_key.diffie_hellman(&client_ephemeral);
    if !bool::from(is_nonzero(&exp_xy) & is_nonzero(&exp_xb)) {
        return Err(HandshakeError::Failed);
    }
    let server_ephemeral = ephemeral.public_key();
    let onion_public = onion_key.public_key();
    let transcript = Transcript {
        node_id,
        onion_key: &onion_public,
        client_ephemeral: &client_ephemeral,
        server_ephemeral: &server_ephemeral,
    };
    let (keys, auth) = transcript.derive(&protocol, &exp_xy, &exp_xb);
    let mut reply = [0u8; SERVER_MESSAGE_LEN];
    reply[..KEY_LEN].copy_from_slice(server_ephemeral.as_bytes());
    reply[KEY_LEN..].copy_from_slice(&auth);
    Ok((reply, keys))
}

/// The public values both sides hash.
struct Transcript<'t> {
    node_id: &'t [u8],
    onion_key: &'t OnionPublicKey,
    client_ephemeral: &'t OnionPublicKey,
    server_ephemeral: &'t OnionPublicKey,
}

impl Transcript<'_> {
    /// Returns the key generator and the AUTH value for these DH results.
    fn derive(
        &self,
        protocol: &NtorProtocol<'_>,
        exp_1: &[u8; KEY_LEN],
        exp_2: &[u8; KEY_LEN],
    ) -> (KeyGenerator, [u8; 32]) {
        let secret_input: Zeroizing<Vec<u8>> = Zeroizing::new(
            [
                exp_1.as_slice(),
                exp_2,
                self.node_id,
                self.onion_key.as_bytes(),
                self.client_ephemeral.as_bytes(),
                self.server_ephemeral.as_bytes(),
                protocol.id,
            ]
            .concat(),
        );
        let verify = Zeroizing::new(protocol.hmac(b":verify", &[&secret_input]));
        let auth = protocol.hmac(
            b":mac",
            &[
                verify.as_slice(),
                self.node_id,
                self.onion_key.as_bytes(),
                self.server_ephemeral.as_bytes(),
                self.client_ephemeral.as_bytes(),
                protocol.id,
                b"Server",
            ],
        );
        let keys = KeyGenerator::extract(protocol, &secret_input);
        (keys, auth)
    }
}

fn is_nonzero(bytes: &[u8; KEY_LEN]) -> Choice {
    !bytes.ct_eq(&[0u8; KEY_LEN])
}

/// The shared secret a handshake produced (HKDF's pseudo-random key); each
/// use asks it for bytes under its own label.
pub struct KeyGenerator {
    prk: Zeroizing<[u8; 32]>,
    expand_info: Vec<u8>,
}

impl std::fmt::Debug for KeyGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyGenerator(..)")
    }
}

impl KeyGenerator {
    /// HKDF-Extract with salt `PROTOID ":key_extract"` over `ikm`. Public so
    /// Tor's KDF vectors can be checked directly.
    pub fn extract(protocol: &NtorProtocol<'_>, ikm: &[u8]) -> Self {
        let prk = Zeroizing::new(protocol.hmac(b":key_extract", &[ikm]));
        Self {
            prk,
            expand_info: protocol.label(b":key_expand"),
        }
    }

    /// Fills `out` with HKDF-Expand(PRK, `PROTOID ":key_expand"` | `label`).
    /// An empty label gives Tor's key material exactly.
    ///
    /// # Errors
    /// Only if `out` is longer than HKDF's 8160-byte maximum.
    pub fn expand(&self, label: &[u8], out: &mut [u8]) -> Result<(), HkdfTooLong> {
        let hkdf = Hkdf::<Sha256>::from_prk(self.prk.as_slice()).map_err(|_| HkdfTooLong)?;
        let info = [self.expand_info.as_slice(), label].concat();
        hkdf.expand(&info, out).map_err(|_| HkdfTooLong)
    }
}

/// More than 255 × 32 bytes were asked of HKDF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("HKDF output longer than 8160 bytes requested")]
pub struct HkdfTooLong;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::keys::IdentityKey;
    use rand::SeedableRng;

    struct Setup {
        relay_id: Vec<u8>,
        onion: OnionSecretKey,
        rng: rand_chacha::ChaCha20Rng,
    }

    fn setup() -> Setup {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let relay_id = IdentityKey::generate(&mut rng)
            .relay_id()
            .as_bytes()
            .to_vec();
        let onion = OnionSecretKey::generate(&mut rng);
        Setup {
            relay_id,
            onion,
            rng,
        }
    }

    #[test]
    fn both_halves_agree_on_keys() {
        let mut s = setup();
        let x = OnionSecretKey::generate(&mut s.rng);
        let y = OnionSecretKey::generate(&mut s.rng);
        let (client, message) =
            NtorClient::start(NtorProtocol::TRINE, &s.relay_id, s.onion.public_key(), x);
        let (reply, server_keys) =
            server_handshake(NtorProtocol::TRINE, &s.relay_id, &[&s.onion], y, &message).unwrap();
        let client_keys = client.finish(&reply).unwrap();
        let (mut a, mut b) = ([0u8; 64], [0u8; 64]);
        client_keys.expand(b"label", &mut a).unwrap();
        server_keys.expand(b"label", &mut b).unwrap();
        assert_eq!(a, b);
        let mut c = [0u8; 64];
        client_keys.expand(b"other", &mut c).unwrap();
        assert_ne!(a, c);
    }

    #[test]
    fn any_bit_flip_in_the_reply_fails_with_one_error() {
        let mut s = setup();
        let y = OnionSecretKey::generate(&mut s.rng);
        let x_bytes = *OnionSecretKey::generate(&mut s.rng).to_secret_bytes();
        let start = || {
            NtorClient::start(
                NtorProtocol::TRINE,
                &s.relay_id,
                s.onion.public_key(),
                OnionSecretKey::from_secret_bytes(x_bytes),
            )
        };
        let (_, message) = start();
        let (reply, _) =
            server_handshake(NtorProtocol::TRINE, &s.relay_id, &[&s.onion], y, &message).unwrap();
        for bit in 0..reply.len() * 8 {
            let mut bad = reply;
            bad[bit / 8] ^= 1 << (bit % 8);
            let (client, _) = start();
            assert_eq!(client.finish(&bad).unwrap_err(), HandshakeError::Failed);
        }
    }

    #[test]
    fn all_zero_dh_is_refused_on_both_sides() {
        let mut s = setup();
        // The identity point (all zeros) gives an all-zero X25519 result.
        let mut message = s.relay_id.clone();
        message.extend_from_slice(s.onion.public_key().as_bytes());
        message.extend_from_slice(&[0u8; 32]);
        let y = OnionSecretKey::generate(&mut s.rng);
        assert_eq!(
            server_handshake(NtorProtocol::TRINE, &s.relay_id, &[&s.onion], y, &message)
                .unwrap_err(),
            HandshakeError::Failed
        );

        let x = OnionSecretKey::generate(&mut s.rng);
        let (client, _) =
            NtorClient::start(NtorProtocol::TRINE, &s.relay_id, s.onion.public_key(), x);
        assert_eq!(
            client.finish(&[0u8; 64]).unwrap_err(),
            HandshakeError::Failed
        );
    }

    #[test]
    fn wrong_node_unknown_key_and_bad_lengths_are_refused() {
        let mut s = setup();
        let other = OnionSecretKey::generate(&mut s.rng);
        let x = OnionSecretKey::generate(&mut s.rng);
        let (_, message) =
            NtorClient::start(NtorProtocol::TRINE, &s.relay_id, other.public_key(), x);
        let y = || OnionSecretKey::from_secret_bytes([9; 32]);
        assert_eq!(
            server_handshake(NtorProtocol::TRINE, &s.relay_id, &[&s.onion], y(), &message)
                .unwrap_err(),
            HandshakeError::UnknownOnionKey
        );
        let mut wrong_node = message.clone();
        wrong_node[0] ^= 1;
        assert_eq!(
            server_handshake(
                NtorProtocol::TRINE,
                &s.relay_id,
                &[&s.onion],
                y(),
                &wrong_node
            )
            .unwrap_err(),
            HandshakeError::WrongNode
        );
        assert_eq!(
            server_handshake(
                NtorProtocol::TRINE,
                &s.relay_id,
                &[&s.onion],
                y(),
                &message[1..]
            )
            .unwrap_err(),
            HandshakeError::BadLength {
                got: 95,
                expected: 96
            }
        );
        // The previous key is still accepted during rotation.
        server_handshake(
            NtorProtocol::TRINE,
            &s.relay_id,
            &[&s.onion, &other],
            y(),
            &message,
        )
        .unwrap();
    }
}
