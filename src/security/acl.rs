//! Kafka's ACL vocabulary, pure: resource types, pattern types, operations and permissions
//! with their wire codes and names; ACL bindings; binding filters and how they match
//! (DescribeAcls, DeleteAcls); and the checks a new binding must pass (CreateAcls).
//!
//! Codes are Kafka's (`org.apache.kafka.common.acl` and `...resource`): an unknown wire code
//! reads as `Unknown`, as Kafka's `fromCode` does, and a filter or binding holding `Unknown`
//! is refused with INVALID_REQUEST. Names print as Kafka prints them (`TOPIC`, `READ`) and
//! parse case-insensitively with or without separators (`idempotent-write`, `IdempotentWrite`).

use std::fmt;
use std::net::IpAddr;

use super::Principal;

/// The name of the one cluster resource (`Resource.CLUSTER_NAME`).
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// A literal pattern with this name matches every resource of its type; as a host, any host.
pub const WILDCARD: &str = "*";
/// The principal of ACLs that apply to every principal.
pub const WILDCARD_PRINCIPAL: &str = "User:*";

/// Writes one `enum` with its Kafka codes and names, and the conversions between them.
macro_rules! kafka_enum {
    (
        $(#[$doc:meta])*
        $name:ident { $($(#[$vdoc:meta])* $variant:ident = $code:literal, $text:literal;)* }
    ) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
        }

        impl $name {
            /// Every value, in code order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// Kafka's wire code.
            pub fn code(self) -> i8 {
                match self { $($name::$variant => $code,)* }
            }

            /// The value of a wire code; codes Kafka does not define read as `Unknown`.
            pub fn from_code(code: i8) -> $name {
                match code { $($code => $name::$variant,)* _ => $name::Unknown }
            }

            /// Kafka's name (`TOPIC`, `READ`, ...).
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }

            /// Parses a name, ignoring case, `-` and `_` (`read`, `IdempotentWrite`,
            /// `idempotent-write`); `None` for `Unknown` or anything else.
            pub fn parse(text: &str) -> Option<$name> {
                let wanted = fold(text);
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| *v != $name::Unknown && fold(v.name()) == wanted)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

fn fold(text: &str) -> String {
    text.chars().filter(|c| *c != '_' && *c != '-').flat_map(char::to_lowercase).collect()
}

kafka_enum! {
    /// What an ACL is about (`ResourceType`).
    ResourceType {
        /// A code Kafka does not define.
        Unknown = 0, "UNKNOWN";
        /// Filters only: every type.
        Any = 1, "ANY";
        /// A topic.
        Topic = 2, "TOPIC";
        /// A consumer group.
        Group = 3, "GROUP";
        /// The cluster (named [`CLUSTER_NAME`]).
        Cluster = 4, "CLUSTER";
        /// A transactional id.
        TransactionalId = 5, "TRANSACTIONAL_ID";
        /// A delegation token.
        DelegationToken = 6, "DELEGATION_TOKEN";
        /// A user (for delegation tokens).
        User = 7, "USER";
    }
}

kafka_enum! {
    /// How an ACL's resource name matches names (`PatternType`).
    PatternType {
        /// A code Kafka does not define.
        Unknown = 0, "UNKNOWN";
        /// Filters only: any pattern type, name matched exactly.
        Any = 1, "ANY";
        /// Filters only: every pattern that would apply to the named resource.
        Match = 2, "MATCH";
        /// The name exactly, or every name when it is [`WILDCARD`].
        Literal = 3, "LITERAL";
        /// Every name that starts with this one.
        Prefixed = 4, "PREFIXED";
    }
}

kafka_enum! {
    /// What an ACL allows or denies (`AclOperation`).
    Operation {
        /// A code Kafka does not define.
        Unknown = 0, "UNKNOWN";
        /// Filters only: every operation.
        Any = 1, "ANY";
        /// Every operation.
        All = 2, "ALL";
        /// Fetch, commit offsets, join a group.
        Read = 3, "READ";
        /// Produce, write transactionally.
        Write = 4, "WRITE";
        /// Create topics.
        Create = 5, "CREATE";
        /// Delete topics, records, groups.
        Delete = 6, "DELETE";
        /// Add partitions, change ACLs.
        Alter = 7, "ALTER";
        /// Metadata, offsets, group and transaction descriptions.
        Describe = 8, "DESCRIBE";
        /// Broker-to-broker requests.
        ClusterAction = 9, "CLUSTER_ACTION";
        /// Read configs.
        DescribeConfigs = 10, "DESCRIBE_CONFIGS";
        /// Change configs.
        AlterConfigs = 11, "ALTER_CONFIGS";
        /// Idempotent producers without transactions.
        IdempotentWrite = 12, "IDEMPOTENT_WRITE";
        /// Create delegation tokens.
        CreateTokens = 13, "CREATE_TOKENS";
        /// Describe delegation tokens.
        DescribeTokens = 14, "DESCRIBE_TOKENS";
    }
}

kafka_enum! {
    /// Whether an ACL allows or denies (`AclPermissionType`).
    Permission {
        /// A code Kafka does not define.
        Unknown = 0, "UNKNOWN";
        /// Filters only: both.
        Any = 1, "ANY";
        /// Denies (wins over every allow).
        Deny = 2, "DENY";
        /// Allows.
        Allow = 3, "ALLOW";
    }
}

impl ResourceType {
    /// The operations an ACL on this resource type can grant, as Kafka 4.x lists them
    /// (`AclEntry.supportedOperations`): the bits of an "authorized operations" answer.
    pub fn operations(self) -> &'static [Operation] {
        use Operation::*;
        match self {
            ResourceType::Topic => {
                &[Read, Write, Create, Delete, Alter, Describe, DescribeConfigs, AlterConfigs]
            }
            ResourceType::Group => &[Read, Delete, Describe, DescribeConfigs, AlterConfigs],
            ResourceType::Cluster => &[
                Create,
                Alter,
                Describe,
                ClusterAction,
                DescribeConfigs,
                AlterConfigs,
                IdempotentWrite,
            ],
            ResourceType::TransactionalId => &[Write, Describe],
            ResourceType::DelegationToken => &[Describe],
            ResourceType::User => &[CreateTokens, DescribeTokens],
            ResourceType::Unknown | ResourceType::Any => &[],
        }
    }

    /// Whether this is a concrete type a binding can name (not `Any` or `Unknown`).
    pub fn is_concrete(self) -> bool {
        !matches!(self, ResourceType::Any | ResourceType::Unknown)
    }
}

/// Kafka's bit field of operations (`Utils.to32BitField`): bit `code` set per operation.
pub fn operations_bits(operations: impl IntoIterator<Item = Operation>) -> i32 {
    operations.into_iter().fold(0i32, |bits, op| bits | (1i32 << op.code()))
}

/// One ACL: who may or may not do what, from where, on which resources (`AclBinding`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AclBinding {
    /// Resource type (concrete).
    pub resource_type: ResourceType,
    /// Resource name, or [`WILDCARD`].
    pub resource_name: String,
    /// `Literal` or `Prefixed`.
    pub pattern_type: PatternType,
    /// `Type:name`, or [`WILDCARD_PRINCIPAL`].
    pub principal: String,
    /// An IP address as the client's address prints, or [`WILDCARD`].
    pub host: String,
    /// The operation (not `Any`).
    pub operation: Operation,
    /// `Allow` or `Deny`.
    pub permission: Permission,
}

/// Why a binding cannot be created (answered as INVALID_REQUEST with this message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidAcl(pub String);

impl AclBinding {
    /// The checks Kafka's controller makes before creating a binding
    /// (`AclControlManager.validateNewAcl`, plus the cluster name rule of `AclApis`).
    pub fn validate(&self) -> Result<(), InvalidAcl> {
        let bad = |what: String| Err(InvalidAcl(what));
        if !self.resource_type.is_concrete() {
            return bad(format!("invalid resource type {}", self.resource_type));
        }
        if !matches!(self.pattern_type, PatternType::Literal | PatternType::Prefixed) {
            return bad(format!("invalid pattern type {}", self.pattern_type));
        }
        if matches!(self.operation, Operation::Any | Operation::Unknown) {
            return bad(format!("invalid operation {}", self.operation));
        }
        if !matches!(self.permission, Permission::Allow | Permission::Deny) {
            return bad(format!("invalid permission type {}", self.permission));
        }
        if self.resource_name.is_empty() {
            return bad("resource name should not be empty".into());
        }
        if self.resource_type == ResourceType::Cluster && self.resource_name != CLUSTER_NAME {
            return bad(format!("the only valid name for the CLUSTER resource is {CLUSTER_NAME}"));
        }
        if Principal::parse(&self.principal).is_none() {
            return bad(format!("could not parse principal {:?} (want Type:name)", self.principal));
        }
        if self.host.is_empty() {
            return bad("host should not be empty (use * for any host)".into());
        }
        Ok(())
    }

    /// Whether this binding's resource pattern applies to the resource `name` of its type.
    pub fn pattern_matches(&self, name: &str) -> bool {
        match self.pattern_type {
            PatternType::Literal => self.resource_name == name || self.resource_name == WILDCARD,
            PatternType::Prefixed => name.starts_with(self.resource_name.as_str()),
            _ => false,
        }
    }
}

impl fmt::Display for AclBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "(principal={}, host={}, operation={}, permission={}) on {}:{}:{}",
            self.principal,
            self.host,
            self.operation,
            self.permission,
            self.resource_type,
            self.pattern_type,
            self.resource_name
        )
    }
}

