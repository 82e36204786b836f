//! DescribeAcls, CreateAcls and DeleteAcls (v1-3), as Kafka's `AclApis` and KRaft's
//! controller answer them.
//!
//! With no authorizer configured they answer SECURITY_DISABLED. A filter or a new ACL holding
//! a value Kafka refuses (an UNKNOWN code, ANY where a binding needs a value, a MATCH or ANY
//! pattern in a binding, an empty name, a CLUSTER resource not named `kafka-cluster`, a
//! principal that is not `Type:name`) answers INVALID_REQUEST with a message: DescribeAcls
//! for the whole request, CreateAcls per creation, DeleteAcls per filter. Changes are
//! written through shard 0 ([`ControlOp::Metadata`]): metadata.json on a single broker, the
//! controller quorum in a cluster; every shard's authorizer then rebuilds from them.
//! (The cluster permissions these APIs need are checked by `guard`.)

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::str_bytes;
use crate::controller::access::AclRule;
use crate::controller::placement::Command;
use crate::protocol::ResponseError as E;
use crate::security::acl::{
    AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType,
};
use crate::server::access::{binding, rule};
use crate::server::mesh::ControlOp;
use crate::server::shard::Shard;

const NO_AUTHORIZER: &str = "No Authorizer is configured on the broker";

fn filter(
    resource_type: i8,
    resource_name: &Option<StrBytes>,
    pattern_type: i8,
    principal: &Option<StrBytes>,
    host: &Option<StrBytes>,
    operation: i8,
    permission: i8,
) -> AclFilter {
    AclFilter {
        resource_type: ResourceType::from_code(resource_type),
        resource_name: resource_name.as_ref().map(|s| s.to_string()),
        pattern_type: PatternType::from_code(pattern_type),
        principal: principal.as_ref().map(|s| s.to_string()),
        host: host.as_ref().map(|s| s.to_string()),
        operation: Operation::from_code(operation),
        permission: Permission::from_code(permission),
    }
}

/// DescribeAcls: the ACLs matching the filter, grouped by resource pattern.
pub fn describe(shard: &Rc<Shard>, req: DescribeAclsRequest) -> DescribeAclsResponse {
    let refuse = |error: E, message: &str| {
        DescribeAclsResponse::default()
            .with_error_code(error.code())
            .with_error_message(Some(str_bytes(message)))
    };
    if !shard.access.authorizing() {
        return refuse(E::SecurityDisabled, NO_AUTHORIZER);
    }
    let f = filter(
        req.resource_type_filter,
        &req.resource_name_filter,
        req.pattern_type_filter,
        &req.principal_filter,
        &req.host_filter,
        req.operation,
        req.permission_type,
    );
    if let Err(e) = f.validate() {
        return refuse(E::InvalidRequest, &e.to_string());
    }
    let meta = shard.meta();
    let mut resources: BTreeMap<(i8, String, i8), Vec<describe_acls_response::AclDescription>> =
        BTreeMap::new();
    for b in meta.acls.iter().map(binding).filter(|b| f.matches(b)) {
        let key = (b.resource_type.code(), b.resource_name.clone(), b.pattern_type.code());
        resources.entry(key).or_default().push(
            describe_acls_response::AclDescription::default()
                .with_principal(str_bytes(&b.principal))
                .with_host(str_bytes(&b.host))
                .with_operation(b.operation.code())
                .with_permission_type(b.permission.code()),
        );
    }
    let resources = resources.into_iter().map(|((rt, name, pt), acls)| {
        describe_acls_response::DescribeAclsResource::default()
            .with_resource_type(rt)
            .with_resource_name(str_bytes(&name))
            .with_pattern_type(pt)
            .with_acls(acls)
    });
    // Kafka sets the message of a success from ApiError.NONE: null (the field's default is "").
    DescribeAclsResponse::default().with_error_message(None).with_resources(resources.collect())
}

