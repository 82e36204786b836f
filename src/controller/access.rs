//! Cluster-wide access settings kept in the cluster metadata: ACL rules (CreateAcls,
//! DeleteAcls) and client quota overrides (AlterClientQuotas).
//!
//! They are stored as Kafka sends them (wire codes, entity types and names), checked by the
//! broker that takes the request (`server::handlers::acls` and `quotas`, with the rules of
//! `security`) before it proposes the change, and applied here deterministically:
//! [`Command::CreateAcls`] adds the rules not already present, [`Command::DeleteAcls`]
//! removes exactly the rules it lists (the proposer matched the filters against its view),
//! [`Command::AlterClientQuotas`] sets and removes quota keys per entity, dropping an entity
//! left without keys. On a single broker the same commands change `metadata.json` (see
//! `server::shard::Shard::control`); in a cluster they go through the controller quorum.
//!
//! [`Command::CreateAcls`]: super::placement::Command::CreateAcls
//! [`Command::DeleteAcls`]: super::placement::Command::DeleteAcls
//! [`Command::AlterClientQuotas`]: super::placement::Command::AlterClientQuotas

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ClusterMetadata, ControlError, E};
use crate::config::limits;

/// One ACL, with Kafka's wire codes (see `security::acl` for their meaning).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclRule {
    /// `ResourceType` code.
    pub resource_type: i8,
    /// Resource name (`*` for every resource of the type when literal).
    pub resource_name: String,
    /// `PatternType` code (literal or prefixed).
    pub pattern_type: i8,
    /// `Type:name`.
    pub principal: String,
    /// IP address or `*`.
    pub host: String,
    /// `AclOperation` code.
    pub operation: i8,
    /// `AclPermissionType` code.
    pub permission: i8,
}

/// A quota value (bytes per second, or a percentage). A newtype so that metadata, which is
/// compared for equality, can hold it: values are compared bit for bit.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct QuotaValue(pub f64);

impl PartialEq for QuotaValue {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for QuotaValue {}

/// A client quota entity (KIP-546): entity type (`user`, `client-id`) → name, `None` for the
/// default entity of that type.
pub type QuotaEntity = BTreeMap<String, Option<String>>;

/// The quota overrides of one entity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientQuota {
    /// The entity.
    pub entity: QuotaEntity,
    /// Quota key (`producer_byte_rate`, ...) → value.
    pub values: BTreeMap<String, QuotaValue>,
}

/// One entry of AlterClientQuotas, checked: keys to set and keys to remove.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaChange {
    /// The entity.
    pub entity: QuotaEntity,
    /// Keys set to these values.
    pub set: BTreeMap<String, QuotaValue>,
    /// Keys removed.
    pub remove: Vec<String>,
}

impl ClusterMetadata {
    /// Adds the rules not yet present (adding an existing rule is not an error, as in Kafka).
    pub(super) fn create_acls(&mut self, rules: &[AclRule]) -> Result<(), ControlError> {
        let new: Vec<&AclRule> = rules.iter().filter(|r| !self.acls.contains(r)).collect();
        if self.acls.len() + new.len() > limits::ACLS_MAX {
            let msg = format!("the cluster holds at most {} ACLs", limits::ACLS_MAX);
            return Err(ControlError::new(E::PolicyViolation, msg));
        }
        for rule in new {
            if !self.acls.contains(rule) {
                self.acls.push(rule.clone());
            }
        }
        Ok(())
    }

    /// Removes exactly these rules (those already gone are ignored).
    pub(super) fn delete_acls(&mut self, rules: &[AclRule]) {
        self.acls.retain(|r| !rules.contains(r));
    }

    /// Applies quota changes in order; an entity left without keys is dropped.
    pub(super) fn alter_client_quotas(
        &mut self,
        changes: &[QuotaChange],
    ) -> Result<(), ControlError> {
        for change in changes {
            let position = self.client_quotas.iter().position(|q| q.entity == change.entity);
            let mut quota = match position {
                Some(i) => self.client_quotas.remove(i),
                None => ClientQuota { entity: change.entity.clone(), values: BTreeMap::new() },
            };
            for key in &change.remove {
                quota.values.remove(key);
            }
            quota.values.extend(change.set.iter().map(|(k, v)| (k.clone(), *v)));
            if !quota.values.is_empty() {
                self.client_quotas.push(quota);
            }
        }
        if self.client_quotas.len() > limits::CLIENT_QUOTA_ENTITIES_MAX {
            let msg = format!(
                "the cluster holds at most {} quota entities",
                limits::CLIENT_QUOTA_ENTITIES_MAX
            );
            return Err(ControlError::new(E::PolicyViolation, msg));
        }
        self.client_quotas.sort_by(|a, b| a.entity.cmp(&b.entity));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::placement::Command;

    fn rule(name: &str) -> AclRule {
        AclRule {
            resource_type: 2,
            resource_name: name.into(),
            pattern_type: 3,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: 3,
            permission: 3,
        }
    }

    fn entity(user: Option<&str>) -> QuotaEntity {
        [("user".to_owned(), user.map(str::to_owned))].into_iter().collect()
    }

    #[test]
    fn acls_are_created_once_deleted_exactly_and_stored() {
        let meta = ClusterMetadata::new_cluster();
        let create = Command::CreateAcls { rules: vec![rule("a"), rule("b"), rule("a")] };
        let meta = meta.apply(&create).unwrap();
        assert_eq!(meta.acls, vec![rule("a"), rule("b")]);
        let again = meta.apply(&create).unwrap();
        assert_eq!(again.acls, meta.acls, "creating existing ACLs changes nothing");
        assert!(again.version > meta.version);
        let meta = meta.apply(&Command::DeleteAcls { rules: vec![rule("a"), rule("z")] }).unwrap();
        assert_eq!(meta.acls, vec![rule("b")]);
        let json = serde_json::to_string(&meta).unwrap();
        let back: ClusterMetadata = serde_json::from_str(&json).unwrap();
        assert_eq!(back.acls, meta.acls);
        let empty = serde_json::to_string(&ClusterMetadata::default()).unwrap();
        assert!(!empty.contains("acls") && !empty.contains("client_quotas"), "{empty}");
    }

    #[test]
    fn quota_changes_set_remove_and_drop_empty_entities() {
        let meta = ClusterMetadata::new_cluster();
        let set = |user, key: &str, value| QuotaChange {
            entity: entity(user),
            set: [(key.to_owned(), QuotaValue(value))].into_iter().collect(),
            remove: vec![],
        };
        let changes = vec![
            set(Some("alice"), "producer_byte_rate", 1024.0),
            set(None, "consumer_byte_rate", 2048.0),
            set(Some("alice"), "request_percentage", 50.0),
        ];
        let meta = meta.apply(&Command::AlterClientQuotas { changes }).unwrap();
        assert_eq!(meta.client_quotas.len(), 2);
        let alice = meta.client_quotas.iter().find(|q| q.entity == entity(Some("alice"))).unwrap();
        assert_eq!(alice.values.len(), 2);
        let remove = QuotaChange {
            entity: entity(None),
            set: BTreeMap::new(),
            remove: vec!["consumer_byte_rate".into()],
        };
        let meta = meta.apply(&Command::AlterClientQuotas { changes: vec![remove] }).unwrap();
        assert_eq!(meta.client_quotas.len(), 1, "the default entity had no key left");
        let json = serde_json::to_string(&meta).unwrap();
        let back: ClusterMetadata = serde_json::from_str(&json).unwrap();
        assert_eq!(back.client_quotas, meta.client_quotas);
    }
}
