//! Cargo cannot see that this crate's build needs the `bpf-linker` binary; watching it makes a
//! reinstalled linker rebuild the programs.
fn main() {
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
