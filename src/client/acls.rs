//! ACL and client quota calls on a [`Client`]: DescribeAcls, CreateAcls, DeleteAcls,
//! DescribeClientQuotas, AlterClientQuotas. ACL values travel as Kafka's wire codes (the
//! `strata acl` command turns names into codes); quota entities as (type, name) pairs, a
//! `None` name meaning the default entity.

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::{protocol, Client, ClientError};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

/// One ACL, with Kafka's codes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Acl {
    /// `ResourceType` code.
    pub resource_type: i8,
    /// Resource name.
    pub resource_name: String,
    /// `PatternType` code.
    pub pattern_type: i8,
    /// `Type:name`.
    pub principal: String,
    /// Host or `*`.
    pub host: String,
    /// `AclOperation` code.
    pub operation: i8,
    /// `AclPermissionType` code.
    pub permission: i8,
}

/// An ACL filter, with Kafka's codes (`ANY` = 1) and `None` for any string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclFilter {
    /// `ResourceType` code.
    pub resource_type: i8,
    /// Resource name.
    pub resource_name: Option<String>,
    /// `PatternType` code.
    pub pattern_type: i8,
    /// Principal.
    pub principal: Option<String>,
    /// Host.
    pub host: Option<String>,
    /// `AclOperation` code.
    pub operation: i8,
    /// `AclPermissionType` code.
    pub permission: i8,
}

/// A quota entity: (entity type, name), `None` for the default entity of the type.
pub type QuotaEntity = Vec<(String, Option<String>)>;

/// What DescribeClientQuotas returns for one entity: its quota keys and values.
pub type QuotaEntry = (QuotaEntity, Vec<(String, f64)>);

/// A DescribeClientQuotas filter component: entity type, match type (0 exact, 1 default,
/// 2 any), and the name for exact matches.
pub type QuotaComponent = (String, i8, Option<String>);

/// One change of AlterClientQuotas: key, and `Some(value)` to set or `None` to remove.
pub type QuotaOp = (String, Option<f64>);

impl Client {
    /// DescribeAcls.
    pub fn describe_acls(&mut self, f: &AclFilter) -> Result<Vec<Acl>, ClientError> {
        let req = DescribeAclsRequest::default()
            .with_resource_type_filter(f.resource_type)
            .with_resource_name_filter(f.resource_name.as_deref().map(s))
            .with_pattern_type_filter(f.pattern_type)
            .with_principal_filter(f.principal.as_deref().map(s))
            .with_host_filter(f.host.as_deref().map(s))
            .with_operation(f.operation)
            .with_permission_type(f.permission);
        let (_, ResponseKind::DescribeAcls(r)) =
            self.call(ApiKey::DescribeAcls, 3, RequestKind::DescribeAcls(req))?
        else {
            return Err(protocol("DescribeAcls answered with another message"));
        };
        let context = r.error_message.as_ref().map_or("DescribeAcls".into(), |m| m.to_string());
        ClientError::check(r.error_code, context)?;
        let mut acls = Vec::new();
        for res in r.resources {
            for a in res.acls {
                acls.push(Acl {
                    resource_type: res.resource_type,
                    resource_name: res.resource_name.to_string(),
                    pattern_type: res.pattern_type,
                    principal: a.principal.to_string(),
                    host: a.host.to_string(),
                    operation: a.operation,
                    permission: a.permission_type,
                });
            }
        }
        acls.sort();
        Ok(acls)
    }

    /// CreateAcls: one result per ACL (the error code and message of a refused one).
    pub fn create_acls(&mut self, acls: &[Acl]) -> Result<Vec<(i16, Option<String>)>, ClientError> {
        let creations = acls.iter().map(|a| {
            create_acls_request::AclCreation::default()
                .with_resource_type(a.resource_type)
                .with_resource_name(s(&a.resource_name))
                .with_resource_pattern_type(a.pattern_type)
                .with_principal(s(&a.principal))
                .with_host(s(&a.host))
                .with_operation(a.operation)
                .with_permission_type(a.permission)
        });
        let req = CreateAclsRequest::default().with_creations(creations.collect());
        let (_, ResponseKind::CreateAcls(r)) =
            self.call(ApiKey::CreateAcls, 3, RequestKind::CreateAcls(req))?
        else {
            return Err(protocol("CreateAcls answered with another message"));
        };
        Ok(r.results
            .into_iter()
            .map(|r| (r.error_code, r.error_message.map(|m| m.to_string())))
            .collect())
    }

