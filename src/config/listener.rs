//! Named listeners, as Kafka configures them: `listeners`, `advertised.listeners`,
//! `listener.security.protocol.map` and `inter.broker.listener.name`, parsed and checked
//! into a list of [`Listener`]s, plus the broker's TLS settings ([`SslConfig`]).
//!
//! Pure and synchronous (config is a base module: it imports nothing from the crate, so the
//! [`SecurityProtocol`] enum lives here and `security::listener` re-exports it). Host names
//! of `listeners` are resolved once, here, when the configuration is built.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

/// Kafka's security protocols: what a listener speaks under the Kafka protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SecurityProtocol {
    /// Plain TCP, no authentication (`User:ANONYMOUS`).
    Plaintext,
    /// TLS; the principal comes from the client certificate when there is one.
    Ssl,
    /// SASL authentication over plain TCP.
    SaslPlaintext,
    /// SASL authentication over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// Every protocol, in Kafka's order.
    pub const ALL: [SecurityProtocol; 4] = [
        SecurityProtocol::Plaintext,
        SecurityProtocol::Ssl,
        SecurityProtocol::SaslPlaintext,
        SecurityProtocol::SaslSsl,
    ];

    /// Kafka's name (`SASL_SSL`).
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// Parses Kafka's name, in any case.
    pub fn parse(text: &str) -> Option<SecurityProtocol> {
        let text = text.trim();
        SecurityProtocol::ALL.into_iter().find(|p| p.name().eq_ignore_ascii_case(text))
    }

    /// Whether the transport is TLS (SSL and SASL_SSL).
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether clients must authenticate with SASL before anything else.
    pub fn uses_sasl(self) -> bool {
        matches!(self, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl)
    }
}

impl std::fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One listener of the broker: where it binds, what it speaks, what clients are told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    /// Its name, upper case (`PLAINTEXT`, `SECURE`, ...).
    pub name: String,
    /// What it speaks.
    pub protocol: SecurityProtocol,
    /// The address every shard binds (SO_REUSEPORT).
    pub bind: SocketAddr,
    /// Host put in Metadata (and FindCoordinator, DescribeCluster) for clients of this
    /// listener.
    pub advertised_host: String,
    /// Port put in Metadata for clients of this listener.
    pub advertised_port: u16,
}

impl Listener {
    /// A PLAINTEXT listener named `PLAINTEXT` on `bind`, advertising `bind`.
    pub fn plaintext(bind: SocketAddr) -> Listener {
        Listener {
            name: SecurityProtocol::Plaintext.name().to_owned(),
            protocol: SecurityProtocol::Plaintext,
            bind,
            advertised_host: bind.ip().to_string(),
            advertised_port: bind.port(),
        }
    }

    /// `NAME://host:port` of its advertised address.
    pub fn advertised(&self) -> String {
        format!("{}://{}", self.name, host_port(&self.advertised_host, self.advertised_port))
    }
}

/// `host:port`, with brackets around an IPv6 host.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// One `NAME://host:port` item of `listeners` or `advertised.listeners`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Listener name, upper case.
    pub name: String,
    /// Host (empty: every interface, for `listeners`).
    pub host: String,
    /// Port.
    pub port: u16,
}

/// Parses Kafka's `NAME://host:port,NAME2://[::1]:port` list; names are upper-cased and must
/// be unique.
pub fn parse_endpoints(text: &str) -> Result<Vec<Endpoint>, String> {
    let mut out: Vec<Endpoint> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let shape = || format!("expected NAME://host:port, got {item:?}");
        let (name, address) = item.split_once("://").ok_or_else(shape)?;
        let name = name.trim().to_ascii_uppercase();
        let valid = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        if name.is_empty() || !name.chars().all(valid) {
            return Err(format!("bad listener name in {item:?}"));
        }
        let (host, port) = address.rsplit_once(':').ok_or_else(shape)?;
        let port: u16 = port.parse().map_err(|_| shape())?;
        let host = host.trim_matches(['[', ']']).to_owned();
        if out.iter().any(|e| e.name == name) {
            return Err(format!("listener {name} is listed twice"));
        }
        out.push(Endpoint { name, host, port });
    }
    Ok(out)
}

