//! Kafka's `ssl.principal.mapping.rules`: how a client certificate's subject becomes the
//! name of its principal (`User:<name>`).
//!
//! The subject is written as Java's `X500Principal.getName()` writes it (RFC 2253: most
//! specific attribute first, `CN=client,OU=eng,O=Acme,C=US`), which is what Kafka's rules
//! are written against. Rules, comma-separated, first match wins:
//! - `DEFAULT`: the whole subject;
//! - `RULE:pattern/replacement/` with an optional `L` or `U` after the last slash (lower or
//!   upper case the result): when the regular expression matches the whole subject, the name
//!   is the replacement with `$1`... filled in.
//!
//! A subject no rule matches has no principal: the connection is refused, as in Kafka.
//! Pure: no I/O.

use regex::Regex;
use x509_parser::prelude::{FromDer, X509Certificate};

/// One mapping rule.
#[derive(Clone, Debug)]
enum Rule {
    Default,
    Replace { pattern: Regex, replacement: String, case: Case },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    Keep,
    Lower,
    Upper,
}

/// Parsed `ssl.principal.mapping.rules`. See the module docs.
#[derive(Clone, Debug)]
pub struct PrincipalMapper {
    rules: Vec<Rule>,
}

impl PrincipalMapper {
    /// Parses the rules; an error names the rule that cannot be read.
    pub fn parse(text: &str) -> Result<PrincipalMapper, String> {
        let mut rules = Vec::new();
        let mut rest = text.trim();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("DEFAULT") {
                rules.push(Rule::Default);
                rest = after;
            } else if let Some(after) = rest.strip_prefix("RULE:") {
                let (pattern, after) = until_slash(after)
                    .ok_or_else(|| format!("rule {rest:?}: expected RULE:pattern/replacement/"))?;
                let (replacement, after) = until_slash(after)
                    .ok_or_else(|| format!("rule {rest:?}: expected RULE:pattern/replacement/"))?;
                let (case, after) = match after.chars().next() {
                    Some('L') => (Case::Lower, &after[1..]),
                    Some('U') => (Case::Upper, &after[1..]),
                    _ => (Case::Keep, after),
                };
                let anchored = format!("^(?:{pattern})$");
                let pattern =
                    Regex::new(&anchored).map_err(|e| format!("rule pattern {pattern:?}: {e}"))?;
                rules.push(Rule::Replace {
                    pattern,
                    replacement: java_replacement(&replacement),
                    case,
                });
                rest = after;
            } else {
                return Err(format!("cannot read the rule at {rest:?} (DEFAULT or RULE:...)"));
            }
            rest = rest.trim_start();
            match rest.strip_prefix(',') {
                Some(after) => rest = after.trim_start(),
                None if rest.is_empty() => {}
                None => return Err(format!("expected a comma before {rest:?}")),
            }
        }
        if rules.is_empty() {
            return Err("no rule given (DEFAULT maps the whole subject)".into());
        }
        Ok(PrincipalMapper { rules })
    }

    /// The principal name of a certificate whose subject is `subject` (RFC 2253 form), or
    /// `None` when no rule applies.
    pub fn map(&self, subject: &str) -> Option<String> {
        for rule in &self.rules {
            match rule {
                Rule::Default => return Some(subject.to_owned()),
                Rule::Replace { pattern, replacement, case } => {
                    if !pattern.is_match(subject) {
                        continue;
                    }
                    let name = pattern.replace(subject, replacement.as_str()).into_owned();
                    return Some(match case {
                        Case::Keep => name,
                        Case::Lower => name.to_lowercase(),
                        Case::Upper => name.to_uppercase(),
                    });
                }
            }
        }
        None
    }
}

/// The text up to the first unescaped `/` (escapes kept, `\/` unescaped), and what follows.
fn until_slash(text: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, '/')) => out.push('/'),
                Some((_, other)) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            },
            '/' => return Some((out, &text[at + 1..])),
            other => out.push(other),
        }
    }
    None
}