/// CreateAcls: every valid creation in one metadata change; invalid ones answer
/// INVALID_REQUEST alone.
pub async fn create(shard: &Rc<Shard>, req: CreateAclsRequest) -> CreateAclsResponse {
    use create_acls_response::AclCreationResult;
    let result = |error: E, message: Option<String>| {
        AclCreationResult::default()
            .with_error_code(error.code())
            .with_error_message(message.as_deref().map(str_bytes))
    };
    if !shard.access.authorizing() {
        let results =
            req.creations.iter().map(|_| result(E::SecurityDisabled, Some(NO_AUTHORIZER.into())));
        return CreateAclsResponse::default().with_results(results.collect());
    }
    let checked: Vec<Result<AclBinding, String>> = req
        .creations
        .iter()
        .map(|c| {
            let b = AclBinding {
                resource_type: ResourceType::from_code(c.resource_type),
                resource_name: c.resource_name.to_string(),
                pattern_type: PatternType::from_code(c.resource_pattern_type),
                principal: c.principal.to_string(),
                host: c.host.to_string(),
                operation: Operation::from_code(c.operation),
                permission: Permission::from_code(c.permission_type),
            };
            b.validate().map(|()| b).map_err(|e| e.to_string())
        })
        .collect();
    let rules: Vec<AclRule> = checked.iter().flatten().map(rule).collect();
    let outcome = if rules.is_empty() {
        Ok(())
    } else {
        let count = rules.len();
        let done = shard.control(ControlOp::Metadata(Command::CreateAcls { rules })).await;
        if done.is_ok() {
            tracing::info!(count, "created ACLs");
        }
        done
    };
    let results = checked.into_iter().map(|c| match (c, &outcome) {
        (Err(why), _) => result(E::InvalidRequest, Some(why)),
        (Ok(_), Ok(())) => AclCreationResult::default(),
        (Ok(_), Err(e)) => AclCreationResult::default()
            .with_error_code(e.code)
            .with_error_message(Some(str_bytes(&e.message))),
    });
    CreateAclsResponse::default().with_results(results.collect())
}

/// DeleteAcls: the ACLs matching each valid filter, deleted in one metadata change; each
/// filter's result lists what it matched.
pub async fn delete(shard: &Rc<Shard>, req: DeleteAclsRequest) -> DeleteAclsResponse {
    use delete_acls_response::{DeleteAclsFilterResult, DeleteAclsMatchingAcl};
    let failed = |code: i16, message: &str| {
        DeleteAclsFilterResult::default()
            .with_error_code(code)
            .with_error_message(Some(str_bytes(message)))
    };
    if !shard.access.authorizing() {
        let results = req.filters.iter().map(|_| failed(E::SecurityDisabled.code(), NO_AUTHORIZER));
        return DeleteAclsResponse::default().with_filter_results(results.collect());
    }
    let meta = shard.meta();
    let matched: Vec<Result<Vec<AclBinding>, String>> = req
        .filters
        .iter()
        .map(|d| {
            let f = filter(
                d.resource_type_filter,
                &d.resource_name_filter,
                d.pattern_type_filter,
                &d.principal_filter,
                &d.host_filter,
                d.operation,
                d.permission_type,
            );
            f.validate().map_err(|e| e.to_string())?;
            Ok(meta.acls.iter().map(binding).filter(|b| f.matches(b)).collect())
        })
        .collect();
    let mut rules: Vec<AclRule> = matched.iter().flatten().flatten().map(rule).collect();
    rules.sort();
    rules.dedup();
    let outcome = if rules.is_empty() {
        Ok(())
    } else {
        let count = rules.len();
        let done = shard.control(ControlOp::Metadata(Command::DeleteAcls { rules })).await;
        if done.is_ok() {
            tracing::info!(count, "deleted ACLs");
        }
        done
    };
    let results = matched.into_iter().map(|m| match (m, &outcome) {
        (Err(why), _) => failed(E::InvalidRequest.code(), &why),
        (Ok(_), Err(e)) => failed(e.code, &e.message),
        (Ok(found), Ok(())) => {
            let acls = found.iter().map(|b| {
                DeleteAclsMatchingAcl::default()
                    .with_resource_type(b.resource_type.code())
                    .with_resource_name(str_bytes(&b.resource_name))
                    .with_pattern_type(b.pattern_type.code())
                    .with_principal(str_bytes(&b.principal))
                    .with_host(str_bytes(&b.host))
                    .with_operation(b.operation.code())
                    .with_permission_type(b.permission.code())
                    .with_error_message(None)
            });
            // A success's messages are null, as Kafka sends them (see `describe`).
            DeleteAclsFilterResult::default()
                .with_error_message(None)
                .with_matching_acls(acls.collect())
        }
    });
    DeleteAclsResponse::default().with_filter_results(results.collect())
}
