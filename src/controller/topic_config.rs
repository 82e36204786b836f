//! Topic-level configs: which names exist, what values are legal, and their broker defaults.

use std::collections::BTreeMap;

use crate::config::{limits, BrokerConfig, FlushPolicy};

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
    long("segment.bytes", limits::SEGMENT_BYTES_MIN as i64, u32::MAX as i64, true),
    long("segment.ms", 1, i64::MAX, true),
    long("max.message.bytes", 0, i32::MAX as i64, true),
    TopicConfigDef {
        name: "message.timestamp.type",
        kind: Kind::Choice(&["CreateTime", "LogAppendTime"]),
        enforced: true,
    },
    long("flush.messages", 1, i64::MAX, true),
    long("flush.ms", 0, i64::MAX, true),
    // Known to Kafka users; stored now, enforced by retention/compaction and replication work.
    long("retention.ms", -1, i64::MAX, false),
    long("retention.bytes", -1, i64::MAX, false),
    TopicConfigDef {
        name: "cleanup.policy",
        kind: Kind::Choice(&["delete", "compact", "compact,delete", "delete,compact"]),
        enforced: false,
    },
    long("min.insync.replicas", 1, i32::MAX as i64, false),
    long("delete.retention.ms", 0, i64::MAX, false),
    long("min.compaction.lag.ms", 0, i64::MAX, false),
];

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
        "retention.ms" => (7 * 24 * 3600 * 1000i64).to_string(),
        "retention.bytes" => "-1".into(),
        "cleanup.policy" => "delete".into(),
        "min.insync.replicas" => "1".into(),
        "delete.retention.ms" => (24 * 3600 * 1000i64).to_string(),
        "min.compaction.lag.ms" => "0".into(),
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
        assert!(matches!(validate("cleanup.policy", "x"), Err(TopicConfigError::Invalid { .. })));
        assert!(matches!(validate("no.such", "1"), Err(TopicConfigError::Unknown(_))));
        assert_eq!(validate("message.timestamp.type", "LogAppendTime"), Ok(()));
    }
}
