//! The file tree the tuners read and write: `/` on a real host, a temporary tree in tests.

use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct Root {
    dir: PathBuf,
}

impl Root {
    pub fn new(dir: &Path) -> Root {
        Root {
            dir: dir.to_path_buf(),
        }
    }

    /// The real path of `relative` (`proc/sys/vm/swappiness`) under this root.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.join(relative.trim_start_matches('/'))
    }

    /// A file's contents, trimmed.
    pub fn read(&self, relative: &str) -> std::io::Result<String> {
        std::fs::read_to_string(self.path(relative)).map(|s| s.trim().to_string())
    }

    pub fn exists(&self, relative: &str) -> bool {
        self.path(relative).exists()
    }

    /// Names in a directory, sorted (empty when it cannot be read).
    pub fn list(&self, relative: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path(relative))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        names.sort_by_key(|name| natural(name));
        names
    }

    /// Writes a value as the kernel's files take it (one write, no truncation of a longer
    /// file: sysfs and procfs files are written whole; a regular file in a fake tree is
    /// replaced).
    pub fn write(&self, relative: &str, value: &str) -> std::io::Result<()> {
        let path = self.path(relative);
        std::fs::write(&path, format!("{value}\n"))
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    }
}

/// Sorts `cpu10` after `cpu9`.
fn natural(name: &str) -> (String, usize) {
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (stem, number) = name.split_at(name.len() - digits);
    (stem.to_string(), number.parse().unwrap_or(0))
}
