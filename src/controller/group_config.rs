//! Group configs (Kafka's `GroupConfig`): per-group overrides of the broker's group settings,
//! set with IncrementalAlterConfigs on a GROUP resource and reported by DescribeConfigs.
//!
//! Overrides live in the cluster metadata ([`ClusterMetadata::group_configs`], group id →
//! `name → value`), so they survive a restart and every shard of every broker sees the same
//! values once the metadata is published. A group's effective settings ([`effective`]) are
//! the broker's `group.share.*` / `share.auto.offset.reset` / `group.consumer.*` settings
//! overridden by the group's values (`share.isolation.level` has no broker setting: its
//! default is Kafka's, `read_uncommitted`). Every value is checked by [`check_value`] (the bounds
//! the broker's own settings accept, and Kafka's `atLeast(1000)` for the lock duration) both
//! where the request arrives and where the command applies; the broker taking the request
//! also checks the merged result ([`check_merged`]: a heartbeat interval below the session
//! timeout, as Kafka's `GroupConfig.validateValues`).

use std::collections::BTreeMap;

use super::topic_config::ConfigChange;
use super::{ClusterMetadata, ControlError, E};
use crate::config::{limits, BrokerConfig};

/// `consumer.session.timeout.ms`: a KIP-848 member silent this long leaves the group.
pub const CONSUMER_SESSION_TIMEOUT_MS: &str = "consumer.session.timeout.ms";
/// `consumer.heartbeat.interval.ms`: how often KIP-848 members heartbeat.
pub const CONSUMER_HEARTBEAT_INTERVAL_MS: &str = "consumer.heartbeat.interval.ms";
/// `share.session.timeout.ms`: a share member silent this long leaves the group.
pub const SHARE_SESSION_TIMEOUT_MS: &str = "share.session.timeout.ms";
/// `share.heartbeat.interval.ms`: how often share members heartbeat.
pub const SHARE_HEARTBEAT_INTERVAL_MS: &str = "share.heartbeat.interval.ms";
/// `share.record.lock.duration.ms`: how long an acquired record stays locked.
pub const SHARE_RECORD_LOCK_DURATION_MS: &str = "share.record.lock.duration.ms";
/// `share.delivery.count.limit`: deliveries of a record before it is archived (Kafka 4.2).
pub const SHARE_DELIVERY_COUNT_LIMIT: &str = "share.delivery.count.limit";
/// `share.auto.offset.reset`: where a new share-partition starts.
pub const SHARE_AUTO_OFFSET_RESET: &str = "share.auto.offset.reset";
/// `share.isolation.level`: `read_committed` acquires only committed records, below the
/// last stable offset (Kafka 4.1).
pub const SHARE_ISOLATION_LEVEL: &str = "share.isolation.level";

/// What a group config holds.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// An integer (milliseconds, or a count) within `min..=max`.
    Int {
        /// Smallest value accepted.
        min: u64,
        /// Largest value accepted.
        max: u64,
    },
    /// One of these words.
    Choice(&'static [&'static str]),
}

/// One group config, under Kafka's name.
#[derive(Clone, Copy, Debug)]
pub struct GroupConfigDef {
    /// Kafka's name.
    pub name: &'static str,
    /// Its values.
    pub kind: Kind,
    /// The broker setting it overrides (its default).
    pub broker_name: &'static str,
    /// One line of documentation.
    pub doc: &'static str,
}

