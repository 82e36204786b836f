//! Micro benches of the authorizer: what one check costs on the produce and fetch path with
//! the 100 ACLs of `perf/acl_overhead.sh` (a cached answer: one hash-table lookup), what the
//! first check of a (principal, host, operation, resource) costs (the decision over the
//! ACLs, then caching it), and rebuilding the authorizer after an ACL change.

use std::net::{IpAddr, Ipv4Addr};

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use strata::security::acl::{AclBinding, Operation, PatternType, Permission, ResourceType};
use strata::security::authorizer::{Authorizer, AuthorizerConfig};
use strata::security::Principal;

const HOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn acl(
    rt: ResourceType,
    name: &str,
    pattern: PatternType,
    principal: &str,
    op: Operation,
    permission: Permission,
) -> AclBinding {
    AclBinding {
        resource_type: rt,
        resource_name: name.into(),
        pattern_type: pattern,
        principal: principal.into(),
        host: "*".into(),
        operation: op,
        permission,
    }
}

/// The 100 ACLs `perf/acl_overhead.sh` creates.
fn acls() -> Vec<AclBinding> {
    use Operation::*;
    use PatternType::{Literal, Prefixed};
    use Permission::{Allow, Deny};
    use ResourceType::{Cluster, Group, Topic};
    let anonymous = "User:ANONYMOUS";
    let mut out = vec![
        acl(Topic, "strata-bench", Prefixed, anonymous, All, Allow),
        acl(Cluster, "kafka-cluster", Literal, anonymous, Create, Allow),
        acl(Cluster, "kafka-cluster", Literal, anonymous, Describe, Allow),
        acl(Cluster, "kafka-cluster", Literal, anonymous, IdempotentWrite, Allow),
        acl(Topic, "strata-bench", Prefixed, "User:mallory", All, Deny),
        acl(Topic, "strata", Prefixed, "User:guest", Write, Deny),
        acl(Topic, "*", Literal, "User:*", Describe, Allow),
        acl(Group, "*", Literal, "User:*", Read, Allow),
    ];
    for i in 0..46 {
        let user = format!("User:user{i}");
        out.push(acl(Topic, "filler", Literal, &user, Read, Allow));
        out.push(acl(Topic, "filler", Literal, &user, Write, Allow));
    }
    assert_eq!(out.len(), 100);
    out
}

fn authorizer() -> Authorizer {
    let config =
        AuthorizerConfig { super_users: Vec::new(), allow_everyone_if_no_acl_found: false };
    Authorizer::new(config, &acls())
}

fn benches(c: &mut Criterion) {
    let who = Principal::anonymous();
    let shard = authorizer();
    let (write, topic) = (Operation::Write, ResourceType::Topic);
    assert!(shard.authorize(&who, HOST, write, topic, "strata-bench"));
    c.bench_function("authorize: cached answer (produce/fetch path), 100 ACLs", |b| {
        b.iter(|| shard.authorize(black_box(&who), HOST, write, topic, black_box("strata-bench")))
    });
    // A name per iteration, not in the cache: the decision over the ACLs, then caching it.
    // More names than the cache holds (it is cleared when full, also counted here), so a
    // name comes round again only after the cache was cleared.
    let count = 10 * strata::config::limits::AUTHORIZATION_CACHE_ENTRIES_MAX;
    let names: Vec<String> = (0..count).map(|i| format!("strata-bench-{i}")).collect();
    let mut next = 0;
    c.bench_function("authorize: first check of a resource (decide + cache), 100 ACLs", |b| {
        b.iter(|| {
            next = (next + 1) % names.len();
            shard.authorize(&who, HOST, write, topic, black_box(&names[next]))
        })
    });
    c.bench_function("Authorizer::new: rebuild after an ACL change, 100 ACLs", |b| {
        b.iter(authorizer)
    });
}

criterion_group!(authorizer_benches, benches);
criterion_main!(authorizer_benches);
