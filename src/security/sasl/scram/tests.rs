use super::*;

/// RFC 7677 §3's example exchange (SCRAM-SHA-256, user "user", password "pencil").
const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const SALT_B64: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
const SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                            p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

fn pencil() -> ScramCredential {
    let salt = B64.decode(SALT_B64).unwrap();
    ScramCredential::from_password(ScramMechanism::Sha256, "pencil", &salt, 4096)
}

#[test]
fn the_rfc_7677_exchange_succeeds_byte_for_byte() {
    let mut server = ScramServer::new(ScramMechanism::Sha256, false);
    let lookup = |u: &str| (u == "user").then(pencil);
    let first = server.client_first(CLIENT_FIRST.as_bytes(), lookup, SERVER_NONCE, b"k").unwrap();
    assert_eq!(std::str::from_utf8(&first).unwrap(), SERVER_FIRST);
    let done = server.client_final(CLIENT_FINAL.as_bytes()).unwrap();
    assert_eq!(done.user, "user");
    assert_eq!(std::str::from_utf8(&done.server_final).unwrap(), SERVER_FINAL);
    // Nothing more is accepted.
    assert!(server.client_final(CLIENT_FINAL.as_bytes()).is_err());
}

#[test]
fn the_client_side_interoperates_and_checks_the_server() {
    for mechanism in ScramMechanism::ALL {
        let stored = ScramCredential::from_password(mechanism, "s3cret", b"salty", 4096);
        let mut client = ScramClient::new(mechanism, "al,i=ce", "s3cret", "clientnonce");
        let mut server = ScramServer::new(mechanism, false);
        let lookup = |u: &str| (u == "al,i=ce").then(|| stored.clone());
        let first = server.client_first(&client.first_message(), lookup, "srv", b"k").unwrap();
        let last = client.final_message(&first).unwrap();
        let done = server.client_final(&last).unwrap();
        assert_eq!(done.user, "al,i=ce");
        client.check_server_final(&done.server_final).unwrap();
        assert!(client.check_server_final(b"v=AAAA").is_err());
    }
}

#[test]
fn a_wrong_password_and_an_unknown_user_fail_alike_at_the_proof() {
    let stored = ScramCredential::from_password(ScramMechanism::Sha512, "right", b"salt", 4096);
    let mut messages = Vec::new();
    for (user, password) in [("alice", "wrong"), ("nobody", "right")] {
        let mut client = ScramClient::new(ScramMechanism::Sha512, user, password, "cn");
        let mut server = ScramServer::new(ScramMechanism::Sha512, false);
        let lookup = |u: &str| (u == "alice").then(|| stored.clone());
        let first = server.client_first(&client.first_message(), lookup, "sn", b"k").unwrap();
        let last = client.final_message(&first).unwrap();
        let err = server.client_final(&last).unwrap_err();
        assert!(matches!(err, SaslError::Credentials(_)), "{err:?}");
        messages.push(err.to_string());
    }
    assert_eq!(messages[0], messages[1], "the message does not say which");
}

#[test]
fn unknown_users_get_a_stable_made_up_salt() {
    let first = |secret: &[u8]| {
        let mut server = ScramServer::new(ScramMechanism::Sha256, false);
        server.client_first(b"n,,n=ghost,r=abc", |_| None, "x", secret).unwrap()
    };
    assert_eq!(first(b"one"), first(b"one"));
    assert_ne!(first(b"one"), first(b"two"));
}

#[test]
fn malformed_and_unsupported_client_first_messages_are_refused() {
    let refused = [
        &b""[..],
        b"n",
        b"n,,",
        b"x,,n=a,r=b",
        b"p=tls-unique,,n=a,r=b",
        b"n,,m=ext,n=a,r=b",
        b"n,,n=a",
        b"n,,n=a,r=b,c",
        b"n,,n=,r=b",
        b"n,,n=a=ZZ,r=b",
        b"n,,n=a,r=b,ad",
        b"n,a=other,n=a,r=b",
        b"n,,n=a,r=b,tokenauth=true",
        b"n,,n=a,r=with space",
        b"\xff\xfe",
    ];
    for message in refused {
        let mut server = ScramServer::new(ScramMechanism::Sha256, false);
        let result = server.client_first(message, |_| Some(pencil()), "s", b"k");
        assert!(result.is_err(), "{:?} was accepted", String::from_utf8_lossy(message));
    }
    let parsed = parse_client_first(b"y,a=b=3Dc,n=b=3Dc,r=n0nce,ext=1").unwrap();
    assert_eq!(parsed.user, "b=c");
    assert_eq!(parsed.gs2_header, "y,a=b=3Dc,");
    assert_eq!(parsed.extensions, vec![("ext".to_owned(), "1".to_owned())]);
}

