//! End-to-end tests of the `hearth` binary: real processes on loopback, real client requests,
//! real profiles. One test binary (see `support` for the process harness).

mod blocks;
mod expected;
mod fixtures;
mod support;
