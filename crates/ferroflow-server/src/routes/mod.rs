//! The handlers, one module per resource; [`crate::router`] puts them together.

pub(crate) mod artifacts;
pub(crate) mod events;
pub(crate) mod meta;
pub(crate) mod models;
pub(crate) mod tokens;
pub(crate) mod workflows;
