//! flowd's kernel programs: tc classifiers that aggregate every packet into a per-flow map.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics))]
#![cfg_attr(target_arch = "bpf", allow(internal_features))]

#[cfg(target_arch = "bpf")]
mod capture;
#[cfg(target_arch = "bpf")]
mod drops;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod owners;
#[cfg(target_arch = "bpf")]
mod zeroed;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: the verifier rejects programs that can reach this; no code path should.
    unsafe { core::hint::unreachable_unchecked() }
}

/// On the host this crate only exists so the agent's build script reruns when it changes.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
