//! TLS with rustls (ring provider, no OpenSSL): the broker's server configuration for its
//! SSL and SASL_SSL listeners, the client configuration it uses towards other brokers, and
//! the principal a client certificate maps to.
//!
//! [`BrokerTls`] loads the PEM files named by `ssl.*` ([`SslConfig`]) once at start-up, and
//! again when [`BrokerTls::reload_if_changed`] sees a file change (or on SIGHUP: the caller
//! decides when): the new configuration is used by connections accepted from then on;
//! established ones keep theirs. A file that fails to load keeps the previous configuration
//! and reports why. Readers take an `Arc` of the current configuration under a read lock,
//! once per connection, never per record.
//!
//! The PEM helpers are shared with the tools' client side ([`super::client`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use super::principal_mapping::{subject_of, PrincipalMapper};
use super::Principal;
use crate::config::listener::{ClientAuth, SslConfig};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The settings do not make a usable configuration.
    #[error("{0}")]
    Config(String),
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::File { path: path.to_owned(), reason: reason.to_string() }
}

/// The crypto provider every configuration uses (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate of a PEM file, in order (a chain: leaf first); other blocks (a private
/// key in a Kafka PEM keystore file) are skipped.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    let text = std::fs::read(path).map_err(|e| file_error(path, e))?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, format!("reading PEM: {e:?}")))?;
    if certs.is_empty() {
        return Err(file_error(path, "no CERTIFICATE block in the PEM file"));
    }
    Ok(certs)
}

/// The first private key of a PEM file (PKCS#8, PKCS#1 or SEC1; not encrypted).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    let text = std::fs::read(path).map_err(|e| file_error(path, e))?;
    if text.windows(9).any(|w| w == b"ENCRYPTED") {
        return Err(file_error(path, "encrypted private keys are not supported"));
    }
    PrivateKeyDer::from_pem_slice(&text)
        .map_err(|e| file_error(path, format!("no usable private key: {e:?}")))
}

/// A root store of every CA certificate in a PEM file.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| file_error(path, format!("not a usable CA: {e}")))?;
    }
    Ok(roots)
}

/// The protocol versions of `ssl.enabled.protocols`.
fn versions(enabled: &[String]) -> Vec<&'static rustls::SupportedProtocolVersion> {
    let mut out = Vec::new();
    if enabled.iter().any(|p| p == "TLSv1.3") {
        out.push(&rustls::version::TLS13);
    }
    if enabled.iter().any(|p| p == "TLSv1.2") {
        out.push(&rustls::version::TLS12);
    }
    out
}

