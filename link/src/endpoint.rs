//! [`Endpoint`]: a node's UDP socket, dialling links and (on relays)
//! accepting them, with the node's TLS identity.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::sign::SingleCertAndKey;
use trine_circuit::{IdentityKey, RelayId};

use crate::config::{ALPN, LinkConfig};
use crate::error::LinkError;
use crate::link::Link;
use crate::tls::{self, OptionalClientVerifier, PinnedServerVerifier, Refusal};

/// The server name passed to rustls. SNI is off, so it never leaves the
/// host; identities are checked by key, not by name.
const SERVER_NAME: &str = "trine.invalid";

/// A QUIC endpoint: one UDP socket for all of a node's links.
///
/// Must be created and used inside a tokio runtime. Cloning gives another
/// handle to the same socket (to accept in one task and dial in others).
#[derive(Clone)]
pub struct Endpoint {
    inner: quinn::Endpoint,
    transport: Arc<quinn::TransportConfig>,
    provider: Arc<CryptoProvider>,
    /// The relay's certificate and key; `None` on a client.
    identity: Option<(RelayId, Arc<SingleCertAndKey>)>,
}

impl Endpoint {
    /// A relay's endpoint: accepts links, and dials other relays presenting
    /// `identity` so they can tell who is calling.
    pub fn relay(
        bind: SocketAddr,
        identity: &IdentityKey,
        config: &LinkConfig,
    ) -> Result<Self, LinkError> {
        let transport = config.transport()?;
        let provider = tls::provider();
        let certified = tls::certified_key(identity, &provider)?;

        let mut tls = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(OptionalClientVerifier::new(provider.clone()))
            .with_cert_resolver(certified.clone());
        tls.alpn_protocols = vec![ALPN.to_vec()];
        // No session resumption: every link proves its identities afresh.
        tls.send_tls13_tickets = 0;
        tls.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        let quic = QuicServerConfig::try_from(tls)
            .map_err(|_| LinkError::InvalidConfig("no TLS 1.3 cipher suite usable by QUIC"))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(quic));
        server.transport_config(transport.clone());

