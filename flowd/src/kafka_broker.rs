//! A real Kafka-protocol broker for the Kafka exporter's tests and benchmark: crates.io's tansu
//! (installed by setup), on a loopback port, killed and waited for on drop. Panics name what
//! went wrong (feature `testing`).

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
};

pub struct KafkaBroker(Child);

impl KafkaBroker {
    /// A broker on 127.0.0.1:`port`, durable on sqlite in `dir` (a restart there keeps its
    /// topics and messages), or in memory without one; returns once it says it is ready.
    pub fn start(port: u16, dir: Option<&Path>) -> Self {
        Self::start_advertising(port, port, dir)
    }

    /// As `start`, telling clients to connect to `advertised` (a proxy in front of it).
    pub fn start_advertising(port: u16, advertised: u16, dir: Option<&Path>) -> Self {
        let listen = format!("tcp://127.0.0.1:{port}");
        let advertised = format!("tcp://127.0.0.1:{advertised}");
        let mut command = Command::new("tansu");
        command
            .args(["broker", "--listener-url", &listen])
            .args(["--advertised-listener-url", &advertised])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        match dir {
            // Relative to the working directory, as tansu reads sqlite URLs.
            Some(dir) => command
                .args(["--storage-engine", "sqlite://tansu.db"])
                .current_dir(dir),
            None => command.args(["--storage-engine", "memory://tansu/"]),
        };
        let mut child = command
            .spawn()
            .expect("start tansu (cargo xtask setup installs it)");
        let stdout = child.stdout.take().expect("tansu's stdout");
        // Killed and waited for on drop, whatever happens next.
        let broker = Self(child);
        let ready = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.starts_with("ready"));
        assert!(ready, "tansu ended before it was ready");
        broker
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
