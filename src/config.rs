//! Typed broker configuration.
