//! Strata: a Kafka-compatible streaming broker, thread-per-core on glommio and io_uring.
//!
//! | module         | job                                                                 |
//! |----------------|---------------------------------------------------------------------|
//! | `config`       | typed broker configuration and named limits, validated once         |
//! | `metrics`      | per-shard counters and histograms, Prometheus text exposition       |
//! | `record_batch` | RecordBatch v2 header, CRC-32C validation, in-place offset rewrite  |
//! | `protocol`     | Kafka framing, request decode / response encode, API version table  |
//! | `runtime`      | pinned executors, the shard mesh, partition-to-shard placement      |
//! | `storage`      | one partition's segment log on one shard (O_DIRECT, index, recovery) |
//! | `group`        | consumer groups: pure state machine, offset store, coordinator      |
//! | `txn`          | transactions: pure state machine, `__transaction_state` records     |
//! | `share`        | share groups (KIP-932): pure share-partition and membership state   |
//! |                | machines, `__share_group_state` records                             |
//! | `controller`   | cluster metadata: shard 0 alone, or a Raft quorum of brokers        |
//! | `security`     | principals, TLS, SASL, the authorizer and quotas (pure where it can) |
//! | `server`       | listeners, connections, dispatch, one handler per API, admin HTTP   |
//! | `bench`        | the load generator behind `strata bench` (an external client)       |
//! | `client`       | a small blocking admin client for the `strata` commands             |
//!
//! Dependencies point one way, from the network edge down to storage. `config` and `metrics`
//! are base modules: every module may import them, and they import nothing (`metrics` only
//! `config`).
//!
//! | module         | may import (besides `config` and `metrics`)     |
//! |----------------|-------------------------------------------------|
//! | `record_batch` | nothing                                         |
//! | `protocol`     | `record_batch`                                  |
//! | `runtime`      | nothing (knows nothing about Kafka)             |
//! | `storage`      | `record_batch`, `runtime`                       |
//! | `group`        | `storage`, `runtime`, `protocol`, `record_batch` |
//! | `txn`          | `protocol`                                      |
//! | `share`        | `protocol`                                      |
//! | `controller`   | `storage`, `runtime`, `protocol`, `security`    |
//! | `security`     | `protocol`                                      |
//! | `server`       | everything above                                |
//! | `bench`        | `protocol`, `record_batch`, `runtime`, `security` |
//! | `client`       | `protocol`, `record_batch`, `security`          |
//!
//! `tests/tidy.rs` checks this table.

pub mod bench;
pub mod client;
pub mod config;
pub mod controller;
pub mod group;
pub mod metrics;
pub mod protocol;
pub mod record_batch;
pub mod runtime;
pub mod security;
pub mod server;
pub mod share;
pub mod storage;
pub mod txn;
