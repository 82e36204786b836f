//! SCRAM user administration on a [`Client`] (KIP-554): DescribeUserScramCredentials and
//! AlterUserScramCredentials. The password never leaves this process: the client salts and
//! hashes it (PBKDF2) and sends the salted password, as Kafka's admin client does.

use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::{protocol, Client, ClientError};
use crate::security::sasl::scram::{ScramMechanism, SALT_BYTES};

/// One user as DescribeUserScramCredentials reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserListing {
    /// The user name.
    pub name: String,
    /// Its credentials: mechanism and iterations.
    pub credentials: Vec<(ScramMechanism, i32)>,
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

impl Client {
    /// Every SCRAM user (`names` empty) or the named ones; an unknown name is an error.
    pub fn describe_users(&mut self, names: &[&str]) -> Result<Vec<UserListing>, ClientError> {
        let users = (!names.is_empty())
            .then(|| names.iter().map(|n| UserName::default().with_name(s(n))).collect());
        let req = DescribeUserScramCredentialsRequest::default().with_users(users);
        let body = RequestKind::DescribeUserScramCredentials(req);
        let (_, ResponseKind::DescribeUserScramCredentials(r)) =
            self.call(ApiKey::DescribeUserScramCredentials, 0, body)?
        else {
            return Err(protocol("DescribeUserScramCredentials answered with another message"));
        };
        ClientError::check(r.error_code, "describing users")?;
        let mut out = Vec::new();
        for result in r.results {
            ClientError::check(result.error_code, format!("user {}", result.user))?;
            let credentials = result
                .credential_infos
                .iter()
                .filter_map(|c| Some((ScramMechanism::from_kafka_type(c.mechanism)?, c.iterations)))
                .collect();
            out.push(UserListing { name: result.user.to_string(), credentials });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Creates or replaces `user`'s credential for `mechanism` from `password` (salted and
    /// hashed here, with a fresh random salt).
    pub fn upsert_user(
        &mut self,
        user: &str,
        mechanism: ScramMechanism,
        password: &str,
        iterations: i32,
    ) -> Result<(), ClientError> {
        let mut salt = vec![0u8; SALT_BYTES];
        getrandom::fill(&mut salt).map_err(|e| protocol(format!("no random numbers: {e}")))?;
        let rounds = u32::try_from(iterations).map_err(|_| protocol("negative iterations"))?;
        let salted = mechanism.salted_password(password.as_bytes(), &salt, rounds);
        let upsertion = ScramCredentialUpsertion::default()
            .with_name(s(user))
            .with_mechanism(mechanism.kafka_type())
            .with_iterations(iterations)
            .with_salt(salt.into())
            .with_salted_password(salted.into());
        let req = AlterUserScramCredentialsRequest::default().with_upsertions(vec![upsertion]);
        self.alter_users(req, user)
    }

    /// Deletes `user`'s credential for `mechanism` (the user goes with its last one).
    pub fn delete_user(
        &mut self,
        user: &str,
        mechanism: ScramMechanism,
    ) -> Result<(), ClientError> {
        let deletion = ScramCredentialDeletion::default()
            .with_name(s(user))
            .with_mechanism(mechanism.kafka_type());
        let req = AlterUserScramCredentialsRequest::default().with_deletions(vec![deletion]);
        self.alter_users(req, user)
    }

    fn alter_users(
        &mut self,
        req: AlterUserScramCredentialsRequest,
        user: &str,
    ) -> Result<(), ClientError> {
        let body = RequestKind::AlterUserScramCredentials(req);
        let (_, ResponseKind::AlterUserScramCredentials(r)) =
            self.call(ApiKey::AlterUserScramCredentials, 0, body)?
        else {
            return Err(protocol("AlterUserScramCredentials answered with another message"));
        };
        for result in &r.results {
            if result.error_code != 0 {
                let message = result.error_message.as_deref().unwrap_or("");
                let context = format!("user {user}: {message}");
                ClientError::check(result.error_code, context)?;
            }
        }
        Ok(())
    }
}