#[test]
fn a_final_message_must_echo_the_header_and_the_nonce() {
    let tamper = [
        CLIENT_FINAL.replace("c=biws", "c=eSws"),
        CLIENT_FINAL.replace("r=rOprNG", "r=xOprNG"),
        CLIENT_FINAL.replace(",p=", ",q="),
        CLIENT_FINAL.replace("p=dHzb", "p=AHzb"),
        CLIENT_FINAL.replace("p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", "p=AAAA"),
        "c=biws".to_owned(),
    ];
    for message in tamper {
        let mut server = ScramServer::new(ScramMechanism::Sha256, false);
        let lookup = |_: &str| Some(pencil());
        server.client_first(CLIENT_FIRST.as_bytes(), lookup, SERVER_NONCE, b"k").unwrap();
        assert!(server.client_final(message.as_bytes()).is_err(), "{message} was accepted");
    }
}

#[test]
fn credentials_round_trip_through_json_and_are_validated() {
    let credential = pencil();
    let json = serde_json::to_string(&credential).unwrap();
    assert!(json.contains(SALT_B64), "{json}");
    let back: ScramCredential = serde_json::from_str(&json).unwrap();
    assert_eq!(back, credential);
    assert!(credential.validate(ScramMechanism::Sha256).is_ok());
    assert!(credential.validate(ScramMechanism::Sha512).is_err(), "key sizes differ");
    let weak = ScramCredential { iterations: 4095, ..credential.clone() };
    assert!(weak.validate(ScramMechanism::Sha256).unwrap_err().contains("minimum"));
    let slow = ScramCredential { iterations: 16385, ..credential.clone() };
    assert!(slow.validate(ScramMechanism::Sha256).unwrap_err().contains("maximum"));
    assert!(!format!("{credential:?}").contains("stored_key"));
}

#[test]
fn plain_passwords_check_against_scram_credentials() {
    let credential = pencil();
    assert!(credential.matches_password(ScramMechanism::Sha256, "pencil"));
    assert!(!credential.matches_password(ScramMechanism::Sha256, "pencil "));
}

#[test]
fn saslnames_escape_commas_and_equals() {
    assert_eq!(encode_saslname("a,b=c"), "a=2Cb=3Dc");
    assert_eq!(decode_saslname("a=2Cb=3Dc").unwrap(), "a,b=c");
    assert!(decode_saslname("a=").is_err());
    assert!(decode_saslname("a=2").is_err());
    assert!(decode_saslname("a=41").is_err());
    assert_eq!(ScramMechanism::from_kafka_type(2), Some(ScramMechanism::Sha512));
    assert_eq!(ScramMechanism::from_kafka_type(0), None);
    assert_eq!(ScramMechanism::from_name("SCRAM-SHA-256"), Some(ScramMechanism::Sha256));
    assert_eq!(ScramMechanism::from_name("scram-sha-256"), None);
}

#[test]
fn librdkafkas_doubled_client_nonce_is_accepted_and_nothing_else() {
    let (client, server) = ("rOprNGfwEbeRWgbNEkqO", SERVER_NONCE);
    let nonce = format!("{client}{server}");
    let bytes = client.len();
    assert!(nonce_echoed(&nonce, &nonce, bytes));
    // librdkafka < 2.6.1: the client's nonce once more in front (confluentinc/librdkafka#4895).
    assert!(nonce_echoed(&format!("{client}{nonce}"), &nonce, bytes));
    // The server's part must still be there in full, and nothing else may be prepended.
    assert!(!nonce_echoed(client, &nonce, bytes));
    assert!(!nonce_echoed(&format!("x{nonce}"), &nonce, bytes));
    assert!(!nonce_echoed(&format!("{nonce}{nonce}"), &nonce, bytes));
    assert!(!nonce_echoed(&format!("{client}{client}"), &nonce, bytes));
}
