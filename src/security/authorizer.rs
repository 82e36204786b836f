//! The ACL authorizer, with the semantics of Kafka's `StandardAuthorizer` (KRaft), pure.
//!
//! A request is allowed when its principal is a super user; otherwise the ACLs whose resource
//! pattern applies to the resource (literal name, `*`, or a prefix of the name) are examined:
//! a matching DENY wins over any ALLOW; a matching ALLOW allows; when none matches, the answer
//! is DENIED if the resource has any ACL at all (for anyone), and
//! `allow.everyone.if.no.acl.found` when it has none. An ACL matches when its principal is the
//! caller's or `User:*`, its host is `*` or the caller's address, and its operation is the one
//! asked, `ALL`, or (ALLOW ACLs only) one that implies it: READ, WRITE, DELETE and ALTER imply
//! DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS.
//!
//! One [`Authorizer`] lives on each shard, built from the cluster metadata's ACLs and rebuilt
//! when they change. Answers are cached per (principal, host, operation, resource), so the
//! produce and fetch paths pay one hash lookup, with no allocation on a hit, not a walk over
//! the ACLs; the cache holds at most [`limits::AUTHORIZATION_CACHE_ENTRIES_MAX`] answers and
//! starts over when full.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::BuildHasher;
use std::net::IpAddr;

use hashbrown::HashTable;

use super::acl::{
    operations_bits, parse_host, AclBinding, Operation, PatternType, Permission, ResourceType,
    WILDCARD, WILDCARD_PRINCIPAL,
};
use super::Principal;
use crate::config::limits;

/// The static settings of the authorizer (Kafka's `super.users` and
/// `allow.everyone.if.no.acl.found`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthorizerConfig {
    /// Principals allowed everything, as `Type:name`.
    pub super_users: Vec<String>,
    /// The answer for a resource that has no ACL at all.
    pub allow_everyone_if_no_acl_found: bool,
}

/// Why an answer was given (for the audit log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// The principal is a super user.
    SuperUser,
    /// A matching ALLOW ACL, and no matching DENY.
    AllowAcl,
    /// A matching DENY ACL.
    DenyAcl,
    /// The resource has ACLs, none of which allows this.
    NoMatchingAllow,
    /// The resource has no ACL, and `allow.everyone.if.no.acl.found` is on (when it is off,
    /// the answer is [`Rule::NoMatchingAllow`]).
    NoAcls,
}

impl Rule {
    /// Whether the rule allows.
    pub fn allows(self) -> bool {
        matches!(self, Rule::SuperUser | Rule::AllowAcl | Rule::NoAcls)
    }
}

/// Where an ACL applies from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HostMatch {
    Any,
    Ip(IpAddr),
    /// Not an IP address: matches no client (Kafka compares address text).
    Never,
}

/// One ACL, as the index keeps it.
#[derive(Clone, Debug)]
struct Entry {
    /// `None`: `User:*`.
    principal: Option<Principal>,
    host: HostMatch,
    operation: Operation,
    permission: Permission,
}

impl Entry {
    fn from_binding(b: &AclBinding) -> Entry {
        let principal =
            if b.principal == WILDCARD_PRINCIPAL { None } else { Principal::parse(&b.principal) };
        let host = match parse_host(&b.host) {
            Some(None) => HostMatch::Any,
            Some(Some(ip)) => HostMatch::Ip(ip),
            None => HostMatch::Never,
        };
        Entry { principal, host, operation: b.operation, permission: b.permission }
    }

