//! cargo-fuzz target: `vod`. The body lives in `harness.rs`, shared with the regression test
//! `tests/fuzz_regressions.rs`.
#![no_main]

#[path = "../harness.rs"]
#[allow(dead_code)] // each target uses one harness function
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::vod(data));
