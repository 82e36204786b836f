//! Topic-level configs: which names exist, what values are legal, and their broker defaults.

use std::collections::BTreeMap;

use crate::config::{limits, BrokerConfig, FlushPolicy, COMPRESSION_TYPES};

/// What values a config takes.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// An integer in `min..=max`.
    Long {
        /// Smallest legal value.
        min: i64,
        /// Largest legal value.
        max: i64,
    },
    /// One of these words.
    Choice(&'static [&'static str]),
}

/// One topic config Strata knows.
#[derive(Clone, Copy, Debug)]
pub struct TopicConfigDef {
    /// Kafka's name for it.
    pub name: &'static str,
    /// Legal values.
    pub kind: Kind,
    /// Whether the broker acts on it today. Known but not yet enforced configs are accepted
    /// and stored (so tools that set them keep working) and reported as such.
    pub enforced: bool,
}

const fn long(name: &'static str, min: i64, max: i64, enforced: bool) -> TopicConfigDef {
    TopicConfigDef { name, kind: Kind::Long { min, max }, enforced }
}

/// Every topic config accepted by CreateTopics and reported by DescribeConfigs.
pub static TOPIC_CONFIGS: &[TopicConfigDef] = &[
    long("segment.bytes", limits::SEGMENT_BYTES_MIN as i64, limits::SEGMENT_BYTES_MAX as i64, true),
    long("segment.ms", 1, i64::MAX, true),
    long("max.message.bytes", 0, i32::MAX as i64, true),
    TopicConfigDef {
        name: "message.timestamp.type",
        kind: Kind::Choice(&["CreateTime", "LogAppendTime"]),
        enforced: true,
    },
    long("flush.messages", 1, i64::MAX, true),
    long("flush.ms", 0, i64::MAX, true),
    long("retention.ms", -1, i64::MAX, true),
    long("retention.bytes", -1, i64::MAX, true),
    TopicConfigDef { name: "cleanup.policy", kind: Kind::Choice(CLEANUP_POLICIES), enforced: true },
    // How long Kafka keeps a deleted segment's file before unlinking it. Accepted for the
    // tools that set it (confluent-kafka-python's admin tests do); Strata unlinks at once,
    // readers that hold the segment keep reading the unlinked file.
    long("file.delete.delay.ms", 0, i64::MAX, false),
    long("delete.retention.ms", 0, i64::MAX, true),
    long("min.compaction.lag.ms", 0, i64::MAX, true),
    // Kafka 3.6+ (KIP-937): CreateTime records outside [now - before, now + after] are refused.
    long("message.timestamp.before.max.ms", 0, i64::MAX, true),
    long("message.timestamp.after.max.ms", 0, i64::MAX, true),
    // KIP-390: the leader recompresses batches that arrive in another codec.
    TopicConfigDef {
        name: "compression.type",
        kind: Kind::Choice(COMPRESSION_TYPES),
        enforced: true,
    },
    long("compression.gzip.level", -1, 9, true),
    long("compression.lz4.level", 1, 17, true),
    long("compression.zstd.level", -131_072, 22, true),
    // Stored now, enforced with replication.
    long("min.insync.replicas", 1, i32::MAX as i64, false),
    // The controller elects an out-of-sync replica when no in-sync one is left.
    TopicConfigDef {
        name: "unclean.leader.election.enable",
        kind: Kind::Choice(&["true", "false"]),
        enforced: true,
    },
];

/// Legal `cleanup.policy` values (a list in Kafka: both orders of the pair are accepted). The
/// empty list is Kafka's too (what subtracting the last policy leaves): neither deletion by
/// time or size nor compaction, the log is kept whole.
pub const CLEANUP_POLICIES: &[&str] =
    &["delete", "compact", "compact,delete", "delete,compact", ""];

/// Whether a config is a comma-separated list (IncrementalAlterConfigs APPEND/SUBTRACT).
pub fn is_list(name: &str) -> bool {
    name == "cleanup.policy"
}

