//! InitProducerId: producer ids for idempotent producers.
//!
//! A producer without a transactional id gets a fresh id and epoch 0 every time it asks, as
//! from Kafka (the id and epoch a v3+ request carries matter only to transactional
//! producers). Sequence checking happens in the partition logs (`storage`). Transactional ids
//! need the transaction coordinator, which Strata does not have yet: they get
//! COORDINATOR_NOT_AVAILABLE, as FindCoordinator answers for transactions.

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
        tracing::warn!(transactional_id = %id.0, "InitProducerId: transactions are not supported");
        return refused(E::CoordinatorNotAvailable);
    }
    match shard.allocate_producer_id().await {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => {
            tracing::error!("InitProducerId: {e}");
            refused(E::CoordinatorNotAvailable)
        }
    }
}
