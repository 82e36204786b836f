//! SCRAM users in the cluster metadata (KIP-554): every broker knows every user, because the
//! credentials travel with the metadata (shard 0's metadata.json on a single broker, the
//! controller's replicated log in a cluster).
//!
//! Only what RFC 5802 lets a server keep is stored: salt, iterations, StoredKey and ServerKey
//! per user and mechanism ([`ScramCredential`]); never a password or a salted password. A
//! change ([`placement::Command::AlterScramCredentials`]) carries one user's upsertions and
//! deletions, checked and applied together, deterministically: a proposer derived the keys.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ClusterMetadata, ControlError, E};
use crate::security::sasl::scram::{ScramCredential, ScramMechanism, USER_NAME_BYTES_MAX};

/// One user's credentials, by mechanism.
pub type UserCredentials = BTreeMap<ScramMechanism, ScramCredential>;

/// One change to a user's credentials.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScramChange {
    /// Create or replace the credential of a mechanism.
    Upsert {
        /// The mechanism.
        mechanism: ScramMechanism,
        /// The new credential.
        credential: ScramCredential,
    },
    /// Remove the credential of a mechanism (the user goes when its last one does).
    Delete {
        /// The mechanism.
        mechanism: ScramMechanism,
    },
}

/// Checks a user name: not empty, not too long (Kafka refuses empty names).
pub fn validate_user_name(user: &str) -> Result<(), ControlError> {
    if user.is_empty() {
        return Err(ControlError::new(E::UnacceptableCredential, "Username must not be empty"));
    }
    if user.len() > USER_NAME_BYTES_MAX {
        let msg = format!("user names have at most {USER_NAME_BYTES_MAX} bytes");
        return Err(ControlError::new(E::UnacceptableCredential, msg));
    }
    Ok(())
}

impl ClusterMetadata {
    /// The credential of `user` for `mechanism`, if any.
    pub fn scram_credential(
        &self,
        user: &str,
        mechanism: ScramMechanism,
    ) -> Option<&ScramCredential> {
        self.users.get(user)?.get(&mechanism)
    }

    /// Applies one user's changes, all or none (the change of a
    /// [`super::placement::Command::AlterScramCredentials`]).
    pub(super) fn alter_scram(
        &mut self,
        user: &str,
        changes: &[ScramChange],
    ) -> Result<(), ControlError> {
        validate_user_name(user)?;
        let mut credentials = self.users.get(user).cloned().unwrap_or_default();
        for change in changes {
            match change {
                ScramChange::Upsert { mechanism, credential } => {
                    credential
                        .validate(*mechanism)
                        .map_err(|why| ControlError::new(E::UnacceptableCredential, why))?;
                    credentials.insert(*mechanism, credential.clone());
                }
                ScramChange::Delete { mechanism } => {
                    if credentials.remove(mechanism).is_none() {
                        let msg = "Attempt to delete a user credential that does not exist";
                        return Err(ControlError::new(E::ResourceNotFound, msg));
                    }
                }
            }
        }
        if credentials.is_empty() {
            self.users.remove(user);
        } else {
            self.users.insert(user.to_owned(), credentials);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::placement::Command;
    use super::*;

    fn credential(m: ScramMechanism, password: &str) -> ScramCredential {
        ScramCredential::from_password(m, password, b"salt", 4096)
    }

    fn alter(
        meta: &ClusterMetadata,
        user: &str,
        changes: Vec<ScramChange>,
    ) -> Result<ClusterMetadata, ControlError> {
        meta.apply(&Command::AlterScramCredentials { user: user.into(), changes })
    }

    #[test]
    fn users_are_created_replaced_and_deleted_per_mechanism() {
        let sha256 = ScramMechanism::Sha256;
        let upsert = |m, p| ScramChange::Upsert { mechanism: m, credential: credential(m, p) };
        let meta = ClusterMetadata::default();
        let meta =
            alter(&meta, "alice", vec![upsert(sha256, "a"), upsert(ScramMechanism::Sha512, "b")])
                .unwrap();
        assert_eq!(meta.users["alice"].len(), 2);
        assert_eq!(meta.version, 1);
        let meta = alter(&meta, "alice", vec![upsert(sha256, "c")]).unwrap();
        assert!(meta.scram_credential("alice", sha256).unwrap().matches_password(sha256, "c"));
        let meta = alter(&meta, "alice", vec![ScramChange::Delete { mechanism: sha256 }]).unwrap();
        assert!(meta.scram_credential("alice", sha256).is_none());
        let err =
            alter(&meta, "alice", vec![ScramChange::Delete { mechanism: sha256 }]).unwrap_err();
        assert_eq!(err.code, E::ResourceNotFound.code());
        let gone =
            alter(&meta, "alice", vec![ScramChange::Delete { mechanism: ScramMechanism::Sha512 }])
                .unwrap();
        assert!(gone.users.is_empty(), "the last credential takes the user with it");
    }

    #[test]
    fn bad_changes_change_nothing() {
        let weak = ScramCredential { iterations: 1, ..credential(ScramMechanism::Sha256, "a") };
        let changes = vec![
            ScramChange::Upsert {
                mechanism: ScramMechanism::Sha512,
                credential: credential(ScramMechanism::Sha512, "a"),
            },
            ScramChange::Upsert { mechanism: ScramMechanism::Sha256, credential: weak },
        ];
        let err = alter(&ClusterMetadata::default(), "bob", changes).unwrap_err();
        assert_eq!(err.code, E::UnacceptableCredential.code());
        let err = alter(&ClusterMetadata::default(), "", Vec::new()).unwrap_err();
        assert_eq!(err.code, E::UnacceptableCredential.code());
    }

    #[test]
    fn users_survive_the_metadata_file_and_old_files_have_none() {
        let upsert = ScramChange::Upsert {
            mechanism: ScramMechanism::Sha512,
            credential: credential(ScramMechanism::Sha512, "pw"),
        };
        let meta = alter(&ClusterMetadata::default(), "carol", vec![upsert]).unwrap();
        let json = serde_json::to_string(&meta).unwrap();
        assert!(json.contains("SCRAM-SHA-512") && !json.contains("\"pw\""), "{json}");
        let back: ClusterMetadata = serde_json::from_str(&json).unwrap();
        assert_eq!(back.users, meta.users);
        let empty = serde_json::to_string(&ClusterMetadata::default()).unwrap();
        assert!(!empty.contains("users"), "{empty}");
    }
}
