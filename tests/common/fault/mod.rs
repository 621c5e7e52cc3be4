//! The fault test's own modules (compiled into `tests/fault.rs` only): the history it records and the
//! checker over it.

pub mod checker;
pub mod history;
