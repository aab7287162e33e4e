//! /proc/kallsyms and tracepoint format files.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flowd::fuzzing::kernel_text(data));