/// Parses `listener.security.protocol.map` (`SECURE:SASL_SSL,INTERNAL:SSL`).
pub fn parse_protocol_map(text: &str) -> Result<BTreeMap<String, SecurityProtocol>, String> {
    let mut map = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, protocol) =
            item.split_once(':').ok_or_else(|| format!("expected NAME:PROTOCOL, got {item:?}"))?;
        let protocol = SecurityProtocol::parse(protocol).ok_or_else(|| {
            format!(
                "unknown security protocol {protocol:?} (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)"
            )
        })?;
        map.insert(name.trim().to_ascii_uppercase(), protocol);
    }
    Ok(map)
}

/// Kafka's default `listener.security.protocol.map`: each protocol's name maps to itself.
pub fn default_protocol_map() -> BTreeMap<String, SecurityProtocol> {
    SecurityProtocol::ALL.into_iter().map(|p| (p.name().to_owned(), p)).collect()
}

/// Builds the listeners from `listeners`, `advertised.listeners` (`None`: as `listeners`)
/// and `listener.security.protocol.map` (`None`: Kafka's default). A listener missing from
/// `advertised.listeners` advertises its bind address; an empty bind host binds every
/// interface (and advertises 0.0.0.0 unless `advertised.listeners` names it: set it).
pub fn build_listeners(
    listeners: &str,
    advertised: Option<&str>,
    protocol_map: Option<&str>,
) -> Result<Vec<Listener>, String> {
    let endpoints = parse_endpoints(listeners)?;
    if endpoints.is_empty() {
        return Err("no listener given".into());
    }
    let advertised = parse_endpoints(advertised.unwrap_or(""))?;
    let map = match protocol_map {
        Some(text) => parse_protocol_map(text)?,
        None => default_protocol_map(),
    };
    if let Some(extra) = advertised.iter().find(|a| !endpoints.iter().any(|e| e.name == a.name)) {
        return Err(format!("advertised listener {} is not in listeners", extra.name));
    }
    let mut out: Vec<Listener> = Vec::with_capacity(endpoints.len());
    for endpoint in endpoints {
        let protocol = *map.get(&endpoint.name).ok_or_else(|| {
            format!(
                "listener {0} has no security protocol: add {0}:<PROTOCOL> to \
                 listener.security.protocol.map",
                endpoint.name
            )
        })?;
        let host = if endpoint.host.is_empty() { "0.0.0.0" } else { endpoint.host.as_str() };
        let bind = (host, endpoint.port)
            .to_socket_addrs()
            .map_err(|e| format!("listener {}: resolving {host}: {e}", endpoint.name))?
            .next()
            .ok_or_else(|| format!("listener {}: {host} resolves to nothing", endpoint.name))?;
        if out.iter().any(|l| l.bind == bind && bind.port() != 0) {
            return Err(format!(
                "listener {} binds {bind}, as another listener does",
                endpoint.name
            ));
        }
        let (advertised_host, advertised_port) =
            match advertised.iter().find(|a| a.name == endpoint.name) {
                Some(a) if !a.host.is_empty() => (a.host.clone(), a.port),
                _ => (bind.ip().to_string(), bind.port()),
            };
        out.push(Listener {
            name: endpoint.name,
            protocol,
            bind,
            advertised_host,
            advertised_port,
        });
    }
    Ok(out)
}

/// Kafka's `ssl.client.auth`: whether TLS clients must present a certificate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// No certificate is asked for.
    #[default]
    None,
    /// A certificate is asked for; a client without one is still accepted (anonymous or
    /// SASL-authenticated).
    Requested,
    /// A client without a valid certificate is refused during the handshake.
    Required,
}

impl ClientAuth {
    /// Parses `none`, `requested` or `required`.
    pub fn parse(text: &str) -> Option<ClientAuth> {
        match text.trim().to_ascii_lowercase().as_str() {
            "none" => Some(ClientAuth::None),
            "requested" => Some(ClientAuth::Requested),
            "required" => Some(ClientAuth::Required),
            _ => None,
        }
    }

    /// Kafka's name of the setting's value.
    pub fn name(self) -> &'static str {
        match self {
            ClientAuth::None => "none",
            ClientAuth::Requested => "requested",
            ClientAuth::Required => "required",
        }
    }
}