/// Kafka's broker-level name of a topic config's default (`log.retention.ms` & co).
pub fn broker_synonym(name: &str) -> Option<&'static str> {
    Some(match name {
        "segment.bytes" => "log.segment.bytes",
        "segment.ms" => "log.roll.ms",
        "max.message.bytes" => "message.max.bytes",
        "message.timestamp.type" => "log.message.timestamp.type",
        "flush.messages" => "log.flush.interval.messages",
        "flush.ms" => "log.flush.interval.ms",
        "retention.ms" => "log.retention.ms",
        "retention.bytes" => "log.retention.bytes",
        "cleanup.policy" => "log.cleanup.policy",
        "delete.retention.ms" => "log.cleaner.delete.retention.ms",
        "min.compaction.lag.ms" => "log.cleaner.min.compaction.lag.ms",
        "min.insync.replicas" => "min.insync.replicas",
        "unclean.leader.election.enable" => "unclean.leader.election.enable",
        "message.timestamp.before.max.ms" => "log.message.timestamp.before.max.ms",
        "message.timestamp.after.max.ms" => "log.message.timestamp.after.max.ms",
        "compression.type" => "compression.type",
        "compression.gzip.level" => "compression.gzip.level",
        "compression.lz4.level" => "compression.lz4.level",
        "compression.zstd.level" => "compression.zstd.level",
        "file.delete.delay.ms" => "log.segment.delete.delay.ms",
        _ => return None,
    })
}

/// Whether the broker's default for `name` was configured (given to `strata serve`, or
/// differing from the built-in one): DescribeConfigs then reports it as STATIC_BROKER_CONFIG
/// rather than DEFAULT_CONFIG.
pub fn broker_default_is_static(name: &str, broker: &BrokerConfig) -> bool {
    let given = broker_synonym(name).is_some_and(|s| super::broker_config::is_given(s, broker));
    given || broker_default(name, broker) != broker_default(name, &BrokerConfig::default())
}

/// A config name or value that is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicConfigError {
    /// Not a topic config we know.
    #[error("unknown topic config {0:?}")]
    Unknown(String),
    /// Known, but the value is not legal.
    #[error("invalid value {value:?} for topic config {name}: {reason}")]
    Invalid {
        /// Config name.
        name: String,
        /// Value given.
        value: String,
        /// What is legal.
        reason: String,
    },
}

/// Looks a config definition up by name.
pub fn definition(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Checks one `name = value` pair.
pub fn validate(name: &str, value: &str) -> Result<(), TopicConfigError> {
    let def = definition(name).ok_or_else(|| TopicConfigError::Unknown(name.to_owned()))?;
    let invalid = |reason: String| TopicConfigError::Invalid {
        name: name.to_owned(),
        value: value.to_owned(),
        reason,
    };
    match def.kind {
        // Kafka: 1-9, or -1 for zlib's default; 0 (stored, not compressed) is not a level.
        Kind::Long { .. }
            if name == "compression.gzip.level" && value.trim().parse::<i64>() == Ok(0) =>
        {
            Err(invalid("must be between 1 and 9, or -1".into()))
        }
        Kind::Long { min, max } => match value.trim().parse::<i64>() {
            Ok(v) if (min..=max).contains(&v) => Ok(()),
            Ok(_) => Err(invalid(format!("must be between {min} and {max}"))),
            Err(_) => Err(invalid("not an integer".into())),
        },
        Kind::Choice(words) if words.contains(&value.trim()) => Ok(()),
        Kind::Choice(words) => Err(invalid(format!("must be one of {words:?}"))),
    }
}

/// Checks every pair of a map.
pub fn validate_all(configs: &BTreeMap<String, String>) -> Result<(), TopicConfigError> {
    configs.iter().try_for_each(|(name, value)| validate(name, value))
}

/// One change asked by AlterConfigs (which sends only `Set`s, and replaces every override)
/// or IncrementalAlterConfigs (operations 0-3).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ConfigChange {
    /// Set the override.
    Set(String, String),
    /// Remove the override (back to the broker default).
    Delete(String),
    /// Add items to a list config.
    Append(String, String),
    /// Remove items from a list config.
    Subtract(String, String),
}