/// A filter over bindings (`AclBindingFilter`): `None` strings and `Any` values match all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclFilter {
    /// Resource type, or `Any`.
    pub resource_type: ResourceType,
    /// Resource name, or `None` for any.
    pub resource_name: Option<String>,
    /// `Any`, `Match`, `Literal` or `Prefixed`.
    pub pattern_type: PatternType,
    /// Principal, or `None` for any.
    pub principal: Option<String>,
    /// Host, or `None` for any.
    pub host: Option<String>,
    /// Operation, or `Any`.
    pub operation: Operation,
    /// Permission, or `Any`.
    pub permission: Permission,
}

impl AclFilter {
    /// A filter matching every binding.
    pub fn any() -> AclFilter {
        AclFilter {
            resource_type: ResourceType::Any,
            resource_name: None,
            pattern_type: PatternType::Any,
            principal: None,
            host: None,
            operation: Operation::Any,
            permission: Permission::Any,
        }
    }

    /// A filter holding a value Kafka refuses in filters (`isUnknown`): answered with
    /// INVALID_REQUEST.
    pub fn validate(&self) -> Result<(), InvalidAcl> {
        if self.resource_type == ResourceType::Unknown {
            return Err(InvalidAcl("unknown resource type in filter".into()));
        }
        if self.pattern_type == PatternType::Unknown {
            return Err(InvalidAcl("unknown pattern type in filter".into()));
        }
        if self.operation == Operation::Unknown {
            return Err(InvalidAcl("unknown operation in filter".into()));
        }
        if self.permission == Permission::Unknown {
            return Err(InvalidAcl("unknown permission type in filter".into()));
        }
        Ok(())
    }