/// Java's `$1` group references as the `regex` crate reads them (`${1}`, so that `$1x` is
/// group 1 followed by `x`, as in Java).
fn java_replacement(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            let mut digits = String::new();
            while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                digits.push(d);
                chars.next();
            }
            out.push_str(&format!("${{{digits}}}"));
        } else if c == '\\' {
            if let Some(next) = chars.next() {
                if next == '$' {
                    out.push_str("$$");
                } else {
                    out.push(next);
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The subject of a DER certificate, as RFC 2253 writes it (Java's `X500Principal.getName()`);
/// `None` if the certificate cannot be parsed.
pub fn subject_of(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let mut rdns: Vec<String> = Vec::new();
    for rdn in cert.subject().iter_rdn() {
        let attributes: Vec<String> = rdn
            .iter()
            .map(|attr| {
                let oid = attr.attr_type().to_id_string();
                match (keyword(&oid), attr.as_str()) {
                    (Some(key), Ok(value)) => format!("{key}={}", escape(value)),
                    _ => format!("{oid}=#{}", hex_der(attr.attr_value())),
                }
            })
            .collect();
        rdns.push(attributes.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

/// RFC 2253's keywords (the ones `X500Principal.getName()` uses).
fn keyword(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// RFC 2253 escaping of an attribute value.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Hex of an attribute value's DER encoding (tag, length, content), as RFC 2253 writes
/// values of attributes without a keyword.
fn hex_der(value: &x509_parser::der_parser::asn1_rs::Any<'_>) -> String {
    let data = value.data;
    let tag = value.header.tag().0 as u8;
    let mut der = vec![tag];
    match data.len() {
        n if n < 0x80 => der.push(n as u8),
        n if n <= 0xff => der.extend([0x81, n as u8]),
        n => der.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    der.extend_from_slice(data);
    der.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBJECT: &str = "CN=kafka-client,OU=Platform,O=Acme\\, Inc.,C=US";

    #[test]
    fn default_is_the_whole_subject() {
        let mapper = PrincipalMapper::parse("DEFAULT").unwrap();
        assert_eq!(mapper.map(SUBJECT).as_deref(), Some(SUBJECT));
    }

    #[test]
    fn rules_as_kafka_documents_them() {
        let rules = "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,\
                     RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L,\
                     RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L, DEFAULT";
        let mapper = PrincipalMapper::parse(rules).unwrap();
        let name = mapper.map("CN=kafka-server1,OU=ServiceUsers,O=Org,C=US");
        assert_eq!(name.as_deref(), Some("kafka-server1"));
        let name = mapper.map("CN=adminUser,OU=Admin,O=Org,L=Town,ST=State,C=US");
        assert_eq!(name.as_deref(), Some("adminuser@admin"));
        let name = mapper.map("CN=Broker.Example,O=Org");
        assert_eq!(name.as_deref(), Some("broker.example"));
        assert_eq!(mapper.map("O=Org").as_deref(), Some("O=Org"));
    }

    #[test]
    fn upper_case_slashes_and_no_match() {
        let mapper = PrincipalMapper::parse("RULE:CN=([^,]*)\\/x,.*/$1/U").unwrap();
        assert_eq!(mapper.map("CN=ab/x,O=o").as_deref(), Some("AB"));
        assert_eq!(mapper.map("O=o"), None);
        assert!(PrincipalMapper::parse("RULE:(/x").is_err());
        assert!(PrincipalMapper::parse("NOPE").is_err());
        assert!(PrincipalMapper::parse("RULE:(/$1/").is_err());
        assert!(PrincipalMapper::parse("").is_err());
    }

    #[test]
    fn subjects_are_written_most_specific_first_with_escapes() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        let mut name = rcgen::DistinguishedName::new();
        name.push(rcgen::DnType::CountryName, "US");
        name.push(rcgen::DnType::OrganizationName, "Acme, Inc.");
        name.push(rcgen::DnType::OrganizationalUnitName, "Platform");
        name.push(rcgen::DnType::CommonName, "kafka-client");
        params.distinguished_name = name;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(subject_of(cert.der()).as_deref(), Some(SUBJECT));
        assert_eq!(escape(" #a "), "\\ #a\\ ");
    }
}