/// The broker's TLS settings (Kafka's `ssl.*` with PEM stores), used by every SSL and
/// SASL_SSL listener, by TLS connections to other brokers and by the admin HTTP listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SslConfig {
    /// `ssl.keystore.location`: PEM file with the certificate chain (leaf first) and, unless
    /// `key_location` is set, the private key (Kafka's PEM keystore file).
    pub keystore_location: Option<PathBuf>,
    /// `ssl.keystore.key.location` (Strata's): the private key in its own PEM file.
    pub key_location: Option<PathBuf>,
    /// `ssl.truststore.location`: PEM file of the CA certificates that client certificates
    /// (and other brokers' server certificates) must chain to.
    pub truststore_location: Option<PathBuf>,
    /// `ssl.client.auth`.
    pub client_auth: ClientAuth,
    /// `ssl.principal.mapping.rules` (`DEFAULT`, `RULE:pattern/replacement/[LU]`, ...).
    pub principal_mapping_rules: String,
    /// `ssl.enabled.protocols`: TLSv1.2, TLSv1.3 or both.
    pub enabled_protocols: Vec<String>,
    /// `ssl.endpoint.identification.algorithm`: `https` checks that another broker's
    /// certificate names the host connected to; empty does not (the chain is still checked).
    pub endpoint_identification: bool,
    /// How often the certificate files are checked for changes (they are also re-read on
    /// SIGHUP); new connections use the new certificates. 0 checks on SIGHUP only.
    pub reload_check_ms: u64,
}

impl Default for SslConfig {
    fn default() -> Self {
        SslConfig {
            keystore_location: None,
            key_location: None,
            truststore_location: None,
            client_auth: ClientAuth::None,
            principal_mapping_rules: "DEFAULT".into(),
            enabled_protocols: vec!["TLSv1.2".into(), "TLSv1.3".into()],
            endpoint_identification: true,
            reload_check_ms: 10_000,
        }
    }
}

/// The admin HTTP listener's security (Redpanda's `admin_api_tls` and
/// `admin_api_require_auth`): HTTPS with the broker's certificate or its own, and bearer
/// tokens required for everything but the health endpoints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AdminSecurity {
    /// `admin_ssl_enabled`: serve HTTPS only.
    pub tls: bool,
    /// `admin_ssl_keystore_location`: PEM certificate chain (and key, unless
    /// `key_location`) of the admin listener; `None` uses `ssl.keystore.location`'s.
    pub keystore_location: Option<PathBuf>,
    /// `admin_ssl_keystore_key_location`: its private key in its own file.
    pub key_location: Option<PathBuf>,
    /// `admin_token`: a token that lets requests through (`Authorization: Bearer ...`).
    pub token: Option<super::Secret>,
    /// `admin_token_file`: tokens, one per line, re-read when the file changes.
    pub token_file: Option<PathBuf>,
    /// `admin_metrics_public`: `/metrics` needs no token (for scrapers that cannot send one).
    pub metrics_public: bool,
}

impl AdminSecurity {
    /// The TLS settings of the admin listener: its own certificate files when set, else the
    /// broker's; never client certificates (clients prove themselves with a token).
    pub fn ssl(&self, broker: &SslConfig) -> SslConfig {
        let (keystore_location, key_location) = match &self.keystore_location {
            Some(own) => (Some(own.clone()), self.key_location.clone()),
            None => (broker.keystore_location.clone(), broker.key_location.clone()),
        };
        let client_auth = ClientAuth::None;
        SslConfig { keystore_location, key_location, client_auth, ..broker.clone() }
    }

    /// Whether requests need a token.
    pub fn requires_token(&self) -> bool {
        self.token.is_some() || self.token_file.is_some()
    }