impl ConfigChange {
    /// The config the change is about.
    pub fn name(&self) -> &str {
        match self {
            ConfigChange::Set(n, _)
            | ConfigChange::Delete(n)
            | ConfigChange::Append(n, _)
            | ConfigChange::Subtract(n, _) => n,
        }
    }
}

/// The overrides after `changes` (applied in order to `current`, or to nothing when
/// `replace`), every resulting value validated. List values APPEND/SUBTRACT start from the
/// effective value (override, else broker default).
pub fn apply_changes(
    current: &BTreeMap<String, String>,
    changes: &[ConfigChange],
    replace: bool,
    broker: &BrokerConfig,
) -> Result<BTreeMap<String, String>, TopicConfigError> {
    let mut next = if replace { BTreeMap::new() } else { current.clone() };
    for change in changes {
        let name = change.name();
        definition(name).ok_or_else(|| TopicConfigError::Unknown(name.to_owned()))?;
        let list_op = matches!(change, ConfigChange::Append(..) | ConfigChange::Subtract(..));
        if list_op && !is_list(name) {
            return Err(TopicConfigError::Invalid {
                name: name.to_owned(),
                value: String::new(),
                reason: "APPEND and SUBTRACT apply to list configs only".into(),
            });
        }
        let effective = next.get(name).cloned().or_else(|| broker_default(name, broker));
        let mut items: Vec<String> = effective
            .unwrap_or_default()
            .split(',')
            .map(|i| i.trim().to_owned())
            .filter(|i| !i.is_empty())
            .collect();
        match change {
            ConfigChange::Set(_, value) => {
                next.insert(name.to_owned(), value.trim().to_owned());
            }
            ConfigChange::Delete(_) => {
                next.remove(name);
            }
            ConfigChange::Append(_, value) => {
                for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                    if !items.iter().any(|i| i == item) {
                        items.push(item.to_owned());
                    }
                }
                next.insert(name.to_owned(), items.join(","));
            }
            ConfigChange::Subtract(_, value) => {
                let gone: Vec<&str> = value.split(',').map(str::trim).collect();
                items.retain(|i| !gone.contains(&i.as_str()));
                next.insert(name.to_owned(), items.join(","));
            }
        }
    }
    validate_all(&next)?;
    Ok(next)
}