/// Every group config Strata offers, in Kafka's `GroupConfig` order.
pub const GROUP_CONFIGS: &[GroupConfigDef] = &[
    GroupConfigDef {
        name: CONSUMER_SESSION_TIMEOUT_MS,
        kind: Kind::Int { min: 1_000, max: limits::CONSUMER_SESSION_TIMEOUT_MS_MAX },
        broker_name: "group.consumer.session.timeout.ms",
        doc: "The timeout to detect client failures of this consumer group (KIP-848).",
    },
    GroupConfigDef {
        name: CONSUMER_HEARTBEAT_INTERVAL_MS,
        kind: Kind::Int { min: 100, max: limits::CONSUMER_SESSION_TIMEOUT_MS_MAX },
        broker_name: "group.consumer.heartbeat.interval.ms",
        doc: "The heartbeat interval given to the members of this consumer group (KIP-848).",
    },
    GroupConfigDef {
        name: SHARE_SESSION_TIMEOUT_MS,
        kind: Kind::Int { min: 1, max: limits::SHARE_TIMEOUT_MS_MAX },
        broker_name: "group.share.session.timeout.ms",
        doc: "The timeout to detect client failures of this share group.",
    },
    GroupConfigDef {
        name: SHARE_HEARTBEAT_INTERVAL_MS,
        kind: Kind::Int { min: 1, max: limits::SHARE_TIMEOUT_MS_MAX },
        broker_name: "group.share.heartbeat.interval.ms",
        doc: "The heartbeat interval given to the members of this share group.",
    },
    GroupConfigDef {
        name: SHARE_RECORD_LOCK_DURATION_MS,
        kind: Kind::Int { min: 1_000, max: limits::SHARE_TIMEOUT_MS_MAX },
        broker_name: "group.share.record.lock.duration.ms",
        doc: "How long a record acquired by a member of this share group stays locked.",
    },
    GroupConfigDef {
        name: SHARE_DELIVERY_COUNT_LIMIT,
        kind: Kind::Int { min: 2, max: 10 },
        broker_name: "group.share.delivery.count.limit",
        doc: "How many times a record of this share group is delivered before it is archived.",
    },
    GroupConfigDef {
        name: SHARE_AUTO_OFFSET_RESET,
        kind: Kind::Choice(&["latest", "earliest"]),
        broker_name: "share.auto.offset.reset",
        doc: "The strategy to initialize the share-partition start offset.",
    },
    GroupConfigDef {
        name: SHARE_ISOLATION_LEVEL,
        kind: Kind::Choice(&["read_uncommitted", "read_committed"]),
        // No broker setting: Kafka's default is the group config's own.
        broker_name: SHARE_ISOLATION_LEVEL,
        doc: "How records of transactions are read by this share group: read_committed \
              acquires only committed records, below the last stable offset.",
    },
];

/// The definition of group config `name`, if Strata offers it.
pub fn def(name: &str) -> Option<&'static GroupConfigDef> {
    GROUP_CONFIGS.iter().find(|d| d.name == name)
}

/// Checks one value of group config `name` (INVALID_CONFIG naming why).
pub fn check_value(name: &str, value: &str) -> Result<(), ControlError> {
    let Some(d) = def(name) else {
        return Err(ControlError::new(
            E::InvalidConfig,
            format!("Unknown group config name: {name}"),
        ));
    };
    let ok = match d.kind {
        Kind::Int { min, max } => {
            value.trim().parse::<u64>().is_ok_and(|v| (min..=max).contains(&v))
        }
        Kind::Choice(words) => words.contains(&value.trim().to_ascii_lowercase().as_str()),
    };
    if ok {
        return Ok(());
    }
    let why = match d.kind {
        Kind::Int { min, max } => format!("must be from {min} to {max}"),
        Kind::Choice(words) => format!("must be one of {}", words.join(", ")),
    };
    Err(ControlError::new(E::InvalidConfig, format!("Invalid value {value} for {name}: {why}")))
}

/// A group's effective settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupSettings {
    /// `consumer.session.timeout.ms`.
    pub consumer_session_timeout_ms: u64,
    /// `consumer.heartbeat.interval.ms`.
    pub consumer_heartbeat_interval_ms: u64,
    /// `share.session.timeout.ms`.
    pub share_session_timeout_ms: u64,
    /// `share.heartbeat.interval.ms`.
    pub share_heartbeat_interval_ms: u64,
    /// `share.record.lock.duration.ms`.
    pub share_record_lock_duration_ms: u64,
    /// `share.delivery.count.limit`.
    pub share_delivery_count_limit: u64,
    /// `share.auto.offset.reset` is `earliest`.
    pub share_auto_offset_reset_earliest: bool,
    /// `share.isolation.level` is `read_committed`.
    pub share_read_committed: bool,
}

