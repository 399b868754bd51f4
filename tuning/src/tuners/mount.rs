//! The file system the data directory is on: online discard.

use super::Host;
use crate::Finding;
use std::path::Path;

const WHY: &str = "with online discard every file the node deletes (a compacted WAL segment, \
an old snapshot) waits for the disk's TRIM inside a journal commit, and the WAL's writes and \
fdatasyncs wait behind that commit: on the development VM, 20-second half-load runs had a \
batch p99 of 7.2-11.8 ms with it and 3.7-6.2 ms without (docs/benchmarks.md). Trim \
periodically instead";

/// Whether the data directory's file system is mounted with online `discard`. `None` when the
/// node's data directory is not known.
pub(super) fn discard(host: &Host<'_>) -> Option<Finding> {
    let data_dir = host.data_dir?;
    let item = data_dir.display().to_string();
    let Some((mount_point, options)) = host
        .root
        .read("proc/self/mounts")
        .ok()
        .and_then(|mounts| mount_of(&mounts, data_dir))
    else {
        return Some(Finding::compare(
            "mount_discard",
            item,
            None,
            "nodiscard",
            WHY,
            |_| true,
        ));
    };
    let current = if trims_online(&options) {
        "discard"
    } else {
        "nodiscard"
    };
    let finding = Finding::compare(
        "mount_discard",
        format!("{item} (on {mount_point})"),
        Some(current.to_string()),
        "nodiscard",
        WHY,
        |v| v == "nodiscard",
    )
    .lasting(format!(
        "/etc/fstab: nodiscard instead of discard in the options of {mount_point}, and \
         `systemctl enable --now fstrim.timer`; at once: `mount -o remount,nodiscard \
         {mount_point}`"
    ));
    Some(finding)
}

/// The mount point of the file system holding `path` when it is mounted with online
/// `discard`, read from `root`'s `proc/self/mounts`; `None` otherwise, or when unreadable.
pub(crate) fn online_discard_mount(root: &crate::Root, path: &Path) -> Option<String> {
    let mounts = root.read("proc/self/mounts").ok()?;
    let (point, options) = mount_of(&mounts, path)?;
    trims_online(&options).then_some(point)
}

/// Whether a mount's options (`rw,relatime,discard`) include online `discard`.
fn trims_online(options: &str) -> bool {
    options.split(',').any(|o| o == "discard")
}

/// The mount point and options of the mount that holds `path` (the longest mount point that
/// is `path` or one of its ancestors), from the text of `/proc/self/mounts`.
fn mount_of(mounts: &str, path: &Path) -> Option<(String, String)> {
    mounts
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (point, options) = (unescape(fields.get(1)?), fields.get(3)?.to_string());
            path.starts_with(&point).then_some((point, options))
        })
        .max_by_key(|(point, _)| Path::new(point).components().count())
}

/// A `/proc/self/mounts` field with its octal escapes (`\040` for a space) undone.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(digits) => {
                let value = digits.iter().fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
                out.push(value as u8);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "/dev/vda / ext4 rw,relatime,discard 0 0\n\
                          proc /proc proc rw,nosuid 0 0\n\
                          /dev/nvme0n1 /var/lib/aurigraph ext4 rw,noatime 0 0\n\
                          /dev/sdb /srv/data\\040disk xfs rw,discard 0 0\n";

    #[test]
    fn the_longest_mount_point_holding_the_path_is_its_mount() {
        let of = |p: &str| mount_of(MOUNTS, Path::new(p));
        assert_eq!(
            of("/var/lib/aurigraph/node-1"),
            Some(("/var/lib/aurigraph".into(), "rw,noatime".into()))
        );
        assert_eq!(
            of("/var/lib/aurigraph-other"),
            Some(("/".into(), "rw,relatime,discard".into())),
            "a mount point is matched by whole components"
        );
        assert_eq!(
            of("/srv/data disk/x"),
            Some(("/srv/data disk".into(), "rw,discard".into()))
        );
        assert_eq!(mount_of("", Path::new("/x")), None);
    }

    #[test]
    fn a_data_directory_on_a_discard_mount_is_named() {
        let dir = std::env::temp_dir().join(format!("aurigraph-mount-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("proc/self")).unwrap();
        std::fs::write(dir.join("proc/self/mounts"), MOUNTS).unwrap();
        let root = crate::Root::new(&dir);
        let on = |p: &str| online_discard_mount(&root, Path::new(p));
        assert_eq!(on("/home/node/data"), Some("/".into()));
        assert_eq!(on("/var/lib/aurigraph"), None);
        assert_eq!(on("/srv/data disk/node"), Some("/srv/data disk".into()));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(on("/home/node/data"), None, "unreadable: nothing said");
    }
}
