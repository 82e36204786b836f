//! `strata bench`: a Kafka-protocol load tester with HDR latency reports.
//!
//! It is an external client of the broker (it talks only Kafka over TCP), so it can load any
//! Kafka-compatible broker.
//!
//! | file          | job                                                                  |
//! |---------------|----------------------------------------------------------------------|
//! | `cli`         | flags, workload-file merging, entry point [`cli::run`]               |
//! | `workload`    | vocabulary (codecs, acks, sizes, rates) and the YAML/TOML file       |
//! | `settings`    | resolved, validated settings of one run                              |
//! | `run`         | setup, pinned executors, progress, drain                             |
//! | `producer`    | generator → per-partition batches → pipelined Produce per broker     |
//! | `consumer`    | Fetch loop, record counting and end-to-end timestamps                |
//! | `client`      | Metadata bootstrap, CreateTopics, ListOffsets                        |
//! | `conn`        | framing, correlation ids, reader/writer halves of a connection       |
//! | `batch`       | RecordBatch v2 encoder and reader                                    |
//! | `partitioner` | murmur2 and the sticky partitioner (Java client's behaviour)         |
//! | `stats`       | clock, HDR recording with coordinated-omission correction            |
//! | `report`      | progress line, final table, `.hgrm`, `summary.json`, `report.html`   |

pub mod batch;
pub mod cli;
pub mod client;
pub mod conn;
pub mod consumer;
pub mod partitioner;
pub mod producer;
pub mod report;
pub mod rt;
pub mod run;
pub mod settings;
pub mod stats;
pub mod varint;
pub mod workload;

pub use cli::{run as run_cli, BenchArgs};
