//! Hearth's SQL functions beyond DataFusion's: `label`, `flamegraph`, `pprof` and
//! `stack_frames` over the profile tables, and the table functions that take a selector.

mod explained;
mod stack_frames;
mod tables;

pub use stack_frames::{StackFrames, stack_frames_udf};
pub use tables::{ProfileTableFunction, TableFunctionKind};
