//! DescribeClientQuotas and AlterClientQuotas (KIP-546, v0-1), as KRaft's controller
//! answers them.
//!
//! Entities are a `user`, a `client-id`, or both, each named or the default (a null name);
//! `ip` entities (connection rate quotas) are not supported and are refused. Keys are
//! `producer_byte_rate`, `consumer_byte_rate` (whole bytes per second) and
//! `request_percentage`, each a positive number. Describe filters: exact name (match type
//! 0), the default entity (1), any entity of the type (2); `strict` wants entities with no
//! other type. A bad filter answers INVALID_REQUEST (an unknown entity or match type:
//! UNSUPPORTED_VERSION), a bad entry INVALID_REQUEST for that entry. Changes are written
//! through shard 0 ([`ControlOp::Metadata`]); every shard then re-reads its quota table.
//! (The cluster permissions these APIs need are checked by `guard`.)

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::str_bytes;
use crate::controller::access::{QuotaChange, QuotaEntity, QuotaValue};
use crate::controller::placement::Command;
use crate::protocol::ResponseError as E;
use crate::security::quota::{self, ENTITY_CLIENT_ID, ENTITY_IP, ENTITY_USER};
use crate::server::mesh::ControlOp;
use crate::server::shard::Shard;

/// DescribeClientQuotas match types.
const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_ANY: i8 = 2;

/// A describe filter: exact names (`None`: the default entity), and types wanted with any name.
struct Filter {
    exact: BTreeMap<String, Option<String>>,
    any: Vec<String>,
    strict: bool,
}

fn parse_filter(req: &DescribeClientQuotasRequest) -> Result<Filter, (E, String)> {
    let mut filter = Filter { exact: BTreeMap::new(), any: Vec::new(), strict: req.strict };
    let invalid = |msg: String| Err((E::InvalidRequest, msg));
    for c in &req.components {
        let kind = c.entity_type.to_string();
        if kind.is_empty() {
            return invalid("invalid empty entity type".into());
        }
        if filter.exact.contains_key(&kind) || filter.any.contains(&kind) {
            return invalid(format!(
                "entity type {kind} cannot appear more than once in the filter"
            ));
        }
        if ![ENTITY_USER, ENTITY_CLIENT_ID, ENTITY_IP].contains(&kind.as_str()) {
            return Err((E::UnsupportedVersion, format!("unsupported entity type {kind}")));
        }
        let name = c._match.as_ref().map(|m| m.to_string());
        match (c.match_type, name) {
            (MATCH_EXACT, Some(name)) => drop(filter.exact.insert(kind, Some(name))),
            (MATCH_EXACT, None) => return invalid("MATCH_TYPE_EXACT with a null match".into()),
            (MATCH_DEFAULT, None) => drop(filter.exact.insert(kind, None)),
            (MATCH_ANY, None) => filter.any.push(kind),
            (MATCH_DEFAULT | MATCH_ANY, Some(_)) => {
                return invalid(format!("match type {} takes no match string", c.match_type))
            }
            (other, _) => {
                return Err((E::UnsupportedVersion, format!("unknown match type {other}")))
            }
        }
    }
    let has = |k: &str| filter.exact.contains_key(k) || filter.any.iter().any(|a| a == k);
    if has(ENTITY_IP) && (has(ENTITY_USER) || has(ENTITY_CLIENT_ID)) {
        return invalid("an ip filter component cannot be used with user or client-id".into());
    }
    Ok(filter)
}

impl Filter {
    fn matches(&self, entity: &QuotaEntity) -> bool {
        if self.strict && entity.len() != self.exact.len() + self.any.len() {
            return false;
        }
        self.exact.iter().all(|(k, v)| entity.get(k) == Some(v))
            && self.any.iter().all(|k| entity.contains_key(k))
    }
}

/// DescribeClientQuotas.
pub fn describe(
    shard: &Rc<Shard>,
    req: DescribeClientQuotasRequest,
) -> DescribeClientQuotasResponse {
    use describe_client_quotas_response::{EntityData, EntryData, ValueData};
    let filter = match parse_filter(&req) {
        Ok(filter) => filter,
        Err((error, message)) => {
            return DescribeClientQuotasResponse::default()
                .with_error_code(error.code())
                .with_error_message(Some(str_bytes(&message)))
                .with_entries(None)
        }
    };
    let meta = shard.meta();
    let entries = meta.client_quotas.iter().filter(|q| filter.matches(&q.entity)).map(|q| {
        let entity = q.entity.iter().map(|(kind, name)| {
            EntityData::default()
                .with_entity_type(str_bytes(kind))
                .with_entity_name(name.as_deref().map(str_bytes))
        });
        let values = q
            .values
            .iter()
            .map(|(key, value)| ValueData::default().with_key(str_bytes(key)).with_value(value.0));
        EntryData::default().with_entity(entity.collect()).with_values(values.collect())
    });
    DescribeClientQuotasResponse::default().with_entries(Some(entries.collect()))
}

/// One AlterClientQuotas entry, checked.
fn change(entry: &alter_client_quotas_request::EntryData) -> Result<QuotaChange, String> {
    let parts = entry.entity.iter().map(|e| (e.entity_type.as_str(), e.entity_name.as_deref()));
    quota::validate_entity(parts).map_err(|e| e.to_string())?;
    let entity: QuotaEntity = entry
        .entity
        .iter()
        .map(|e| (e.entity_type.to_string(), e.entity_name.as_ref().map(|n| n.to_string())))
        .collect();
    let mut set = BTreeMap::new();
    let mut remove = Vec::new();
    for op in &entry.ops {
        let key = op.key.to_string();
        if op.remove {
            remove.push(key);
        } else {
            quota::validate_value(&key, op.value).map_err(|e| e.to_string())?;
            set.insert(key, QuotaValue(op.value));
        }
    }
    Ok(QuotaChange { entity, set, remove })
}

/// AlterClientQuotas: every valid entry in one metadata change (none with `validate_only`).
pub async fn alter(shard: &Rc<Shard>, req: AlterClientQuotasRequest) -> AlterClientQuotasResponse {
    use alter_client_quotas_response::{EntityData, EntryData};
    let checked: Vec<Result<QuotaChange, String>> = req.entries.iter().map(change).collect();
    let changes: Vec<QuotaChange> = checked.iter().flatten().cloned().collect();
    let outcome = if changes.is_empty() || req.validate_only {
        Ok(())
    } else {
        let count = changes.len();
        let done = shard.control(ControlOp::Metadata(Command::AlterClientQuotas { changes })).await;
        if done.is_ok() {
            tracing::info!(entities = count, "altered client quotas");
        }
        done
    };
    let entries = req.entries.iter().zip(checked).map(|(entry, c)| {
        let entity = entry.entity.iter().map(|e| {
            EntityData::default()
                .with_entity_type(e.entity_type.clone())
                .with_entity_name(e.entity_name.clone())
        });
        let (code, message): (i16, Option<StrBytes>) = match (c, &outcome) {
            (Err(why), _) => (E::InvalidRequest.code(), Some(str_bytes(&why))),
            (Ok(_), Ok(())) => (0, None),
            (Ok(_), Err(e)) => (e.code, Some(str_bytes(&e.message))),
        };
        EntryData::default()
            .with_error_code(code)
            .with_error_message(message)
            .with_entity(entity.collect())
    });
    AlterClientQuotasResponse::default().with_entries(entries.collect())
}
