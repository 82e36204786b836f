//! The tools' side of security (`strata bench`, `produce`, `consume`, `topic`, ...): the
//! settings a client connects with, from librdkafka's property names (`-X key=value`) or a
//! Java properties file (`--command-config`, where Kafka's own names are understood too).
//!
//! | property (librdkafka) | also read (Kafka client) | meaning |
//! |---|---|---|
//! | `security.protocol` | | PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL |
//! | `ssl.ca.location` | `ssl.truststore.location` (PEM) | the CAs to trust |
//! | `ssl.certificate.location` | `ssl.keystore.location` (PEM) | the client's certificate chain |
//! | `ssl.key.location` | | its private key (default: the certificate file) |
//! | `ssl.endpoint.identification.algorithm` | same | `https` (default) or `none` |
//! | `enable.ssl.certificate.verification` | | `false` skips all checks (tests only) |
//! | `sasl.mechanism` (or `sasl.mechanisms`) | same | PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 |
//! | `sasl.username`, `sasl.password` | `sasl.jaas.config` | the SASL credentials |
//!
//! Pure: parsing only; [`ClientSecurity::tls_config`] reads the PEM files.

use std::path::PathBuf;
use std::sync::Arc;

use super::tls::{client_config, ClientTlsOptions, TlsError};
use super::SecurityProtocol;

/// SASL credentials of a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaslCredentials {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// How a tool connects. See the module docs.
#[derive(Clone, Debug)]
pub struct ClientSecurity {
    /// The protocol of the listener connected to.
    pub protocol: SecurityProtocol,
    /// TLS options (used when `protocol` is SSL or SASL_SSL).
    pub tls: ClientTlsOptions,
    /// SASL credentials (used when `protocol` is SASL_*).
    pub sasl: Option<SaslCredentials>,
}

impl Default for ClientSecurity {
    fn default() -> Self {
        ClientSecurity {
            protocol: SecurityProtocol::Plaintext,
            tls: ClientTlsOptions { check_hostname: true, verify: true, ..Default::default() },
            sasl: None,
        }
    }
}

impl ClientSecurity {
    /// Settings from `properties` (later ones win); an unknown `ssl.*`, `sasl.*` or
    /// `security.*` key is an error, other keys are returned (the caller may warn).
    pub fn from_properties(
        properties: &[(String, String)],
    ) -> Result<(ClientSecurity, Vec<String>), String> {
        let mut out = ClientSecurity::default();
        let mut ignored = Vec::new();
        let (mut mechanism, mut username, mut password) = (None, None, None);
        for (key, value) in properties {
            let value = value.trim();
            match key.trim() {
                "security.protocol" => {
                    out.protocol = SecurityProtocol::parse(value)
                        .ok_or_else(|| format!("security.protocol: unknown protocol {value:?}"))?;
                }
                "ssl.ca.location" | "ssl.truststore.location" => {
                    out.tls.ca = Some(PathBuf::from(value))
                }
                "ssl.certificate.location" | "ssl.keystore.location" => {
                    out.tls.certificate = Some(PathBuf::from(value))
                }
                "ssl.key.location" => out.tls.key = Some(PathBuf::from(value)),
                "ssl.endpoint.identification.algorithm" => {
                    out.tls.check_hostname = match value.to_ascii_lowercase().as_str() {
                        "https" => true,
                        "none" | "" => false,
                        _ => return Err(format!("{key}: expected https or none, got {value:?}")),
                    }
                }
                "enable.ssl.certificate.verification" => out.tls.verify = parse_bool(key, value)?,
                "ssl.keystore.type" | "ssl.truststore.type"
                    if value.eq_ignore_ascii_case("PEM") => {}
                "ssl.key.password" | "ssl.keystore.password" | "ssl.truststore.password" => {
                    return Err(format!("{key}: encrypted keys and JKS stores are not supported"));
                }
                "sasl.mechanism" | "sasl.mechanisms" => mechanism = Some(value.to_uppercase()),
                "sasl.username" => username = Some(value.to_owned()),
                "sasl.password" => password = Some(value.to_owned()),
                "sasl.jaas.config" => {
                    username = jaas_option(value, "username").or(username);
                    password = jaas_option(value, "password").or(password);
                }
                other
                    if other.starts_with("ssl.")
                        || other.starts_with("sasl.")
                        || other.starts_with("security.") =>
                {
                    return Err(format!("unsupported property {other:?}"));
                }
                other => ignored.push(other.to_owned()),
            }
        }
        if out.protocol.uses_sasl() {
            let missing = |what: &str| format!("{} needs {what}", out.protocol);
            out.sasl = Some(SaslCredentials {
                mechanism: mechanism.unwrap_or_else(|| "PLAIN".to_owned()),
                username: username.ok_or_else(|| missing("sasl.username"))?,
                password: password.ok_or_else(|| missing("sasl.password"))?,
            });
        }
        Ok((out, ignored))
    }

    /// The rustls client configuration, when the protocol uses TLS.
    pub fn tls_config(&self) -> Result<Option<Arc<rustls::ClientConfig>>, TlsError> {
        if !self.protocol.uses_tls() {
            return Ok(None);
        }
        Ok(Some(Arc::new(client_config(&self.tls)?)))
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("{key}: expected true or false, got {value:?}")),
    }
}