        let inner = quinn::Endpoint::server(server, bind)
            .map_err(|source| LinkError::Bind { addr: bind, source })?;
        Ok(Self {
            inner,
            transport,
            provider,
            identity: Some((identity.relay_id(), certified)),
        })
    }

    /// A client's endpoint: dials only and presents no identity.
    pub fn client(bind: SocketAddr, config: &LinkConfig) -> Result<Self, LinkError> {
        let transport = config.transport()?;
        let inner = quinn::Endpoint::client(bind)
            .map_err(|source| LinkError::Bind { addr: bind, source })?;
        Ok(Self {
            inner,
            transport,
            provider: tls::provider(),
            identity: None,
        })
    }

    /// A client's endpoint on a socket the caller prepared (for example
    /// with a firewall mark, so its packets bypass the client's own
    /// tunnel). The socket must be bound; it is made non-blocking here.
    pub fn client_on_socket(
        socket: std::net::UdpSocket,
        config: &LinkConfig,
    ) -> Result<Self, LinkError> {
        let transport = config.transport()?;
        let addr = socket
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let bind_error = |source| LinkError::Bind { addr, source };
        socket.set_nonblocking(true).map_err(bind_error)?;
        let runtime = quinn::default_runtime().ok_or_else(|| {
            bind_error(std::io::Error::other(
                "no async runtime (call inside tokio)",
            ))
        })?;
        let inner = quinn::Endpoint::new(quinn::EndpointConfig::default(), None, socket, runtime)
            .map_err(bind_error)?;
        Ok(Self {
            inner,
            transport,
            provider: tls::provider(),
            identity: None,
        })
    }

    /// The identity this endpoint presents, if it is a relay's.
    pub fn identity(&self) -> Option<RelayId> {
        self.identity.as_ref().map(|(id, _)| *id)
    }

    /// Dials the relay at `addr` and completes the handshake only if it
    /// proves the identity `expected`; otherwise fails with
    /// [`LinkError::WrongIdentity`] naming both fingerprints.
    ///
    /// Each call makes a new link; reusing one link per peer is the caller's
    /// policy (a [`Link`] is cheap to clone and share).
    pub async fn connect(&self, addr: SocketAddr, expected: RelayId) -> Result<Link, LinkError> {
        let (verifier, refusal) = PinnedServerVerifier::new(expected, self.provider.clone());
        let builder = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut tls = match &self.identity {
            Some((_, certified)) => builder.with_client_cert_resolver(certified.clone()),
            None => builder.with_no_client_auth(),
        };
        tls.alpn_protocols = vec![ALPN.to_vec()];
        tls.enable_sni = false;
        // A resumed session skips certificate verification; never resume.
        tls.resumption = rustls::client::Resumption::disabled();
        let quic = QuicClientConfig::try_from(tls)
            .map_err(|_| LinkError::InvalidConfig("no TLS 1.3 cipher suite usable by QUIC"))?;
        let mut config = quinn::ClientConfig::new(Arc::new(quic));
        config.transport_config(self.transport.clone());

        let connecting = self
            .inner
            .connect_with(config, addr, SERVER_NAME)
            .map_err(|source| LinkError::Connect { addr, source })?;
        match connecting.await {
            Ok(conn) => Ok(Link::new(conn, Some(expected))),
            Err(source) => Err(match refusal.get() {
                Some(Refusal::Mismatch(presented)) => LinkError::WrongIdentity {
                    addr,
                    expected,
                    presented: *presented,
                },
                Some(Refusal::BadCert(reason)) => LinkError::BadCertificate {
                    addr,
                    reason: *reason,
                },
                None => LinkError::Handshake { addr, source },
            }),
        }
    }

    /// Waits for the next incoming link attempt. `None` once the endpoint is
    /// closed. A client endpoint never receives any.
    ///
    /// The handshake runs in [`Incoming::accept`], so an accept loop can hand
    /// each attempt to its own task and a slow peer delays no one else.
    pub async fn accept(&self) -> Option<Incoming> {
        self.inner.accept().await.map(|inner| Incoming { inner })
    }

    /// The bound UDP address (useful after binding port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, LinkError> {
        self.inner.local_addr().map_err(LinkError::LocalAddr)
    }

    /// Closes every link at once and stops accepting.
    pub fn close(&self) {
        self.inner
            .close(quinn::VarInt::from_u32(0), b"endpoint closed");
    }

    /// Waits until every link has finished closing, so the peers were told.
    pub async fn wait_idle(&self) {
        self.inner.wait_idle().await;
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("local_addr", &self.inner.local_addr().ok())
            .field("identity", &self.identity())
            .finish_non_exhaustive()
    }
}

/// A link attempt from a peer, not yet handshaken.
#[derive(Debug)]
pub struct Incoming {
    inner: quinn::Incoming,
}

impl Incoming {
    /// The address the attempt came from.
    pub fn remote_address(&self) -> SocketAddr {
        self.inner.remote_address()
    }

    /// Runs the handshake. The link's
    /// [`peer_identity`](Link::peer_identity) is the dialling relay's
    /// identity, or `None` for a client.
    pub async fn accept(self) -> Result<Link, LinkError> {
        let addr = self.inner.remote_address();
        let handshake = |source| LinkError::Handshake { addr, source };
        let conn = self
            .inner
            .accept()
            .map_err(handshake)?
            .await
            .map_err(handshake)?;
        let peer = match conn
            .peer_identity()
            .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
            .and_then(|chain| chain.first().map(tls::identity_of))
        {
            None => None,
            Some(Ok(id)) => Some(id),
            Some(Err(reason)) => {
                // The verifier accepted it, so this cannot happen; refuse
                // rather than admit a relay with no readable identity.
                conn.close(quinn::VarInt::from_u32(0), b"bad certificate");
                return Err(LinkError::BadCertificate { addr, reason });
            }
        };
        Ok(Link::new(conn, peer))
    }

    /// Refuses the attempt (for example when over a connection limit).
    pub fn refuse(self) {
        self.inner.refuse();
    }
}
