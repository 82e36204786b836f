//! Listeners as the security layer sees them: which [`SecurityProtocol`] a connection came in
//! on decides its transport (TLS or not) and whether it must authenticate with SASL first.
//!
//! The types are defined in `config::listener` (config is a base module that imports
//! nothing, and it needs them to validate the configuration); they are re-exported here so
//! that security code and handlers name them as `security::SecurityProtocol`.

pub use crate::config::listener::{ClientAuth, Listener, SecurityProtocol};
