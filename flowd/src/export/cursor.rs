//! A consumer's saved place in the history: the cursor of the last record it delivered, in a
//! small file replaced in one rename, so a restart continues there.

use std::path::{Path, PathBuf};

pub struct CursorFile {
    path: PathBuf,
}

impl CursorFile {
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved cursor; none when there is no file yet, or an unreadable one (said in the log:
    /// delivery then starts from the newest record).
    pub fn load(&self) -> Option<u64> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        match text.trim().parse() {
            Ok(cursor) => Some(cursor),
            Err(_) => {
                tracing::warn!(path = %self.path.display(), "unreadable export cursor; exporting from now on");
                None
            }
        }
    }

    /// Replaces the saved cursor. Not synced: after a power loss an older cursor means records
    /// delivered twice, never records skipped.
    pub fn save(&self, cursor: u64) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut temporary = self.path.as_os_str().to_owned();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        std::fs::write(&temporary, format!("{cursor}\n"))?;
        std::fs::rename(&temporary, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_cursor_is_loaded_and_garbage_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let file = CursorFile::new(dir.path().join("sub/otlp.cursor"));
        assert_eq!(file.load(), None);
        file.save(41).unwrap();
        file.save(42).unwrap();
        assert_eq!(file.load(), Some(42));
        std::fs::write(file.path(), "forty-two").unwrap();
        assert_eq!(file.load(), None);
    }
}
