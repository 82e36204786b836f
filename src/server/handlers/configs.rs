//! AlterConfigs and IncrementalAlterConfigs: topic config overrides, validated and persisted
//! by shard 0 (a [`ControlOp::AlterConfigs`]), applied to the live logs of every shard; and
//! dynamic broker configs (a BROKER resource: a node id, or empty for the cluster-wide
//! default), checked here and stored in the cluster metadata by a
//! [`Command::AlterBrokerConfigs`] (see `controller::broker_config`), which every shard of
//! every broker applies when the metadata is published; and group configs (a GROUP resource:
//! a group id), checked here and stored in the cluster metadata by a
//! [`Command::AlterGroupConfigs`] (see `controller::group_config`). Settings that cannot
//! change at run time are refused with INVALID_REQUEST naming why, as Kafka does.

use std::rc::Rc;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::incremental_alter_configs_response as incremental;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::admin::{RESOURCE_BROKER, RESOURCE_GROUP, RESOURCE_TOPIC};
use super::str_bytes;
use crate::controller::placement::Command;
use crate::controller::{broker_config, group_config, ConfigChange};
use crate::protocol::ResponseError as E;
use crate::server::mesh::ControlOp;
use crate::server::shard::Shard;

/// IncrementalAlterConfigs operation codes.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// The outcome of altering one resource: error code and message.
type Outcome = (i16, Option<String>);

async fn alter_one(
    shard: &Rc<Shard>,
    resource_type: i8,
    name: &StrBytes,
    changes: Result<Vec<ConfigChange>, String>,
    replace: bool,
    validate_only: bool,
) -> Outcome {
    match resource_type {
        RESOURCE_TOPIC => {}
        RESOURCE_BROKER => {
            return alter_broker(shard, name, changes, replace, validate_only).await;
        }
        RESOURCE_GROUP => {
            return alter_group(shard, name, changes, replace, validate_only).await;
        }
        _ => {
            let why = "only topic, broker and group configs can be altered";
            return (E::InvalidRequest.code(), Some(why.into()));
        }
    }
    let changes = match changes {
        Ok(changes) => changes,
        Err(message) => return (E::InvalidConfig.code(), Some(message)),
    };
    let op = ControlOp::AlterConfigs { name: name.to_string(), changes, replace, validate_only };
    match shard.control(op).await {
        Ok(()) => {
            if !validate_only {
                tracing::info!(topic = %name, "altered topic configs");
            }
            (0, None)
        }
        Err(e) => (e.code, Some(e.message)),
    }
}

/// Dynamic broker configs of one resource: resolved and checked here, then stored through
/// the controller (shard 0: metadata.json alone, or the quorum in a cluster).
async fn alter_broker(
    shard: &Rc<Shard>,
    name: &StrBytes,
    changes: Result<Vec<ConfigChange>, String>,
    replace: bool,
    validate_only: bool,
) -> Outcome {
    let changes = match changes {
        Ok(changes) => changes,
        Err(message) => return (E::InvalidRequest.code(), Some(message)),
    };
    let resource = name.to_string();
    let meta = shard.meta();
    // AlterConfigs (`replace`) starts the resource afresh.
    let current = meta.broker_layer(&resource).filter(|_| !replace);
    let settings = shard.settings();
    let resolved = match broker_config::resolve_changes(&resource, current, &changes, &settings) {
        Ok(resolved) => resolved,
        Err(e) => {
            crate::refused!(WARN, "broker_config", resource = %resource, "{}", e.message);
            return (e.code, Some(e.message));
        }
    };
    let command = Command::AlterBrokerConfigs { resource, changes: resolved, replace };
    store(shard, command, validate_only, || {
        tracing::info!(resource = %name, "altered dynamic broker configs");
    })
    .await
}

/// Group configs of one group: checked here against this broker's settings (Kafka's
/// `GroupConfig.validate`), then stored through the controller.
async fn alter_group(
    shard: &Rc<Shard>,
    name: &StrBytes,
    changes: Result<Vec<ConfigChange>, String>,
    replace: bool,
    validate_only: bool,
) -> Outcome {
    let changes = match changes {
        Ok(changes) => changes,
        Err(message) => return (E::InvalidConfig.code(), Some(message)),
    };
    let group = name.to_string();
    if !super::group::valid_group_id(&group) {
        return (E::InvalidGroupId.code(), Some(format!("invalid group id {group:?}")));
    }
    let meta = shard.meta();
    let checked = group_config::apply(meta.group_layer(&group), &changes, replace)
        .and_then(|layer| group_config::check_merged(&shard.settings(), &layer));
    if let Err(e) = checked {
        crate::refused!(WARN, "group_config", group = %group, "{}", e.message);
        return (e.code, Some(e.message));
    }
    let command = Command::AlterGroupConfigs { group, changes, replace };
    store(shard, command, validate_only, || tracing::info!(group = %name, "altered group configs"))
        .await
}

/// Stores a checked config change through the controller (nothing with `validate_only`);
/// `stored` runs once it is.
async fn store(
    shard: &Rc<Shard>,
    command: Command,
    validate_only: bool,
    stored: impl FnOnce(),
) -> Outcome {
    if validate_only {
        return (0, None);
    }
    match shard.control(ControlOp::Metadata(command)).await {
        Ok(()) => {
            stored();
            (0, None)
        }
        Err(e) => (e.code, Some(e.message)),
    }
}

/// AlterConfigs: the given configs replace every override of the resource.
pub async fn alter_configs(shard: &Rc<Shard>, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(req.resources.len());
    for resource in &req.resources {
        let changes = resource
            .configs
            .iter()
            .map(|c| match &c.value {
                Some(value) => Ok(ConfigChange::Set(c.name.to_string(), value.to_string())),
                None => Err(format!("config {} has no value", c.name.as_str())),
            })
            .collect();
        let name = &resource.resource_name;
        let (code, message) =
            alter_one(shard, resource.resource_type, name, changes, true, req.validate_only).await;
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(name.clone())
                .with_error_code(code)
                .with_error_message(message.as_deref().map(str_bytes)),
        );
    }
    AlterConfigsResponse::default().with_responses(responses)
}

fn incremental_change(
    config: &incremental_alter_configs_request::AlterableConfig,
) -> Result<ConfigChange, String> {
    let name = config.name.to_string();
    let value = config.value.as_ref().map(|v| v.to_string());
    match (config.config_operation, value) {
        (OP_DELETE, _) => Ok(ConfigChange::Delete(name)),
        (OP_SET, Some(v)) => Ok(ConfigChange::Set(name, v)),
        (OP_APPEND, Some(v)) => Ok(ConfigChange::Append(name, v)),
        (OP_SUBTRACT, Some(v)) => Ok(ConfigChange::Subtract(name, v)),
        (OP_SET | OP_APPEND | OP_SUBTRACT, None) => Err(format!("config {name} has no value")),
        (op, _) => Err(format!("unknown config operation {op} for {name}")),
    }
}

/// IncrementalAlterConfigs: SET, DELETE, APPEND and SUBTRACT on individual configs.
pub async fn incremental_alter_configs(
    shard: &Rc<Shard>,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(req.resources.len());
    for resource in &req.resources {
        let changes = resource.configs.iter().map(incremental_change).collect();
        let name = &resource.resource_name;
        let (code, message) =
            alter_one(shard, resource.resource_type, name, changes, false, req.validate_only).await;
        responses.push(
            incremental::AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(name.clone())
                .with_error_code(code)
                .with_error_message(message.as_deref().map(str_bytes)),
        );
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
