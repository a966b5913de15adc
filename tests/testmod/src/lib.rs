//! `pontoneer_testmod`: test-only exporters and fault injection (see `types.rs`), built as
//! an extension module for the pytest suite.

pub mod slots;
pub mod types;

pontoneer::module!(pontoneer_testmod, types::init);