    /// Kafka's `StandardAuthorizerData.findResult`: `None` when this ACL does not apply.
    fn result(&self, who: &Principal, host: IpAddr, op: Operation) -> Option<Permission> {
        if let Some(p) = &self.principal {
            if p.kind != who.kind || p.name != who.name {
                return None;
            }
        }
        match self.host {
            HostMatch::Any => {}
            HostMatch::Ip(ip) if ip == host => {}
            HostMatch::Ip(_) | HostMatch::Never => return None,
        }
        if self.operation != Operation::All {
            let applies = if self.permission == Permission::Allow {
                match op {
                    Operation::Describe => matches!(
                        self.operation,
                        Operation::Describe
                            | Operation::Read
                            | Operation::Write
                            | Operation::Delete
                            | Operation::Alter
                    ),
                    Operation::DescribeConfigs => matches!(
                        self.operation,
                        Operation::DescribeConfigs | Operation::AlterConfigs
                    ),
                    _ => self.operation == op,
                }
            } else {
                self.operation == op
            };
            if !applies {
                return None;
            }
        }
        Some(self.permission)
    }
}

/// The ACLs of one resource type.
#[derive(Debug, Default)]
struct TypeIndex {
    literal: HashMap<String, Vec<Entry>>,
    /// Literal `*`.
    wildcard: Vec<Entry>,
    prefixed: BTreeMap<String, Vec<Entry>>,
}

/// Every ACL, indexed by resource type and pattern.
#[derive(Debug, Default)]
struct AclIndex {
    types: HashMap<ResourceType, TypeIndex>,
}

impl AclIndex {
    fn new(bindings: &[AclBinding]) -> AclIndex {
        let mut index = AclIndex::default();
        for b in bindings {
            let entry = Entry::from_binding(b);
            let t = index.types.entry(b.resource_type).or_default();
            match b.pattern_type {
                PatternType::Literal if b.resource_name == WILDCARD => t.wildcard.push(entry),
                PatternType::Literal => {
                    t.literal.entry(b.resource_name.clone()).or_default().push(entry)
                }
                PatternType::Prefixed => {
                    t.prefixed.entry(b.resource_name.clone()).or_default().push(entry)
                }
                _ => {}
            }
        }
        index
    }

    /// The ACLs whose pattern applies to `name` of type `rt`.
    fn applicable<'a>(
        &'a self,
        rt: ResourceType,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Entry> {
        let t = self.types.get(&rt);
        let literal = t.and_then(|t| t.literal.get(name)).into_iter().flatten();
        let wildcard = t.into_iter().flat_map(|t| t.wildcard.iter());
        // Every prefix of the name (at character boundaries) that is a prefixed pattern.
        let prefixes = name.char_indices().map(|(i, c)| i + c.len_utf8());
        let prefixed = prefixes
            .filter_map(move |end| t.and_then(|t| t.prefixed.get(name.get(..end)?)))
            .flatten();
        literal.chain(wildcard).chain(prefixed)
    }
}

/// A cached answer's key, owned.
struct Cached {
    kind: Box<str>,
    principal: Box<str>,
    host: IpAddr,
    operation: Operation,
    resource_type: ResourceType,
    resource: Box<str>,
    allowed: bool,
}

/// The authorizer of one shard. See the module docs.
pub struct Authorizer {
    config: AuthorizerConfig,
    super_users: HashSet<String>,
    acls: AclIndex,
    count: usize,
    cache: RefCell<HashTable<Cached>>,
    hasher: std::collections::hash_map::RandomState,
    hits: Cell<u64>,
}

impl Authorizer {
    /// An authorizer over `bindings` (assumed valid: see [`AclBinding::validate`]).
    pub fn new(config: AuthorizerConfig, bindings: &[AclBinding]) -> Authorizer {
        let super_users = config.super_users.iter().cloned().collect();
        Authorizer {
            config,
            super_users,
            acls: AclIndex::new(bindings),
            count: bindings.len(),
            cache: RefCell::new(HashTable::new()),
            hasher: Default::default(),
            hits: Cell::new(0),
        }
    }

    /// The settings this authorizer was built with.
    pub fn config(&self) -> &AuthorizerConfig {
        &self.config
    }

    /// How many ACLs it holds.
    pub fn acl_count(&self) -> usize {
        self.count
    }

    /// Answers served from the cache so far.
    pub fn cache_hits(&self) -> u64 {
        self.hits.get()
    }