    /// Kafka's `AclBindingFilter.matches`: the resource pattern filter
    /// (`ResourcePatternFilter.matches`) and the entry filter.
    pub fn matches(&self, acl: &AclBinding) -> bool {
        self.matches_resource(acl) && self.matches_entry(acl)
    }

    fn matches_resource(&self, acl: &AclBinding) -> bool {
        if self.resource_type != ResourceType::Any && self.resource_type != acl.resource_type {
            return false;
        }
        let any_pattern = matches!(self.pattern_type, PatternType::Any | PatternType::Match);
        if !any_pattern && self.pattern_type != acl.pattern_type {
            return false;
        }
        let Some(name) = &self.resource_name else { return true };
        if self.pattern_type == PatternType::Any || self.pattern_type == acl.pattern_type {
            return *name == acl.resource_name;
        }
        // Match: every pattern that applies to the named resource.
        acl.pattern_matches(name)
    }

    fn matches_entry(&self, acl: &AclBinding) -> bool {
        self.principal.as_ref().is_none_or(|p| *p == acl.principal)
            && self.host.as_ref().is_none_or(|h| *h == acl.host)
            && (self.operation == Operation::Any || self.operation == acl.operation)
            && (self.permission == Permission::Any || self.permission == acl.permission)
    }
}

