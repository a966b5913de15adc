//! Protocol builders: each wraps a [`TypeBuilder`](crate::TypeBuilder) and installs the slots
//! of one protocol from plain Rust functions. One file per protocol; adding a slot is one
//! method in one of these files.

pub mod buffer;