/// The broker's value of group config `name` (the default a group override replaces).
pub fn broker_default(name: &str, broker: &BrokerConfig) -> Option<String> {
    let s = effective(broker, None);
    Some(match name {
        CONSUMER_SESSION_TIMEOUT_MS => s.consumer_session_timeout_ms.to_string(),
        CONSUMER_HEARTBEAT_INTERVAL_MS => s.consumer_heartbeat_interval_ms.to_string(),
        SHARE_SESSION_TIMEOUT_MS => s.share_session_timeout_ms.to_string(),
        SHARE_HEARTBEAT_INTERVAL_MS => s.share_heartbeat_interval_ms.to_string(),
        SHARE_RECORD_LOCK_DURATION_MS => s.share_record_lock_duration_ms.to_string(),
        SHARE_DELIVERY_COUNT_LIMIT => s.share_delivery_count_limit.to_string(),
        SHARE_AUTO_OFFSET_RESET => {
            if s.share_auto_offset_reset_earliest { "earliest" } else { "latest" }.to_owned()
        }
        SHARE_ISOLATION_LEVEL => {
            if s.share_read_committed { "read_committed" } else { "read_uncommitted" }.to_owned()
        }
        _ => return None,
    })
}

/// The settings of a group with overrides `layer` on a broker configured as `broker`.
/// Values that do not parse (never stored: they are checked first) keep the broker's.
pub fn effective(broker: &BrokerConfig, layer: Option<&BTreeMap<String, String>>) -> GroupSettings {
    let mut s = GroupSettings {
        consumer_session_timeout_ms: broker.group_consumer_session_timeout_ms,
        consumer_heartbeat_interval_ms: broker.group_consumer_heartbeat_interval_ms,
        share_session_timeout_ms: broker.share.session_timeout_ms,
        share_heartbeat_interval_ms: broker.share.heartbeat_interval_ms,
        share_record_lock_duration_ms: broker.share.record_lock_duration_ms,
        share_delivery_count_limit: u64::from(broker.share.delivery_count_limit),
        share_auto_offset_reset_earliest: broker.share.auto_offset_reset_earliest,
        share_read_committed: false,
    };
    let Some(layer) = layer else { return s };
    for (name, value) in layer {
        let int = value.trim().parse::<u64>().ok();
        match (name.as_str(), int) {
            (CONSUMER_SESSION_TIMEOUT_MS, Some(v)) => s.consumer_session_timeout_ms = v,
            (CONSUMER_HEARTBEAT_INTERVAL_MS, Some(v)) => s.consumer_heartbeat_interval_ms = v,
            (SHARE_SESSION_TIMEOUT_MS, Some(v)) => s.share_session_timeout_ms = v,
            (SHARE_HEARTBEAT_INTERVAL_MS, Some(v)) => s.share_heartbeat_interval_ms = v,
            (SHARE_RECORD_LOCK_DURATION_MS, Some(v)) => s.share_record_lock_duration_ms = v,
            (SHARE_DELIVERY_COUNT_LIMIT, Some(v)) => s.share_delivery_count_limit = v,
            (SHARE_AUTO_OFFSET_RESET, _) => {
                s.share_auto_offset_reset_earliest = value.trim().eq_ignore_ascii_case("earliest")
            }
            (SHARE_ISOLATION_LEVEL, _) => {
                s.share_read_committed = value.trim().eq_ignore_ascii_case("read_committed")
            }
            _ => {}
        }
    }
    s
}

/// Applies `changes` (SET and DELETE; a group config is no list) to `current`, replacing
/// everything first when `replace`, checking each value. The new overrides.
pub fn apply(
    current: Option<&BTreeMap<String, String>>,
    changes: &[ConfigChange],
    replace: bool,
) -> Result<BTreeMap<String, String>, ControlError> {
    let mut layer = if replace { BTreeMap::new() } else { current.cloned().unwrap_or_default() };
    for change in changes {
        match change {
            ConfigChange::Set(name, value) => {
                check_value(name, value)?;
                // A word is kept as Kafka spells it: lower case.
                let value = match def(name).map(|d| d.kind) {
                    Some(Kind::Choice(_)) => value.trim().to_ascii_lowercase(),
                    _ => value.trim().to_owned(),
                };
                layer.insert(name.clone(), value);
            }
            ConfigChange::Delete(name) => {
                if def(name).is_none() {
                    let msg = format!("Unknown group config name: {name}");
                    return Err(ControlError::new(E::InvalidConfig, msg));
                }
                layer.remove(name);
            }
            other => {
                let msg = format!("{} is not a list config", other.name());
                return Err(ControlError::new(E::InvalidConfig, msg));
            }
        }
    }
    Ok(layer)
}

