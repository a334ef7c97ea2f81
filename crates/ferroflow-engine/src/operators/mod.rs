//! The built-in operators. Each module adds its builder methods to
//! [`DataStream`](crate::DataStream) or [`KeyedStream`](crate::KeyedStream).
pub mod aggregate;
pub mod basic;
pub mod join;
pub mod sort;
pub mod window;