    /// DeleteAcls of one filter: the ACLs deleted.
    pub fn delete_acls(&mut self, f: &AclFilter) -> Result<Vec<Acl>, ClientError> {
        let filter = delete_acls_request::DeleteAclsFilter::default()
            .with_resource_type_filter(f.resource_type)
            .with_resource_name_filter(f.resource_name.as_deref().map(s))
            .with_pattern_type_filter(f.pattern_type)
            .with_principal_filter(f.principal.as_deref().map(s))
            .with_host_filter(f.host.as_deref().map(s))
            .with_operation(f.operation)
            .with_permission_type(f.permission);
        let req = DeleteAclsRequest::default().with_filters(vec![filter]);
        let (_, ResponseKind::DeleteAcls(r)) =
            self.call(ApiKey::DeleteAcls, 3, RequestKind::DeleteAcls(req))?
        else {
            return Err(protocol("DeleteAcls answered with another message"));
        };
        let result =
            r.filter_results.into_iter().next().ok_or_else(|| protocol("no filter result"))?;
        let context = result.error_message.as_ref().map_or("DeleteAcls".into(), |m| m.to_string());
        ClientError::check(result.error_code, context)?;
        let mut acls: Vec<Acl> = result
            .matching_acls
            .into_iter()
            .map(|a| Acl {
                resource_type: a.resource_type,
                resource_name: a.resource_name.to_string(),
                pattern_type: a.pattern_type,
                principal: a.principal.to_string(),
                host: a.host.to_string(),
                operation: a.operation,
                permission: a.permission_type,
            })
            .collect();
        acls.sort();
        Ok(acls)
    }

    /// DescribeClientQuotas.
    pub fn describe_client_quotas(
        &mut self,
        components: &[QuotaComponent],
        strict: bool,
    ) -> Result<Vec<QuotaEntry>, ClientError> {
        let components = components.iter().map(|(kind, match_type, name)| {
            describe_client_quotas_request::ComponentData::default()
                .with_entity_type(s(kind))
                .with_match_type(*match_type)
                .with_match(name.as_deref().map(s))
        });
        let req = DescribeClientQuotasRequest::default()
            .with_components(components.collect())
            .with_strict(strict);
        let (_, ResponseKind::DescribeClientQuotas(r)) =
            self.call(ApiKey::DescribeClientQuotas, 1, RequestKind::DescribeClientQuotas(req))?
        else {
            return Err(protocol("DescribeClientQuotas answered with another message"));
        };
        let context =
            r.error_message.as_ref().map_or("DescribeClientQuotas".into(), |m| m.to_string());
        ClientError::check(r.error_code, context)?;
        let mut entries: Vec<QuotaEntry> = r
            .entries
            .unwrap_or_default()
            .into_iter()
            .map(|e| {
                let entity = e
                    .entity
                    .into_iter()
                    .map(|p| (p.entity_type.to_string(), p.entity_name.map(|n| n.to_string())))
                    .collect();
                let values = e.values.into_iter().map(|v| (v.key.to_string(), v.value)).collect();
                (entity, values)
            })
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(entries)
    }

    /// AlterClientQuotas of one entity.
    pub fn alter_client_quotas(
        &mut self,
        entity: &QuotaEntity,
        ops: &[QuotaOp],
        validate_only: bool,
    ) -> Result<(), ClientError> {
        use alter_client_quotas_request::{EntityData, EntryData, OpData};
        let entity = entity.iter().map(|(kind, name)| {
            EntityData::default().with_entity_type(s(kind)).with_entity_name(name.as_deref().map(s))
        });
        let ops = ops.iter().map(|(key, value)| {
            OpData::default()
                .with_key(s(key))
                .with_value(value.unwrap_or(0.0))
                .with_remove(value.is_none())
        });
        let entry = EntryData::default().with_entity(entity.collect()).with_ops(ops.collect());
        let req = AlterClientQuotasRequest::default()
            .with_entries(vec![entry])
            .with_validate_only(validate_only);
        let (_, ResponseKind::AlterClientQuotas(r)) =
            self.call(ApiKey::AlterClientQuotas, 1, RequestKind::AlterClientQuotas(req))?
        else {
            return Err(protocol("AlterClientQuotas answered with another message"));
        };
        let entry =
            r.entries.into_iter().next().ok_or_else(|| protocol("no entry in the answer"))?;
        let context =
            entry.error_message.as_ref().map_or("AlterClientQuotas".into(), |m| m.to_string());
        ClientError::check(entry.error_code, context)
    }
}