/// `name="value"` in a JAAS line (`...PlainLoginModule required username="u" password="p";`).
fn jaas_option(jaas: &str, name: &str) -> Option<String> {
    let at = jaas.find(&format!("{name}="))? + name.len() + 1;
    let rest = jaas.get(at..)?;
    let rest = rest.strip_prefix('"')?;
    let end = rest.find('"')?;
    Some(rest[..end].to_owned())
}

/// A `key=value` argument (`-X security.protocol=SSL`).
pub fn parse_key_value(text: &str) -> Result<(String, String), String> {
    let (key, value) =
        text.split_once('=').ok_or_else(|| format!("expected key=value, got {text:?}"))?;
    Ok((key.trim().to_owned(), value.trim().to_owned()))
}

/// The entries of a Java properties file: `key=value` or `key: value` lines, `#` and `!`
/// comments, a trailing `\` continues a line; escapes `\t \n \\ \= \:` are undone.
pub fn parse_properties(text: &str) -> Vec<(String, String)> {
    let mut logical: Vec<String> = Vec::new();
    let mut continuing = false;
    for line in text.lines() {
        let line = if continuing { line.trim_start() } else { line.trim() };
        if !continuing && (line.is_empty() || line.starts_with('#') || line.starts_with('!')) {
            continue;
        }
        let trailing = line.len() - line.trim_end_matches('\\').len();
        let (body, continues) =
            if trailing % 2 == 1 { (&line[..line.len() - 1], true) } else { (line, false) };
        match (continuing, logical.last_mut()) {
            (true, Some(last)) => last.push_str(body),
            _ => logical.push(body.to_owned()),
        }
        continuing = continues;
    }
    logical.iter().filter_map(|line| split_property(line)).collect()
}

fn split_property(line: &str) -> Option<(String, String)> {
    let mut key = String::new();
    let mut chars = line.chars();
    let mut found = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => key.push(unescape(chars.next()?)),
            '=' | ':' => {
                found = true;
                break;
            }
            c if c.is_whitespace() => {
                found = true;
                break;
            }
            c => key.push(c),
        }
    }
    let rest: String = chars.collect();
    let rest = rest.trim_start();
    let rest =
        if found { rest.strip_prefix(['=', ':']).unwrap_or(rest).trim_start() } else { rest };
    let mut value = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            value.push(chars.next().map_or('\\', unescape));
        } else {
            value.push(c);
        }
    }
    (!key.is_empty()).then_some((key, value))
}

fn unescape(c: char) -> char {
    match c {
        't' => '\t',
        'n' => '\n',
        'r' => '\r',
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn librdkafka_names_give_tls_and_sasl_settings() {
        let (security, ignored) = ClientSecurity::from_properties(&props(&[
            ("security.protocol", "sasl_ssl"),
            ("ssl.ca.location", "/ca.pem"),
            ("ssl.endpoint.identification.algorithm", "none"),
            ("sasl.mechanism", "scram-sha-256"),
            ("sasl.username", "alice"),
            ("sasl.password", "secret"),
            ("linger.ms", "5"),
        ]))
        .unwrap();
        assert_eq!(security.protocol, SecurityProtocol::SaslSsl);
        assert_eq!(security.tls.ca.as_deref(), Some(std::path::Path::new("/ca.pem")));
        assert!(!security.tls.check_hostname);
        let sasl = security.sasl.unwrap();
        assert_eq!((sasl.mechanism.as_str(), sasl.username.as_str()), ("SCRAM-SHA-256", "alice"));
        assert_eq!(ignored, vec!["linger.ms".to_string()]);
    }

    #[test]
    fn mistakes_are_named() {
        let err = ClientSecurity::from_properties(&props(&[("security.protocol", "TLS")]));
        assert!(err.unwrap_err().contains("security.protocol"));
        let err = ClientSecurity::from_properties(&props(&[("ssl.cipher.suites", "x")]));
        assert!(err.unwrap_err().contains("ssl.cipher.suites"));
        let err = ClientSecurity::from_properties(&props(&[("security.protocol", "SASL_SSL")]));
        assert!(err.unwrap_err().contains("sasl.username"));
        assert!(parse_key_value("novalue").is_err());
    }

    #[test]
    fn java_properties_files_and_jaas_lines() {
        let text = "# client.properties\nsecurity.protocol=SASL_PLAINTEXT\n\
                    ! another comment\nsasl.mechanism : PLAIN\n\
                    sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule \\\n\
                    \x20   required username=\"bob\" password=\"p=w\";\n\
                    key\\=with\\:escapes = v\\tx\n";
        let entries = parse_properties(text);
        assert_eq!(entries[0], ("security.protocol".into(), "SASL_PLAINTEXT".into()));
        assert_eq!(entries[1], ("sasl.mechanism".into(), "PLAIN".into()));
        assert_eq!(entries[3], ("key=with:escapes".into(), "v\tx".into()));
        let (security, _) = ClientSecurity::from_properties(&entries[..3]).unwrap();
        let sasl = security.sasl.unwrap();
        assert_eq!((sasl.username.as_str(), sasl.password.as_str()), ("bob", "p=w"));
    }
}
