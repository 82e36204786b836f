//! The client side of PLAIN and SCRAM as one step function, for the `strata` tools and
//! `strata bench`: each call takes the server's last message (empty before the first) and
//! gives the next message to send, or `None` when the exchange is over (for SCRAM, after the
//! server's signature was checked: a broker that does not know the password is refused too).

use super::plain;
use super::scram::{ScramClient, ScramMechanism};
use super::SaslError;

/// One client exchange. See the module docs.
#[derive(Debug)]
pub enum ClientExchange {
    /// PLAIN: one message.
    Plain(Option<Vec<u8>>),
    /// SCRAM: client-first, client-final, then the server's signature is checked.
    Scram {
        /// The SCRAM client.
        client: ScramClient,
        /// Messages sent so far.
        sent: u8,
    },
}

impl ClientExchange {
    /// An exchange for `mechanism` (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, any case);
    /// `nonce` must be fresh random printable text without commas.
    pub fn new(
        mechanism: &str,
        user: &str,
        password: &str,
        nonce: &str,
    ) -> Result<Self, SaslError> {
        let upper = mechanism.to_ascii_uppercase();
        if upper == "PLAIN" {
            return Ok(ClientExchange::Plain(Some(plain::client_message(user, password))));
        }
        let scram = ScramMechanism::from_name(&upper).ok_or_else(|| {
            SaslError::State(format!(
                "SASL mechanism {mechanism}: the strata tools speak PLAIN, SCRAM-SHA-256 and \
                 SCRAM-SHA-512"
            ))
        })?;
        Ok(ClientExchange::Scram {
            client: ScramClient::new(scram, user, password, nonce),
            sent: 0,
        })
    }

    /// The next message, given the server's last one; `None` when done.
    pub fn step(&mut self, server: &[u8]) -> Result<Option<Vec<u8>>, SaslError> {
        match self {
            ClientExchange::Plain(message) => Ok(message.take()),
            ClientExchange::Scram { client, sent } => {
                *sent = sent.saturating_add(1);
                match *sent {
                    1 => Ok(Some(client.first_message())),
                    2 => client.final_message(server).map(Some),
                    3 => client.check_server_final(server).map(|()| None),
                    _ => Err(SaslError::State("the SCRAM exchange is over".into())),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::scram::{ScramCredential, ScramServer};
    use super::*;

    #[test]
    fn a_scram_exchange_runs_to_the_end_against_the_server() {
        let m = ScramMechanism::Sha512;
        let stored = ScramCredential::from_password(m, "pw", b"salt", 4096);
        let mut client = ClientExchange::new("scram-sha-512", "u", "pw", "cnonce").unwrap();
        let mut server = ScramServer::new(m, false);
        let first = client.step(b"").unwrap().unwrap();
        let challenge = server.client_first(&first, |_| Some(stored.clone()), "s", b"k").unwrap();
        let last = client.step(&challenge).unwrap().unwrap();
        let done = server.client_final(&last).unwrap();
        assert_eq!(client.step(&done.server_final).unwrap(), None);

        let mut plain = ClientExchange::new("PLAIN", "u", "pw", "n").unwrap();
        assert_eq!(plain.step(b"").unwrap(), Some(b"\0u\0pw".to_vec()));
        assert_eq!(plain.step(b"").unwrap(), None);
        assert!(ClientExchange::new("GSSAPI", "u", "pw", "n").is_err());
    }
}