/// Checks the settings a group would have with overrides `layer` on this broker: each
/// heartbeat interval below its session timeout (Kafka's `GroupConfig.validateValues`).
pub fn check_merged(
    broker: &BrokerConfig,
    layer: &BTreeMap<String, String>,
) -> Result<(), ControlError> {
    let s = effective(broker, Some(layer));
    if s.consumer_session_timeout_ms <= s.consumer_heartbeat_interval_ms {
        let msg = format!(
            "{CONSUMER_SESSION_TIMEOUT_MS} must be greater than {CONSUMER_HEARTBEAT_INTERVAL_MS}"
        );
        return Err(ControlError::new(E::InvalidConfig, msg));
    }
    if s.share_session_timeout_ms <= s.share_heartbeat_interval_ms {
        let msg = format!(
            "{SHARE_SESSION_TIMEOUT_MS} must be greater than {SHARE_HEARTBEAT_INTERVAL_MS}"
        );
        return Err(ControlError::new(E::InvalidConfig, msg));
    }
    Ok(())
}

impl ClusterMetadata {
    /// Applies group config changes to group `group` (see [`apply`]); a group left without
    /// overrides is dropped.
    pub(super) fn alter_group_configs(
        &mut self,
        group: &str,
        changes: &[ConfigChange],
        replace: bool,
    ) -> Result<(), ControlError> {
        if group.is_empty() {
            return Err(ControlError::new(E::InvalidGroupId, "the group id is empty"));
        }
        let layer = apply(self.group_configs.get(group), changes, replace)?;
        if layer.is_empty() {
            self.group_configs.remove(group);
        } else {
            self.group_configs.insert(group.to_owned(), layer);
        }
        Ok(())
    }

    /// The overrides of group `group`, if any.
    pub fn group_layer(&self, group: &str) -> Option<&BTreeMap<String, String>> {
        self.group_configs.get(group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(name: &str, value: &str) -> ConfigChange {
        ConfigChange::Set(name.to_owned(), value.to_owned())
    }

    #[test]
    fn overrides_replace_the_broker_defaults_and_are_checked() {
        let broker = BrokerConfig::default();
        let mut meta = ClusterMetadata::default();
        meta.alter_group_configs("g", &[set(SHARE_AUTO_OFFSET_RESET, "earliest")], false).unwrap();
        meta.alter_group_configs("g", &[set(SHARE_RECORD_LOCK_DURATION_MS, "15000")], false)
            .unwrap();
        let s = effective(&broker, meta.group_layer("g"));
        assert!(s.share_auto_offset_reset_earliest);
        assert_eq!(s.share_record_lock_duration_ms, 15_000);
        assert!(!s.share_read_committed, "read_uncommitted unless the group says otherwise");
        assert_eq!(broker_default(SHARE_ISOLATION_LEVEL, &broker).unwrap(), "read_uncommitted");
        meta.alter_group_configs("g", &[set(SHARE_ISOLATION_LEVEL, "READ_COMMITTED")], false)
            .unwrap();
        assert!(effective(&broker, meta.group_layer("g")).share_read_committed);
        let bad =
            meta.alter_group_configs("g", &[set(SHARE_ISOLATION_LEVEL, "serializable")], false);
        assert_eq!(bad.unwrap_err().code, E::InvalidConfig.code());
        assert_eq!(effective(&broker, meta.group_layer("other")), effective(&broker, None));
        let bad =
            meta.alter_group_configs("g", &[set(SHARE_RECORD_LOCK_DURATION_MS, "999")], false);
        assert_eq!(bad.unwrap_err().code, E::InvalidConfig.code());
        let bad = meta.alter_group_configs("g", &[set("share.nonsense", "1")], false);
        assert_eq!(bad.unwrap_err().code, E::InvalidConfig.code());
        let gone = [
            ConfigChange::Delete(SHARE_AUTO_OFFSET_RESET.into()),
            ConfigChange::Delete(SHARE_RECORD_LOCK_DURATION_MS.into()),
            ConfigChange::Delete(SHARE_ISOLATION_LEVEL.into()),
        ];
        meta.alter_group_configs("g", &gone, false).unwrap();
        assert!(meta.group_layer("g").is_none());
        let layer = apply(None, &[set(SHARE_HEARTBEAT_INTERVAL_MS, "60000")], false).unwrap();
        assert_eq!(check_merged(&broker, &layer).unwrap_err().code, E::InvalidConfig.code());
    }
}
