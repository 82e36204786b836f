//! InitProducerId: producer ids for idempotent producers.
//!
//! A producer without a transactional id gets a fresh id and epoch 0 every time it asks, as
//! from Kafka (the id and epoch a v3+ request carries matter only to transactional
//! producers). Sequence checking happens in the partition logs (`storage`). A transactional
//! id goes to its transaction coordinator (`server::txn`), which bumps the epoch, aborting
//! any transaction the previous producer left open (fencing it).

use std::rc::Rc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::protocol::ResponseError as E;
use crate::server::shard::Shard;

/// Answers one InitProducerId request.
pub async fn init_producer_id(
    shard: &Rc<Shard>,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let refused = |e: E| {
        InitProducerIdResponse::default()
            .with_error_code(e.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if req.transactional_id.as_ref().is_some_and(|id| id.0.is_empty()) {
        return refused(E::InvalidRequest);
    }
    if let Some(id) = &req.transactional_id {
        let (producer_id, epoch) = (req.producer_id.0, req.producer_epoch);
        let timeout = req.transaction_timeout_ms;
        return match super::txn::init_producer_id(shard, id, timeout, producer_id, epoch).await {
            Ok((id, epoch)) => InitProducerIdResponse::default()
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(epoch),
            Err(e) => refused(e),
        };
    }
    match shard.allocate_producer_id().await {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => {
            crate::log_limited!(ERROR, "InitProducerId: {e}");
            refused(E::CoordinatorNotAvailable)
        }
    }
}
