//! Policy and metadata files (evaluator and enrichment loaders).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flowd::fuzzing::policy(data));
