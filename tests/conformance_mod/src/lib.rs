//! `pontoneer_conformance`: the exporter conformance kit from Python (`check_buffer(obj)`),
//! and `BadExporter`, deliberately broken exporters the kit must catch (see `module.rs`).

pub mod module;

pontoneer::module!(pontoneer_conformance, module::init);
