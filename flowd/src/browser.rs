//! Headless Chromium (Debian's package, installed by setup) driven over the DevTools protocol
//! on a pipe (`--remote-debugging-pipe`: commands on fd 3, answers on fd 4, NUL-separated
//! JSON), so the page is checked by a real browser with no driver library in between. For the
//! UI's tests and its render benchmark (feature `testing`); panics name what went wrong.

use std::{
    fs::File,
    io::{BufRead as _, BufReader, Write as _},
    os::fd::{FromRawFd as _, RawFd},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use nix::libc;
use serde_json::{json, Value};

/// Resolves, once flowd's page has drawn its first graph, to the edges it drew; rejects with
/// the page's error if it shows one.
pub const PAGE_READY: &str = "new Promise((resolve, reject) => { const check = () => { \
    const state = document.body && document.body.dataset.state; \
    if (state === 'ready') resolve(flowd.drawnEdges); \
    else if (state === 'error') reject(new Error(document.getElementById('error').textContent)); \
    else setTimeout(check, 5); }; check(); })";

/// Clicks "expand all" and resolves, once that draw is painted, to the edges it drew.
pub const EXPAND_ALL: &str = "new Promise((resolve) => { \
    document.getElementById('expand-all').click(); \
    requestAnimationFrame(() => requestAnimationFrame(() => resolve(flowd.drawnEdges))); })";

/// Longest wait for one answer from the browser.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Browser {
    child: Child,
    commands: File,
    messages: mpsc::Receiver<Value>,
    next_id: u64,
    session: String,
    /// Console errors, uncaught exceptions and refused loads (CSP violations among them).
    pub problems: Vec<String>,
    profile: PathBuf,
}

fn pipe() -> (RawFd, RawFd) {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    (fds[0], fds[1])
}

impl Browser {
    /// Starts Chromium with a page of `width` x `height` pixels, attached to one blank tab.
    pub fn launch(width: u32, height: u32) -> Self {
        static PROFILES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let profile = std::env::temp_dir().join(format!(
            "flowd-chromium-{}-{}",
            std::process::id(),
            PROFILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&profile).unwrap();
        let (commands_read, commands_write) = pipe();
        let (answers_read, answers_write) = pipe();
        let mut command = Command::new("chromium");
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--remote-debugging-pipe",
                &format!("--window-size={width},{height}"),
                &format!("--user-data-dir={}", profile.display()),
                "about:blank",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Chromium reads commands on fd 3 and answers on fd 4. The pipes may themselves be 3 or
        // 4 (when the process has few files open): dup2 onto the same number keeps close-on-exec
        // and one could overwrite the other, so both are first copied above 4.
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec.
        unsafe {
            command.pre_exec(move || {
                let commands = libc::fcntl(commands_read, libc::F_DUPFD, 10);
                let answers = libc::fcntl(answers_write, libc::F_DUPFD, 10);
                if commands < 0
                    || answers < 0
                    || libc::dup2(commands, 3) < 0
                    || libc::dup2(answers, 4) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .expect("chromium (cargo xtask setup installs Debian's chromium)");
        // SAFETY: each descriptor is owned once, here; the child's copies are its own.
        let (commands, answers) = unsafe {
            libc::close(commands_read);
            libc::close(answers_write);
            (
                File::from_raw_fd(commands_write),
                File::from_raw_fd(answers_read),
            )
        };
        let (tx, messages) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(answers);
            let mut buffer = Vec::new();
            while reader.read_until(0, &mut buffer).is_ok_and(|n| n > 0) {
                buffer.pop_if(|b| *b == 0);
                if let Ok(message) = serde_json::from_slice::<Value>(&buffer) {
                    if tx.send(message).is_err() {
                        break;
                    }
                }
                buffer.clear();
            }
        });
        let mut browser = Self {
            child,
            commands,
            messages,
            next_id: 0,
            session: String::new(),
            problems: Vec::new(),
            profile,
        };
        let target = browser.call_browser("Target.createTarget", json!({ "url": "about:blank" }));
        let attached = browser.call_browser(
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            browser.call(domain, json!({}));
        }
        browser
    }

    fn send(&mut self, method: &str, params: Value, session: bool) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if session {
            message["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.commands.write_all(&bytes).expect("write to chromium");
        loop {
            let message = self
                .messages
                .recv_timeout(ANSWER_TIMEOUT)
                .unwrap_or_else(|_| panic!("chromium did not answer {method}"));
            if message["id"] == json!(id) {
                if let Some(error) = message.get("error") {
                    panic!("{method}: {error}");
                }
                return message["result"].clone();
            }
            self.note(&message);
        }
    }

    fn call_browser(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, false)
    }

    /// A command to the page's session.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, true)
    }

    fn note(&mut self, event: &Value) {
        let params = &event["params"];
        match event["method"].as_str() {
            Some("Runtime.exceptionThrown") => self.problems.push(format!(
                "exception: {}",
                params["exceptionDetails"]["exception"]["description"]
            )),
            Some("Runtime.consoleAPICalled") if params["type"] == "error" => self
                .problems
                .push(format!("console.error: {}", params["args"])),
            Some("Log.entryAdded") if params["entry"]["level"] == "error" => self
                .problems
                .push(format!("log: {}", params["entry"]["text"])),
            _ => {}
        }
    }

    pub fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url }));
    }

    /// Evaluates `expression` in the page; a promise is awaited. Returns its value as JSON.
    pub fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "awaitPromise": true, "returnByValue": true }),
        );
        if let Some(details) = result.get("exceptionDetails") {
            panic!("{expression}: {details}");
        }
        result["result"]["value"].clone()
    }

    /// A real mouse click at page coordinates, as a user's.
    pub fn click(&mut self, x: f64, y: f64) {
        self.call(
            "Input.dispatchMouseEvent",
            json!({ "type": "mouseMoved", "x": x, "y": y }),
        );
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 }),
            );
        }
    }

    /// Scrolls the element `selector` finds into view and clicks its middle.
    pub fn click_element(&mut self, selector: &str) {
        let rect = self.eval(&format!(
            "(() => {{ const e = document.querySelector({}); e.scrollIntoView({{ block: 'center' }}); \
             const r = e.getBoundingClientRect(); \
             return {{ x: r.left + r.width / 2, y: r.top + r.height / 2 }}; }})()",
            serde_json::to_string(selector).unwrap()
        ));
        self.click(rect["x"].as_f64().unwrap(), rect["y"].as_f64().unwrap());
    }

    /// Drains the events that came in since the last command.
    pub fn collect_events(&mut self) {
        while let Ok(message) = self.messages.try_recv() {
            self.note(&message);
        }
    }

    pub fn screenshot(&mut self, path: &Path) {
        use base64::Engine as _;
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
