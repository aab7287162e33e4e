//! Ring-buffer events through the sweeper, flow stage and wire form.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flowd::fuzzing::ring_event(data));