    /// Checks the settings: `(key, reason)` of the first wrong one.
    pub fn validate(&self, broker: &SslConfig) -> Result<(), (&'static str, String)> {
        if self.tls && self.ssl(broker).keystore_location.is_none() {
            let reason = "admin-ssl-enabled needs admin-ssl-keystore-location or \
                          ssl-keystore-location";
            return Err(("admin-ssl-keystore-location", reason.into()));
        }
        if self.token.is_some() && self.token_file.is_some() {
            return Err(("admin-token", "give admin-token or admin-token-file, not both".into()));
        }
        if let Some(super::Secret(token)) = &self.token {
            if token.len() < ADMIN_TOKEN_BYTES_MIN || token.chars().any(char::is_whitespace) {
                let reason = format!("must be at least {ADMIN_TOKEN_BYTES_MIN} bytes, no spaces");
                return Err(("admin-token", reason));
            }
        }
        Ok(())
    }
}

/// Shortest admin token accepted (`security::admin_auth` checks the token file's too).
pub const ADMIN_TOKEN_BYTES_MIN: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_parse_as_kafka_writes_them() {
        let listeners = build_listeners(
            "PLAINTEXT://127.0.0.1:9092,secure://127.0.0.1:9093,INTERNAL://[::1]:9094",
            Some("SECURE://broker.example:19093"),
            Some("SECURE:SASL_SSL,INTERNAL:SSL,PLAINTEXT:PLAINTEXT"),
        )
        .unwrap();
        assert_eq!(listeners.len(), 3);
        assert_eq!(listeners[0].advertised(), "PLAINTEXT://127.0.0.1:9092");
        assert_eq!(listeners[1].name, "SECURE");
        assert_eq!(listeners[1].protocol, SecurityProtocol::SaslSsl);
        assert_eq!(listeners[1].advertised(), "SECURE://broker.example:19093");
        assert_eq!(listeners[2].protocol, SecurityProtocol::Ssl);
        assert_eq!(listeners[2].advertised(), "INTERNAL://[::1]:9094");
    }

    #[test]
    fn a_listener_named_like_a_protocol_uses_it() {
        let listeners =
            build_listeners("SSL://127.0.0.1:1,SASL_PLAINTEXT://127.0.0.1:2", None, None).unwrap();
        assert_eq!(listeners[0].protocol, SecurityProtocol::Ssl);
        assert_eq!(listeners[1].protocol, SecurityProtocol::SaslPlaintext);
    }

    #[test]
    fn the_admin_listener_uses_its_own_certificate_or_the_brokers_without_client_auth() {
        let broker = SslConfig {
            keystore_location: Some("broker.pem".into()),
            key_location: Some("broker.key".into()),
            client_auth: ClientAuth::Required,
            ..SslConfig::default()
        };
        let shared = AdminSecurity { tls: true, ..AdminSecurity::default() };
        assert_eq!(shared.ssl(&broker).key_location, Some("broker.key".into()));
        assert_eq!(shared.ssl(&broker).client_auth, ClientAuth::None);
        let own = AdminSecurity { keystore_location: Some("admin.pem".into()), ..shared.clone() };
        assert_eq!(own.ssl(&broker).keystore_location, Some("admin.pem".into()));
        assert_eq!(own.ssl(&broker).key_location, None, "the key is in admin.pem");
        assert!(shared.validate(&broker).is_ok());
        assert_eq!(
            shared.validate(&SslConfig::default()).unwrap_err().0,
            "admin-ssl-keystore-location"
        );
        let short = AdminSecurity { token: Some(super::super::Secret("short".into())), ..own };
        assert_eq!(short.validate(&broker).unwrap_err().0, "admin-token");
    }

    #[test]
    fn mistakes_are_named() {
        let err = build_listeners("SECURE://127.0.0.1:1", None, None).unwrap_err();
        assert!(err.contains("listener.security.protocol.map"), "{err}");
        let err = build_listeners("A://127.0.0.1:1,a://127.0.0.1:2", None, Some("A:SSL"));
        assert!(err.unwrap_err().contains("twice"));
        let err = build_listeners("PLAINTEXT://127.0.0.1:1", Some("SSL://h:2"), None);
        assert!(err.unwrap_err().contains("not in listeners"));
        let err = build_listeners("PLAINTEXT://127.0.0.1:1,SSL://127.0.0.1:1", None, None);
        assert!(err.unwrap_err().contains("another listener"));
        assert!(parse_protocol_map("A:TLS").unwrap_err().contains("unknown security protocol"));
        assert!(parse_endpoints("127.0.0.1:9092").is_err());
        assert!(build_listeners("", None, None).is_err());
    }
}