/// The broker-wide default of a topic config, as DescribeConfigs reports it.
pub fn broker_default(name: &str, broker: &BrokerConfig) -> Option<String> {
    let (flush_messages, flush_ms) = match &broker.flush {
        FlushPolicy::EveryProduce => (Some(1), None),
        FlushPolicy::Periodic { messages, interval_ms } => (*messages, *interval_ms),
    };
    let value = match name {
        "segment.bytes" => broker.segment_bytes.to_string(),
        "segment.ms" => broker.segment_ms.unwrap_or(7 * 24 * 3600 * 1000).to_string(),
        "max.message.bytes" => broker.max_message_bytes.to_string(),
        "message.timestamp.type" if broker.log_append_time => "LogAppendTime".into(),
        "message.timestamp.type" => "CreateTime".into(),
        "flush.messages" => flush_messages.unwrap_or(i64::MAX as u64).to_string(),
        "flush.ms" => flush_ms.unwrap_or(i64::MAX as u64).to_string(),
        "retention.ms" => broker.retention_ms.to_string(),
        "retention.bytes" => broker.retention_bytes.to_string(),
        "cleanup.policy" => broker.cleanup_policy.clone(),
        "min.insync.replicas" => "1".into(),
        "unclean.leader.election.enable" => broker.unclean_leader_election.to_string(),
        "delete.retention.ms" => broker.delete_retention_ms.to_string(),
        "min.compaction.lag.ms" => broker.min_compaction_lag_ms.to_string(),
        "message.timestamp.before.max.ms" => broker.message_timestamp_before_max_ms.to_string(),
        "message.timestamp.after.max.ms" => broker.message_timestamp_after_max_ms.to_string(),
        "compression.type" => broker.compression_type.clone(),
        "compression.gzip.level" => broker.compression_gzip_level.to_string(),
        "compression.lz4.level" => broker.compression_lz4_level.to_string(),
        "compression.zstd.level" => broker.compression_zstd_level.to_string(),
        "file.delete.delay.ms" => "60000".into(),
        _ => return None,
    };
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_config_has_a_default() {
        let broker = BrokerConfig::default();
        for def in TOPIC_CONFIGS {
            let value = broker_default(def.name, &broker).unwrap();
            assert_eq!(validate(def.name, &value), Ok(()), "{}", def.name);
        }
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(matches!(validate("retention.ms", "-5"), Err(TopicConfigError::Invalid { .. })));
        assert!(matches!(validate("segment.bytes", "100"), Err(TopicConfigError::Invalid { .. })));
        let too_big = validate("segment.bytes", "2147483648");
        assert!(matches!(too_big, Err(TopicConfigError::Invalid { .. })), "Kafka's INT maximum");
        assert!(validate("segment.bytes", "2147483647").is_ok());
        assert!(matches!(validate("cleanup.policy", "x"), Err(TopicConfigError::Invalid { .. })));
        assert!(matches!(validate("no.such", "1"), Err(TopicConfigError::Unknown(_))));
        assert_eq!(validate("message.timestamp.type", "LogAppendTime"), Ok(()));
        assert_eq!(validate("cleanup.policy", "compact,delete"), Ok(()));
        assert_eq!(validate("retention.ms", "-1"), Ok(()));
        assert_eq!(validate("compression.type", "zstd"), Ok(()));
        assert_eq!(validate("compression.type", "producer"), Ok(()));
        assert!(validate("compression.type", "brotli").is_err());
        assert_eq!(validate("compression.gzip.level", "-1"), Ok(()));
        assert!(validate("compression.gzip.level", "0").is_err());
        assert!(validate("compression.gzip.level", "10").is_err());
        assert_eq!(validate("compression.zstd.level", "-5"), Ok(()));
        assert!(validate("compression.lz4.level", "18").is_err());
        assert_eq!(validate("message.timestamp.after.max.ms", "0"), Ok(()));
        assert!(validate("message.timestamp.before.max.ms", "-1").is_err());
    }

    #[test]
    fn incremental_changes_apply_in_order() {
        let broker = BrokerConfig::default();
        let current: BTreeMap<String, String> =
            [("retention.ms".to_owned(), "1000".to_owned())].into_iter().collect();
        let changes = [
            ConfigChange::Append("cleanup.policy".into(), "compact".into()),
            ConfigChange::Delete("retention.ms".into()),
            ConfigChange::Set("segment.ms".into(), "60000".into()),
        ];
        let next = apply_changes(&current, &changes, false, &broker).unwrap();
        assert_eq!(next.get("cleanup.policy").map(String::as_str), Some("delete,compact"));
        assert_eq!(next.get("retention.ms"), None);
        assert_eq!(next.get("segment.ms").map(String::as_str), Some("60000"));
        let sub = [ConfigChange::Subtract("cleanup.policy".into(), "delete".into())];
        let next = apply_changes(&next, &sub, false, &broker).unwrap();
        assert_eq!(next.get("cleanup.policy").map(String::as_str), Some("compact"));
        let bad = [ConfigChange::Append("retention.ms".into(), "5".into())];
        assert!(apply_changes(&next, &bad, false, &broker).is_err());
        let all = [ConfigChange::Subtract("cleanup.policy".into(), "compact".into())];
        let none = apply_changes(&next, &all, false, &broker).unwrap();
        assert_eq!(none.get("cleanup.policy").map(String::as_str), Some(""), "empty policy");
        let replaced = [ConfigChange::Set("retention.bytes".into(), "10".into())];
        let next = apply_changes(&next, &replaced, true, &broker).unwrap();
        assert_eq!(next.len(), 1);
    }

    #[test]
    fn configured_broker_defaults_are_static() {
        let broker = BrokerConfig { retention_ms: 1000, ..BrokerConfig::default() };
        assert!(broker_default_is_static("retention.ms", &broker));
        assert!(!broker_default_is_static("retention.bytes", &broker));
    }
}