/// The host of an ACL as an address to compare with clients' (`None`: any host). A host that
/// is not an IP address never matches, as in Kafka (which compares the client's address text).
pub fn parse_host(host: &str) -> Option<Option<IpAddr>> {
    if host == WILDCARD {
        return Some(None);
    }
    host.parse::<IpAddr>().ok().map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn binding(rt: ResourceType, name: &str, pt: PatternType) -> AclBinding {
        AclBinding {
            resource_type: rt,
            resource_name: name.into(),
            pattern_type: pt,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: Operation::Read,
            permission: Permission::Allow,
        }
    }

    #[test]
    fn codes_and_names_round_trip_and_unknown_codes_read_as_unknown() {
        for op in Operation::ALL {
            assert_eq!(Operation::from_code(op.code()), *op);
        }
        assert_eq!(Operation::from_code(99), Operation::Unknown);
        assert_eq!(ResourceType::from_code(-3), ResourceType::Unknown);
        assert_eq!(Operation::parse("idempotent-write"), Some(Operation::IdempotentWrite));
        assert_eq!(Operation::parse("IdempotentWrite"), Some(Operation::IdempotentWrite));
        assert_eq!(Operation::parse("READ"), Some(Operation::Read));
        assert_eq!(Operation::parse("unknown"), None);
        assert_eq!(ResourceType::parse("transactional_id"), Some(ResourceType::TransactionalId));
        assert_eq!(PatternType::parse("prefixed"), Some(PatternType::Prefixed));
        assert_eq!(Operation::Describe.to_string(), "DESCRIBE");
    }

    #[test]
    fn operation_bits_are_kafkas_32_bit_field() {
        let bits = operations_bits(ResourceType::Group.operations().iter().copied());
        assert_eq!(bits, (1 << 3) | (1 << 6) | (1 << 8) | (1 << 10) | (1 << 11));
        assert_eq!(operations_bits([]), 0);
        assert!(ResourceType::Topic.operations().contains(&Operation::AlterConfigs));
        assert!(!ResourceType::Topic.operations().contains(&Operation::ClusterAction));
    }

    #[test]
    fn new_bindings_are_checked_as_kafka_checks_them() {
        let ok = binding(ResourceType::Topic, "t", PatternType::Literal);
        assert_eq!(ok.validate(), Ok(()));
        let cases = [
            AclBinding { pattern_type: PatternType::Match, ..ok.clone() },
            AclBinding { pattern_type: PatternType::Any, ..ok.clone() },
            AclBinding { resource_type: ResourceType::Any, ..ok.clone() },
            AclBinding { operation: Operation::Any, ..ok.clone() },
            AclBinding { permission: Permission::Any, ..ok.clone() },
            AclBinding { resource_name: String::new(), ..ok.clone() },
            AclBinding { principal: "alice".into(), ..ok.clone() },
            AclBinding { resource_type: ResourceType::Cluster, ..ok.clone() },
        ];
        for bad in cases {
            assert!(bad.validate().is_err(), "{bad} should be refused");
        }
        let cluster = AclBinding {
            resource_type: ResourceType::Cluster,
            resource_name: CLUSTER_NAME.into(),
            ..ok
        };
        assert_eq!(cluster.validate(), Ok(()));
    }

    #[test]
    fn filters_match_as_kafkas_resource_pattern_filter() {
        let literal = binding(ResourceType::Topic, "payments", PatternType::Literal);
        let wildcard = binding(ResourceType::Topic, "*", PatternType::Literal);
        let prefixed = binding(ResourceType::Topic, "pay", PatternType::Prefixed);
        let group = binding(ResourceType::Group, "payments", PatternType::Literal);
        let all = [&literal, &wildcard, &prefixed, &group];
        let matching = |filter: &AclFilter| -> Vec<&AclBinding> {
            all.iter().copied().filter(|b| filter.matches(b)).collect()
        };
        let named = |pt: PatternType| AclFilter {
            resource_type: ResourceType::Topic,
            resource_name: Some("payments".into()),
            pattern_type: pt,
            ..AclFilter::any()
        };
        assert_eq!(matching(&AclFilter::any()).len(), 4);
        assert_eq!(matching(&named(PatternType::Any)), vec![&literal]);
        assert_eq!(matching(&named(PatternType::Literal)), vec![&literal]);
        assert!(matching(&named(PatternType::Prefixed)).is_empty());
        assert_eq!(matching(&named(PatternType::Match)), vec![&literal, &wildcard, &prefixed]);
        let denies = AclFilter { permission: Permission::Deny, ..AclFilter::any() };
        assert!(matching(&denies).is_empty());
        let bob = AclFilter { principal: Some("User:bob".into()), ..AclFilter::any() };
        assert!(matching(&bob).is_empty());
        let unknown = AclFilter { operation: Operation::Unknown, ..AclFilter::any() };
        assert!(unknown.validate().is_err());
        assert_eq!(named(PatternType::Match).validate(), Ok(()));
    }

    #[test]
    fn hosts_are_ip_addresses_or_the_wildcard() {
        assert_eq!(parse_host("*"), Some(None));
        assert_eq!(parse_host("10.0.0.1"), Some(Some("10.0.0.1".parse().unwrap())));
        assert_eq!(parse_host("::1"), Some(Some("::1".parse().unwrap())));
        assert_eq!(parse_host("broker.example.com"), None);
    }
}