    /// Whether `who`, connected from `host`, may do `op` on resource `name` of type `rt`:
    /// a cache lookup, and on a miss [`Authorizer::decide`].
    pub fn authorize(
        &self,
        who: &Principal,
        host: IpAddr,
        op: Operation,
        rt: ResourceType,
        name: &str,
    ) -> bool {
        let hash = self.hasher.hash_one((&*who.kind, &*who.name, host, op, rt, name));
        let eq = |c: &Cached| {
            c.operation == op
                && c.resource_type == rt
                && c.host == host
                && *c.resource == *name
                && *c.principal == *who.name
                && *c.kind == *who.kind
        };
        if let Some(found) = self.cache.borrow().find(hash, eq) {
            self.hits.set(self.hits.get().wrapping_add(1));
            return found.allowed;
        }
        let allowed = self.decide(who, host, op, rt, name).allows();
        let mut cache = self.cache.borrow_mut();
        if cache.len() >= limits::AUTHORIZATION_CACHE_ENTRIES_MAX {
            cache.clear();
        }
        let entry = Cached {
            kind: who.kind.as_str().into(),
            principal: who.name.as_str().into(),
            host,
            operation: op,
            resource_type: rt,
            resource: name.into(),
            allowed,
        };
        let hasher = &self.hasher;
        cache.insert_unique(hash, entry, |c| {
            hasher.hash_one((
                &*c.kind,
                &*c.principal,
                c.host,
                c.operation,
                c.resource_type,
                &*c.resource,
            ))
        });
        allowed
    }

    /// The rule that decides `op` on `name` of type `rt` for `who` at `host` (no cache).
    pub fn decide(
        &self,
        who: &Principal,
        host: IpAddr,
        op: Operation,
        rt: ResourceType,
        name: &str,
    ) -> Rule {
        if self.is_super_user(who) {
            return Rule::SuperUser;
        }
        let mut has_acls = false;
        let mut allowed = false;
        for entry in self.acls.applicable(rt, name) {
            has_acls = true;
            match entry.result(who, host, op) {
                Some(Permission::Deny) => return Rule::DenyAcl,
                Some(Permission::Allow) => allowed = true,
                _ => {}
            }
        }
        match (allowed, has_acls) {
            (true, _) => Rule::AllowAcl,
            (false, true) => Rule::NoMatchingAllow,
            (false, false) if self.config.allow_everyone_if_no_acl_found => Rule::NoAcls,
            (false, false) => Rule::NoMatchingAllow,
        }
    }

    fn is_super_user(&self, who: &Principal) -> bool {
        // Compared as Kafka compares them: the principal's `Type:name` text.
        !self.super_users.is_empty() && self.super_users.contains(&who.to_string())
    }

    /// Kafka's "authorized operations" bit field of a resource: the supported operations of
    /// its type that `who` may do.
    pub fn authorized_operations(
        &self,
        who: &Principal,
        host: IpAddr,
        rt: ResourceType,
        name: &str,
    ) -> i32 {
        let ops = rt.operations().iter().copied();
        operations_bits(ops.filter(|op| self.authorize(who, host, *op, rt, name)))
    }

