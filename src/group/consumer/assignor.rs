//! Server-side assignors of KIP-848 consumer groups: `uniform` (sticky, balanced) and
//! `range` (per topic, members in id order). Pure: members' subscriptions and the previous
//! target in, the new target out. Partitions of topics nobody subscribes to stay unassigned;
//! a partition goes only to a member subscribed to its topic.
//!
//! Written by hand: Kafka's assignors are Java inside the broker, and no crate offers them.
//! `uniform` follows Kafka's contract (every member within one partition of the others when
//! subscriptions are the same, as few moves as possible from the previous target) with a
//! simpler algorithm: keep what still fits, hand out the rest to the least loaded eligible
//! member, then move one partition at a time from the most to a least loaded member until no
//! move narrows the gap.

use std::collections::{BTreeMap, BTreeSet};

use super::{Assignment, Tp};

/// The assignors offered, in Kafka's names.
pub const ASSIGNORS: &[&str] = &["uniform", "range"];

/// What an assignor sees of one member: the topic partitions it may be given (by topic id,
/// with the topic's partition count), and its previous target.
#[derive(Debug, Clone, Default)]
pub struct MemberSpec {
    /// Subscribed topics that exist: topic id → partition count.
    pub topics: BTreeMap<uuid::Uuid, i32>,
    /// The member's previous target assignment.
    pub previous: Assignment,
}

/// Runs assignor `name` (`uniform` when unknown) over `members` (by member id).
pub fn assign(name: &str, members: &BTreeMap<String, MemberSpec>) -> BTreeMap<String, Assignment> {
    match name {
        "range" => range(members),
        _ => uniform(members),
    }
}

/// Every partition some member subscribes to, with the members that may own it.
fn eligible(members: &BTreeMap<String, MemberSpec>) -> BTreeMap<Tp, Vec<&str>> {
    let mut out: BTreeMap<Tp, Vec<&str>> = BTreeMap::new();
    for (id, spec) in members {
        for (topic, count) in &spec.topics {
            for p in 0..(*count).max(0) {
                out.entry((*topic, p)).or_default().push(id.as_str());
            }
        }
    }
    out
}

fn uniform(members: &BTreeMap<String, MemberSpec>) -> BTreeMap<String, Assignment> {
    let eligible = eligible(members);
    let mut owner: BTreeMap<Tp, &str> = BTreeMap::new();
    let mut owned: BTreeMap<&str, BTreeSet<Tp>> =
        members.keys().map(|id| (id.as_str(), BTreeSet::new())).collect();
    // 1. Sticky: keep previous targets that are still valid.
    for (id, spec) in members {
        for tp in spec.previous.iter_tps() {
            let ok = eligible.get(&tp).is_some_and(|m| m.contains(&id.as_str()));
            if ok && !owner.contains_key(&tp) {
                owner.insert(tp, id.as_str());
                owned.entry(id.as_str()).or_default().insert(tp);
            }
        }
    }
    // 2. Unowned partitions go to the least loaded eligible member.
    for (tp, candidates) in &eligible {
        if owner.contains_key(tp) {
            continue;
        }
        let least = candidates.iter().min_by_key(|m| (owned.get(**m).map_or(0, |s| s.len()), **m));
        if let Some(m) = least {
            owner.insert(*tp, *m);
            owned.entry(*m).or_default().insert(*tp);
        }
    }
    // 3. Balance: move from a most loaded member to a least loaded eligible one while that
    // narrows the gap by at least two. Each move lowers the sum of squared loads, so this ends.
    while let Some((from, to, tp)) = next_move(&eligible, &owned) {
        if let Some(s) = owned.get_mut(from) {
            s.remove(&tp);
        }
        owned.entry(to).or_default().insert(tp);
    }
    owned.into_iter().map(|(m, tps)| (m.to_owned(), Assignment::from_tps(tps))).collect()
}

/// One partition to move from a most loaded member to a member at least two below it, the
/// most loaded first (ties by id), its highest partition first.
fn next_move<'a>(
    eligible: &BTreeMap<Tp, Vec<&'a str>>,
    owned: &BTreeMap<&'a str, BTreeSet<Tp>>,
) -> Option<(&'a str, &'a str, Tp)> {
    let load = |m: &str| owned.get(m).map_or(0, BTreeSet::len);
    let mut by_load: Vec<(&'a str, usize)> = owned.iter().map(|(m, s)| (*m, s.len())).collect();
    by_load.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    for (from, from_load) in by_load {
        for tp in owned.get(from)?.iter().rev() {
            let Some(candidates) = eligible.get(tp) else { continue };
            let to = candidates.iter().filter(|m| **m != from).map(|m| (load(m), *m)).min();
            if let Some((to_load, to)) = to {
                if to_load + 1 < from_load {
                    return Some((from, to, *tp));
                }
            }
        }
    }
    None
}

fn range(members: &BTreeMap<String, MemberSpec>) -> BTreeMap<String, Assignment> {
    let mut topics: BTreeMap<uuid::Uuid, (i32, Vec<&str>)> = BTreeMap::new();
    for (id, spec) in members {
        for (topic, count) in &spec.topics {
            topics.entry(*topic).or_insert((*count, Vec::new())).1.push(id.as_str());
        }
    }
    let mut out: BTreeMap<String, BTreeSet<Tp>> =
        members.keys().map(|id| (id.clone(), BTreeSet::new())).collect();
    for (topic, (count, subscribers)) in topics {
        let n = i32::try_from(subscribers.len()).unwrap_or(i32::MAX).max(1);
        let (per, extra) = (count.max(0) / n, count.max(0) % n);
        let mut next = 0;
        for (i, m) in subscribers.iter().enumerate() {
            let i = i32::try_from(i).unwrap_or(i32::MAX);
            let take = per + i32::from(i < extra);
            let set = out.entry((*m).to_owned()).or_default();
            set.extend((next..next + take).map(|p| (topic, p)));
            next += take;
        }
    }
    out.into_iter().map(|(m, tps)| (m, Assignment::from_tps(tps))).collect()
}
