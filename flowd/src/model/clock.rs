//! The kernel programs' clock, and its conversion to wall-clock time.

use std::time::{Duration, SystemTime};

/// Converts the kernel programs' CLOCK_MONOTONIC nanoseconds (`bpf_ktime_get_ns` and its
/// coarse twin) to wall-clock time, as of now: a flow seen before a suspend is placed as if the
/// suspend had not happened.
#[derive(Clone, Copy, Debug)]
pub struct KernelClock {
    wall_at_zero: SystemTime,
}

impl KernelClock {
    pub fn now() -> Self {
        Self {
            wall_at_zero: SystemTime::now() - Duration::from_nanos(kernel_clock_ns()),
        }
    }

    pub fn to_wall(self, kernel_ns: u64) -> SystemTime {
        self.wall_at_zero + Duration::from_nanos(kernel_ns)
    }
}

/// Now on the kernel programs' clock (CLOCK_MONOTONIC).
pub fn kernel_clock_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|ts| Duration::from(ts).as_nanos() as u64)
        .unwrap_or_default()
}