    /// Kafka's `Authorizer.authorizeByResourceType` (KIP-679): whether `who` may do `op` on
    /// at least one resource of type `rt`: allowed for a super user (and whoever may do it on
    /// a resource nobody wrote ACLs for), else when some ALLOW ACL of this principal and host
    /// for the operation is not covered by a DENY (a literal deny of the same name, a prefixed
    /// deny of a prefix of it, or a wildcard deny).
    pub fn authorize_by_resource_type(
        &self,
        who: &Principal,
        host: IpAddr,
        op: Operation,
        rt: ResourceType,
    ) -> bool {
        // As Kafka: a hard-coded name, so super users and the no-ACL default apply.
        if self.decide(who, host, op, rt, "hardcode").allows() {
            return true;
        }
        let Some(t) = self.acls.types.get(&rt) else { return false };
        let applies = |e: &Entry, want: Permission| {
            e.permission == want
                && (e.operation == op || e.operation == Operation::All)
                && e.principal.as_ref().is_none_or(|p| p == who)
                && match e.host {
                    HostMatch::Any => true,
                    HostMatch::Ip(ip) => ip == host,
                    HostMatch::Never => false,
                }
        };
        let any = |entries: &[Entry], want| entries.iter().any(|e| applies(e, want));
        if any(&t.wildcard, Permission::Deny) {
            return false;
        }
        if any(&t.wildcard, Permission::Allow) {
            return true;
        }
        let denied_prefixes: Vec<&str> = t
            .prefixed
            .iter()
            .filter(|(_, entries)| any(entries, Permission::Deny))
            .map(|(name, _)| name.as_str())
            .collect();
        let dominated = |name: &str| denied_prefixes.iter().any(|prefix| name.starts_with(prefix));
        let literal_allows = t.literal.iter().filter(|(name, entries)| {
            any(entries, Permission::Allow) && !any(entries, Permission::Deny) && !dominated(name)
        });
        let prefixed_allows = t
            .prefixed
            .iter()
            .filter(|(name, entries)| any(entries, Permission::Allow) && !dominated(name));
        literal_allows.count() > 0 || prefixed_allows.count() > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::acl::CLUSTER_NAME;

    const HOST: &str = "10.0.0.1";

    fn host() -> IpAddr {
        HOST.parse().unwrap()
    }

    fn acl(
        principal: &str,
        op: Operation,
        permission: Permission,
        rt: ResourceType,
        name: &str,
        pt: PatternType,
    ) -> AclBinding {
        AclBinding {
            resource_type: rt,
            resource_name: name.into(),
            pattern_type: pt,
            principal: principal.into(),
            host: "*".into(),
            operation: op,
            permission,
        }
    }

    fn allow(principal: &str, op: Operation, rt: ResourceType, name: &str) -> AclBinding {
        acl(principal, op, Permission::Allow, rt, name, PatternType::Literal)
    }

    fn deny(principal: &str, op: Operation, rt: ResourceType, name: &str) -> AclBinding {
        acl(principal, op, Permission::Deny, rt, name, PatternType::Literal)
    }

    fn authorizer(acls: &[AclBinding]) -> Authorizer {
        Authorizer::new(AuthorizerConfig::default(), acls)
    }

    fn may(a: &Authorizer, user: &str, op: Operation, rt: ResourceType, name: &str) -> bool {
        let allowed = a.authorize(&Principal::user(user), host(), op, rt, name);
        let again = a.authorize(&Principal::user(user), host(), op, rt, name);
        assert_eq!(allowed, again, "the cached answer is the decided one");
        assert_eq!(allowed, a.decide(&Principal::user(user), host(), op, rt, name).allows());
        allowed
    }

    use Operation::*;
    use ResourceType::{Cluster, Group, Topic, TransactionalId};

    #[test]
    fn allow_then_deny_wins() {
        let a = authorizer(&[allow("User:alice", Read, Topic, "t")]);
        assert!(may(&a, "alice", Read, Topic, "t"));
        assert!(!may(&a, "alice", Write, Topic, "t"));
        assert!(!may(&a, "bob", Read, Topic, "t"), "the resource has ACLs, none for bob");
        let a = authorizer(&[
            allow("User:alice", Read, Topic, "t"),
            deny("User:alice", Read, Topic, "t"),
        ]);
        assert!(!may(&a, "alice", Read, Topic, "t"));
        let a = authorizer(&[allow("User:*", All, Topic, "*"), deny("User:bob", All, Topic, "t")]);
        assert!(may(&a, "alice", Write, Topic, "t"));
        assert!(!may(&a, "bob", Write, Topic, "t"));
        assert!(may(&a, "bob", Write, Topic, "u"));
    }

    #[test]
    fn implied_operations_apply_to_allow_acls_only() {
        for op in [Read, Write, Delete, Alter] {
            let a = authorizer(&[allow("User:alice", op, Topic, "t")]);
            assert!(may(&a, "alice", Describe, Topic, "t"), "{op} implies DESCRIBE");
        }
        let a = authorizer(&[allow("User:alice", Create, Topic, "t")]);
        assert!(!may(&a, "alice", Describe, Topic, "t"), "CREATE does not imply DESCRIBE");
        let a = authorizer(&[allow("User:alice", AlterConfigs, Topic, "t")]);
        assert!(may(&a, "alice", DescribeConfigs, Topic, "t"));
        // A DENY READ does not deny DESCRIBE.
        let a = authorizer(&[
            allow("User:alice", Describe, Topic, "t"),
            deny("User:alice", Read, Topic, "t"),
        ]);
        assert!(may(&a, "alice", Describe, Topic, "t"));
        assert!(!may(&a, "alice", Read, Topic, "t"));
        // A DENY ALL denies everything.
        let a = authorizer(&[
            allow("User:alice", All, Topic, "t"),
            deny("User:alice", All, Topic, "t"),
        ]);
        assert!(!may(&a, "alice", Describe, Topic, "t"));
    }

    #[test]
    fn prefixed_and_wildcard_patterns() {
        let prefixed =
            |p, op, name| acl(p, op, Permission::Allow, Topic, name, PatternType::Prefixed);
        let a = authorizer(&[
            prefixed("User:alice", Write, "pay"),
            allow("User:bob", Read, Topic, "*"),
        ]);
        assert!(may(&a, "alice", Write, Topic, "payments"));
        assert!(may(&a, "alice", Write, Topic, "pay"), "a prefix matches the name itself");
        assert!(!may(&a, "alice", Write, Topic, "pa"));
        assert!(!may(&a, "alice", Write, Topic, "orders"), "orders has the wildcard ACL");
        assert!(may(&a, "bob", Read, Topic, "anything"));
        assert!(!may(&a, "bob", Read, Group, "anything"), "wildcards stay in their type");
        // A literal ACL named like a prefix does not match longer names.
        let a = authorizer(&[allow("User:alice", Read, Topic, "pay")]);
        assert!(!may(&a, "alice", Read, Topic, "payments"));
        // A prefixed DENY wins over a literal ALLOW.
        let a = authorizer(&[
            allow("User:alice", Read, Topic, "payments"),
            acl("User:alice", Read, Permission::Deny, Topic, "pay", PatternType::Prefixed),
        ]);
        assert!(!may(&a, "alice", Read, Topic, "payments"));
        // Multi-byte names: prefixes stop at character boundaries.
        let a = authorizer(&[prefixed("User:alice", Read, "é")]);
        assert!(may(&a, "alice", Read, Topic, "été"));
    }

    #[test]
    fn hosts_match_exactly_or_by_wildcard() {
        let mut from_host = allow("User:alice", Read, Topic, "t");
        from_host.host = HOST.into();
        let mut elsewhere = allow("User:alice", Write, Topic, "t");
        elsewhere.host = "10.9.9.9".into();
        let mut named = allow("User:alice", Delete, Topic, "t");
        named.host = "client.example.com".into();
        let a = authorizer(&[from_host, elsewhere, named]);
        assert!(may(&a, "alice", Read, Topic, "t"));
        assert!(!may(&a, "alice", Write, Topic, "t"));
        assert!(!may(&a, "alice", Delete, Topic, "t"), "host names never match addresses");
    }

    #[test]
    fn super_users_and_the_no_acl_default() {
        let config = AuthorizerConfig {
            super_users: vec!["User:admin".into()],
            allow_everyone_if_no_acl_found: false,
        };
        let a = Authorizer::new(config.clone(), &[deny("User:*", All, Topic, "t")]);
        assert!(may(&a, "admin", Write, Topic, "t"), "super users pass even a DENY");
        assert!(!may(&a, "alice", Read, Topic, "free"), "no ACL, default deny");
        let open = AuthorizerConfig { allow_everyone_if_no_acl_found: true, ..config };
        let a = Authorizer::new(open, &[allow("User:bob", Read, Topic, "t")]);
        assert!(may(&a, "alice", Read, Topic, "free"), "no ACL on `free`: allowed");
        assert!(!may(&a, "alice", Read, Topic, "t"), "`t` has ACLs, none for alice");
        assert_eq!(a.decide(&Principal::user("alice"), host(), Read, Topic, "free"), Rule::NoAcls);
    }

    #[test]
    fn other_principal_types_match_only_themselves_and_the_wildcard() {
        let a =
            authorizer(&[allow("Group:ops", Read, Topic, "t"), allow("User:*", Write, Topic, "t")]);
        let ops = Principal { kind: "Group".into(), name: "ops".into() };
        assert!(a.authorize(&ops, host(), Read, Topic, "t"));
        assert!(a.authorize(&ops, host(), Write, Topic, "t"), "User:* matches every principal");
        assert!(!may(&a, "ops", Read, Topic, "t"));
    }

    #[test]
    fn authorized_operations_are_the_allowed_supported_ones() {
        let a = authorizer(&[allow("User:alice", Read, Group, "g")]);
        let bits = a.authorized_operations(&Principal::user("alice"), host(), Group, "g");
        assert_eq!(bits, (1 << Read.code()) | (1 << Describe.code()));
        let cluster =
            a.authorized_operations(&Principal::user("alice"), host(), Cluster, CLUSTER_NAME);
        assert_eq!(cluster, 0);
    }

    #[test]
    fn authorize_by_resource_type_follows_kip_679() {
        let who = Principal::user("alice");
        let by_type = |acls: &[AclBinding]| {
            authorizer(acls).authorize_by_resource_type(&who, host(), Write, Topic)
        };
        assert!(!by_type(&[]));
        assert!(by_type(&[allow("User:alice", Write, Topic, "t")]));
        assert!(by_type(&[allow("User:*", All, Topic, "*")]));
        assert!(!by_type(&[
            allow("User:alice", Write, Topic, "t"),
            deny("User:alice", Write, Topic, "t")
        ]));
        let prefix_deny =
            acl("User:alice", Write, Permission::Deny, Topic, "t", PatternType::Prefixed);
        assert!(!by_type(&[allow("User:alice", Write, Topic, "tx"), prefix_deny.clone()]));
        assert!(by_type(&[allow("User:alice", Write, Topic, "ux"), prefix_deny]));
        assert!(!by_type(&[
            allow("User:alice", Write, Topic, "t"),
            deny("User:alice", Write, Topic, "*")
        ]));
        assert!(!by_type(&[allow("User:bob", Write, Topic, "t")]));
        assert!(!by_type(&[allow("User:alice", Read, Topic, "t")]), "READ is not WRITE");
        let txn = authorizer(&[allow("User:alice", Write, TransactionalId, "x")]);
        assert!(!txn.authorize_by_resource_type(&who, host(), Write, Topic));
        let open = Authorizer::new(
            AuthorizerConfig { allow_everyone_if_no_acl_found: true, ..Default::default() },
            &[],
        );
        assert!(open.authorize_by_resource_type(&who, host(), Write, Topic));
    }

    #[test]
    fn the_cache_is_bounded_and_answers_do_not_leak_between_keys() {
        let a = authorizer(&[allow("User:alice", Read, Topic, "t")]);
        for i in 0..limits::AUTHORIZATION_CACHE_ENTRIES_MAX + 10 {
            assert!(!a.authorize(&Principal::user("bob"), host(), Read, Topic, &format!("t{i}")));
        }
        assert!(a.cache.borrow().len() <= limits::AUTHORIZATION_CACHE_ENTRIES_MAX);
        assert!(may(&a, "alice", Read, Topic, "t"));
        assert!(!may(&a, "alice", Read, Group, "t"));
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(a.authorize(&Principal::user("alice"), other, Read, Topic, "t"));
        assert!(a.cache_hits() > 0);
    }
}