/// The broker's server configuration from `ssl`.
pub fn server_config(ssl: &SslConfig) -> Result<ServerConfig, TlsError> {
    let keystore = ssl
        .keystore_location
        .as_deref()
        .ok_or_else(|| TlsError::Config("ssl.keystore.location is not set".into()))?;
    let chain = load_certs(keystore)?;
    let key = load_key(ssl.key_location.as_deref().unwrap_or(keystore))?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&versions(&ssl.enabled_protocols))
        .map_err(|e| TlsError::Config(format!("ssl.enabled.protocols: {e}")))?;
    let builder = match ssl.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        auth => {
            let path = ssl.truststore_location.as_deref().ok_or_else(|| {
                TlsError::Config("ssl.client.auth needs ssl.truststore.location".into())
            })?;
            let roots = Arc::new(load_roots(path)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider());
            let verifier = if auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier =
                verifier.build().map_err(|e| TlsError::Config(format!("client verifier: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    builder
        .with_single_cert(chain, key)
        .map_err(|e| file_error(keystore, format!("certificate and key do not match: {e}")))
}

/// Options of a TLS client configuration (the broker towards other brokers, the tools).
#[derive(Clone, Debug, Default)]
pub struct ClientTlsOptions {
    /// CA certificates the server's chain must lead to; `None`: none is trusted, so
    /// connecting fails unless `verify` is off.
    pub ca: Option<PathBuf>,
    /// This side's certificate chain (PEM), for servers that ask for one.
    pub certificate: Option<PathBuf>,
    /// Its private key (PEM); the certificate file's when `None`.
    pub key: Option<PathBuf>,
    /// Check that the certificate names the host connected to.
    pub check_hostname: bool,
    /// Check the server's certificate at all (librdkafka's
    /// `enable.ssl.certificate.verification`; off only for tests).
    pub verify: bool,
    /// TLS versions allowed; empty = 1.2 and 1.3.
    pub versions: Vec<String>,
}

/// A client configuration from `options`.
pub fn client_config(options: &ClientTlsOptions) -> Result<ClientConfig, TlsError> {
    let enabled = if options.versions.is_empty() {
        vec!["TLSv1.2".to_owned(), "TLSv1.3".to_owned()]
    } else {
        options.versions.clone()
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&versions(&enabled))
        .map_err(|e| TlsError::Config(format!("TLS versions: {e}")))?;
    let roots = match &options.ca {
        Some(path) => load_roots(path)?,
        None => RootCertStore::empty(),
    };
    let builder = if !options.verify {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerification))
    } else if options.check_hostname {
        builder.with_root_certificates(roots)
    } else {
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| TlsError::Config(format!("server verifier: {e}")))?;
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyHostname(inner)))
    };
    match &options.certificate {
        None => Ok(builder.with_no_client_auth()),
        Some(certificate) => {
            let chain = load_certs(certificate)?;
            let key = load_key(options.key.as_deref().unwrap_or(certificate))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| file_error(certificate, format!("certificate and key: {e}")))
        }
    }
}

/// Checks the server's chain against the trusted CAs but not the host name it is for
/// (Kafka's `ssl.endpoint.identification.algorithm=` empty).
#[derive(Debug)]
struct AnyHostname(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyHostname {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let checked =
            self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now);
        match checked {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Accepts any server certificate (librdkafka's `enable.ssl.certificate.verification=false`).
#[derive(Debug)]
struct NoVerification;

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &provider().signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &provider().signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider().signature_verification_algorithms.supported_schemes()
    }
}

/// The server name to present for `host` (an IP address or a DNS name).
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
        .map_err(|e| TlsError::Config(format!("{host:?} is not a valid server name: {e}")))
}

/// The broker's TLS state: server and inter-broker client configurations, reloadable. See
/// the module docs.
pub struct BrokerTls {
    ssl: SslConfig,
    mapper: PrincipalMapper,
    server: RwLock<Arc<ServerConfig>>,
    client: RwLock<Arc<ClientConfig>>,
    /// (file, modification time and length) as last loaded.
    stamps: Mutex<Vec<Stamp>>,
}

impl std::fmt::Debug for BrokerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerTls")
            .field("keystore", &self.ssl.keystore_location)
            .field("truststore", &self.ssl.truststore_location)
            .field("client_auth", &self.ssl.client_auth)
            .finish_non_exhaustive()
    }
}

impl BrokerTls {
    /// Loads every file `ssl` names.
    pub fn load(ssl: &SslConfig) -> Result<BrokerTls, TlsError> {
        let mapper = PrincipalMapper::parse(&ssl.principal_mapping_rules)
            .map_err(|e| TlsError::Config(format!("ssl.principal.mapping.rules: {e}")))?;
        let stamps = stamps(ssl);
        let (server, client) = (server_config(ssl)?, broker_client_config(ssl)?);
        Ok(BrokerTls {
            ssl: ssl.clone(),
            mapper,
            server: RwLock::new(Arc::new(server)),
            client: RwLock::new(Arc::new(client)),
            stamps: Mutex::new(stamps),
        })
    }

