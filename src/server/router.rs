//! Scatter partition work to the shards that own it and gather the outcomes in request order.

use std::rc::Rc;

use futures::channel::oneshot;
use futures::future::join_all;

use super::mesh::ShardMsg;
use super::shard::{LocalFuture, Shard};

/// Items bucketed by owning shard, each remembering its position in the request.
pub struct Buckets<I> {
    buckets: Vec<Vec<(usize, I)>>,
    len: usize,
}

impl<I> Buckets<I> {
    /// Buckets `(shard, item)` pairs; shards must be below `count`.
    pub fn new(count: usize, items: impl IntoIterator<Item = (usize, I)>) -> Self {
        let mut buckets: Vec<Vec<(usize, I)>> = (0..count).map(|_| Vec::new()).collect();
        let mut len = 0;
        for (shard, item) in items {
            if let Some(bucket) = buckets.get_mut(shard) {
                bucket.push((len, item));
            }
            len += 1;
        }
        Buckets { buckets, len }
    }
}

/// Runs each bucket on its shard: `local` for this shard's items, a message built by `message`
/// for the others. Outcomes come back in the order the items were given; an item whose shard
/// could not be reached gets `unreachable()`.
pub async fn scatter<I, O>(
    shard: &Rc<Shard>,
    buckets: Buckets<I>,
    local: impl Fn(Rc<Shard>, I) -> LocalFuture<O>,
    message: impl Fn(Vec<I>, oneshot::Sender<Vec<O>>) -> ShardMsg,
    unreachable: impl Fn() -> O,
) -> Vec<O> {
    let mut outcomes: Vec<Option<O>> = (0..buckets.len).map(|_| None).collect();
    let mut local_work = Vec::new();
    let mut remote_work = Vec::new();
    for (owner, bucket) in buckets.buckets.into_iter().enumerate() {
        if bucket.is_empty() {
            continue;
        }
        let (positions, items): (Vec<usize>, Vec<I>) = bucket.into_iter().unzip();
        if owner == shard.id {
            let futures = items.into_iter().map(|i| local(shard.clone(), i));
            local_work.push(async move { (positions, join_all(futures).await) });
            continue;
        }
        let (reply, answer) = oneshot::channel();
        let sent = shard.send(owner, message(items, reply)).await;
        remote_work.push(async move {
            let results = if sent { answer.await.ok() } else { None };
            (positions, results)
        });
    }
    let (locals, remotes) = futures::join!(join_all(local_work), join_all(remote_work));
    for (positions, results) in locals {
        for (position, outcome) in positions.into_iter().zip(results) {
            outcomes[position] = Some(outcome);
        }
    }
    for (positions, results) in remotes {
        let results = results.into_iter().flatten();
        for (position, outcome) in positions.into_iter().zip(results) {
            outcomes[position] = Some(outcome);
        }
    }
    outcomes.into_iter().map(|o| o.unwrap_or_else(&unreachable)).collect()
}

/// One query per requested partition, run on the shard that owns it: `requested` holds, per
/// topic and per partition in request order, the owning shard and the query, or the outcome
/// already known (the routing error). The outcomes come back in the same shape, so a handler
/// zips them with its request to build the response.
pub async fn per_partition<Q, O>(
    shard: &Rc<Shard>,
    requested: Vec<Vec<Result<(usize, Q), O>>>,
    local: impl Fn(Rc<Shard>, Q) -> LocalFuture<O>,
    message: impl Fn(Vec<Q>, oneshot::Sender<Vec<O>>) -> ShardMsg,
    unreachable: impl Fn() -> O,
) -> Vec<Vec<O>> {
    let mut items = Vec::new();
    let known: Vec<Vec<Option<O>>> = requested
        .into_iter()
        .map(|topic| {
            let known = topic.into_iter().map(|partition| match partition {
                Ok(item) => {
                    items.push(item);
                    None
                }
                Err(outcome) => Some(outcome),
            });
            known.collect()
        })
        .collect();
    let routed = scatter(shard, Buckets::new(shard.count, items), local, message, &unreachable);
    let mut routed = routed.await.into_iter();
    known
        .into_iter()
        .map(|topic| {
            let outcomes = topic.into_iter().map(|k| k.or_else(|| routed.next()));
            outcomes.map(|o| o.unwrap_or_else(&unreachable)).collect()
        })
        .collect()
}
