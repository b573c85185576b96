//! Block.