    /// The configuration for connections accepted now.
    pub fn server(&self) -> Arc<ServerConfig> {
        match self.server.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The configuration for connections to other brokers opened now.
    pub fn client(&self) -> Arc<ClientConfig> {
        match self.client.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reloads the files if any changed since they were loaded (modification time or size):
    /// `Ok(true)` when new configurations are in place, `Ok(false)` when nothing changed, an
    /// error (the old configurations stay) when the new files do not load.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = stamps(&self.ssl);
        let changed = match self.stamps.lock() {
            Ok(seen) => *seen != now,
            Err(_) => true,
        };
        if !changed {
            return Ok(false);
        }
        let result = self.reload();
        // Remember the failed files too: the error is reported once, not every check.
        if let Ok(mut seen) = self.stamps.lock() {
            *seen = now;
        }
        result.map(|()| true)
    }

    /// Reloads the files now (SIGHUP).
    pub fn reload(&self) -> Result<(), TlsError> {
        let (server, client) = (server_config(&self.ssl)?, broker_client_config(&self.ssl)?);
        if let Ok(mut current) = self.server.write() {
            *current = Arc::new(server);
        }
        if let Ok(mut current) = self.client.write() {
            *current = Arc::new(client);
        }
        Ok(())
    }

    /// The principal of a client that presented `chain` (leaf first): `User:<mapped subject>`,
    /// or `None` when the certificate cannot be read or no mapping rule applies.
    pub fn principal_of(&self, chain: &[CertificateDer<'_>]) -> Option<Principal> {
        let subject = subject_of(chain.first()?)?;
        self.mapper.map(&subject).map(Principal::user)
    }
}

/// Why [`accept`] refused a connection.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// The TLS handshake failed: not TLS, a protocol error, a missing or untrusted client
    /// certificate, or the connection closed.
    #[error("TLS handshake failed: {0}")]
    Handshake(std::io::Error),
    /// The client's certificate maps to no principal (`ssl.principal.mapping.rules`).
    #[error("no ssl.principal.mapping.rules rule applies to the client certificate")]
    NoPrincipal,
}

/// The server side of a TLS connection, as every SSL and SASL_SSL listener runs it: the
/// handshake with the configuration current now, then the principal of the client's
/// certificate (`None` without one). The caller bounds the time it may take. Generic over the
/// stream so that the fuzz target (`tests/fuzz_tls.rs`) drives this very code from memory.
pub async fn accept<S>(
    tls: &BrokerTls,
    stream: S,
) -> Result<(futures_rustls::server::TlsStream<S>, Option<Principal>), AcceptError>
where
    S: futures::io::AsyncRead + futures::io::AsyncWrite + Unpin,
{
    let acceptor = futures_rustls::TlsAcceptor::from(tls.server());
    let stream = acceptor.accept(stream).await.map_err(AcceptError::Handshake)?;
    let principal = match stream.get_ref().1.peer_certificates() {
        None => None,
        Some(chain) => Some(tls.principal_of(chain).ok_or(AcceptError::NoPrincipal)?),
    };
    Ok((stream, principal))
}

/// The client configuration for connections to other brokers: their certificates must
/// chain to the truststore, and this broker presents its own certificate (mTLS).
fn broker_client_config(ssl: &SslConfig) -> Result<ClientConfig, TlsError> {
    let options = ClientTlsOptions {
        ca: ssl.truststore_location.clone(),
        certificate: ssl.keystore_location.clone(),
        key: ssl.key_location.clone(),
        check_hostname: ssl.endpoint_identification,
        verify: true,
        versions: ssl.enabled_protocols.clone(),
    };
    client_config(&options)
}

/// A file and its modification time and size (`None` if it cannot be read).
type Stamp = (PathBuf, Option<(SystemTime, u64)>);

fn stamps(ssl: &SslConfig) -> Vec<Stamp> {
    [&ssl.keystore_location, &ssl.key_location, &ssl.truststore_location]
        .into_iter()
        .flatten()
        .map(|path| {
            let meta = std::fs::metadata(path).ok();
            let stamp = meta.and_then(|m| Some((m.modified().ok()?, m.len())));
            (path.clone(), stamp)
        })
        .collect()
}
