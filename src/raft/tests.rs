//! Three-node quorum tests.
