//! Removable storage devices (USB sticks, SD cards) that a till can back up to.
//!
//! [`removable_devices`] lists the removable devices that are mounted right
//! now, whatever the platform:
//!
//! - **Linux** reads `/proc/self/mountinfo` and asks sysfs whether the disk
//!   under each mounted `/dev/*` filesystem is removable or attached by USB.
//!   Labels come from `/dev/disk/by-label`. A disk that holds the running
//!   system's root filesystem is never offered, even when it is a USB disk.
//! - **macOS** offers every volume mounted under `/Volumes` except the start-up
//!   disk.
//! - **Windows** offers the drive letters `D:` to `Z:` that Windows reports as
//!   removable.
//! - Elsewhere nothing is detected.

use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// A mounted removable device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    /// Where the device's filesystem is mounted, e.g. `/media/till/SHOP STICK`.
    pub mount_point: PathBuf,
    /// The filesystem label, when the platform reports one.
    pub label: Option<String>,
    /// The size of the device (the partition, not the whole disk) in bytes,
    /// when the platform reports it.
    pub size_bytes: Option<u64>,
    /// The device node, e.g. `/dev/sdb1`, `/dev/disk4s1` or `E:`; empty when
    /// the platform does not tell.
    pub device: String,
    /// The filesystem type, e.g. `vfat` or `exfat`; empty when the platform
    /// does not tell.
    pub filesystem: String,
    /// Whether the filesystem is mounted read-only, so no backup can be
    /// written to it. Only Linux detects this; elsewhere it is `false`.
    pub read_only: bool,
}

/// Listing removable devices failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// A system file or directory that lists mounts or devices cannot be read.
    #[error(
        "cannot read {path} to find removable devices: {source}; check that it exists and \
         that tillmesh may read it"
    )]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
}

/// The removable devices mounted right now, in mount order.
///
/// An empty list is not an error: it means no removable device is mounted (or
/// the platform is one where detection is not supported).
pub fn removable_devices() -> Result<Vec<Device>, DeviceError> {
    #[cfg(target_os = "linux")]
    {
        linux::detect_in(Path::new("/"))
    }
    #[cfg(target_os = "macos")]
    {
        macos::volumes(std::path::Path::new("/Volumes"))
    }
    #[cfg(windows)]
    {
        Ok(windows::removable_drives())
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
    {
        Ok(Vec::new())
    }
}

#[cfg(target_os = "linux")]
mod linux {
    //! Detection from procfs and sysfs, rooted at any directory so that tests
    //! can build a fake system tree.

    use std::collections::HashSet;
    use std::ffi::OsStr;
    use std::fs;
    use std::os::unix::ffi::OsStrExt;
    use std::path::{Path, PathBuf};

    use super::{Device, DeviceError};

    /// One line of `/proc/self/mountinfo`, escapes decoded.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(super) struct MountEntry {
        /// Where it is mounted.
        pub mount_point: PathBuf,
        /// The filesystem type, e.g. `vfat`.
        pub filesystem: String,
        /// The mount source, e.g. `/dev/sdb1` or `tmpfs`.
        pub source: String,
        /// Whether the mount or its superblock is read-only.
        pub read_only: bool,
    }

    /// The block device behind a mount, as sysfs names it.
    #[derive(Debug)]
    struct BlockDevice {
        /// The partition or disk mounted, e.g. `sdb1`.
        name: String,
        /// The whole disk it is on, e.g. `sdb`.
        disk: String,
    }

    /// Parses the text of a `mountinfo` file; malformed lines are skipped.
    pub(super) fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
        text.lines().filter_map(parse_mountinfo_line).collect()
    }

    /// Parses one line: `id parent major:minor root mount_point options
    /// [optional fields...] - fstype source super_options`.
    fn parse_mountinfo_line(line: &str) -> Option<MountEntry> {
        let mut fields = line.split(' ');
        let mount_point = fields.nth(4)?;
        let options = fields.next()?;
        // Optional fields (`shared:1`, `master:2`, ...) run up to the lone "-".
        fields.by_ref().find(|f| *f == "-")?;
        let filesystem = fields.next()?;
        let source = fields.next()?;
        let super_options = fields.next().unwrap_or("");
        Some(MountEntry {
            mount_point: path_from_bytes(&decode_octal_escapes(mount_point)),
            filesystem: lossy(&decode_octal_escapes(filesystem)),
            source: lossy(&decode_octal_escapes(source)),
            read_only: has_option(options, "ro") || has_option(super_options, "ro"),
        })
    }

    fn has_option(options: &str, wanted: &str) -> bool {
        options.split(',').any(|o| o == wanted)
    }

    fn path_from_bytes(bytes: &[u8]) -> PathBuf {
        PathBuf::from(OsStr::from_bytes(bytes))
    }

    fn lossy(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    /// Decodes the kernel's `\ooo` escapes (three octal digits, used for
    /// space, tab, newline and backslash). Anything else is kept as written.
    pub(super) fn decode_octal_escapes(field: &str) -> Vec<u8> {
        decode_escapes(field.as_bytes(), 4, |escape| {
            let digits = std::str::from_utf8(escape).ok()?;
            if digits.len() != 3 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                return None;
            }
            u8::from_str_radix(digits, 8).ok()
        })
    }

    /// Decodes udev's `\xHH` escapes, used in `/dev/disk/by-label` names for
    /// spaces, slashes and other unsafe characters.
    pub(super) fn decode_hex_escapes(name: &str) -> String {
        let bytes = decode_escapes(name.as_bytes(), 4, |escape| {
            let digits = escape.strip_prefix(b"x")?;
            let digits = std::str::from_utf8(digits).ok()?;
            if digits.len() != 2 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            u8::from_str_radix(digits, 16).ok()
        });
        lossy(&bytes)
    }

    /// Replaces each backslash and the `len - 1` bytes after it with the byte
    /// `decode` makes of those bytes; a backslash `decode` rejects stays.
    fn decode_escapes(input: &[u8], len: usize, decode: impl Fn(&[u8]) -> Option<u8>) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len());
        let mut rest = input;
        while let Some((&first, tail)) = rest.split_first() {
            let decoded = match (first, tail.get(..len - 1)) {
                (b'\\', Some(escape)) => decode(escape),
                _ => None,
            };
            match decoded {
                Some(byte) => {
                    out.push(byte);
                    rest = tail.get(len - 1..).unwrap_or_default();
                }
                None => {
                    out.push(first);
                    rest = tail;
                }
            }
        }
        out
    }

    /// The removable devices mounted in the system tree under `root`: `root`
    /// stands for `/` and holds `proc/self/mountinfo`, `sys/class/block`,
    /// `sys/block` and `dev/disk/by-label`.
    pub(super) fn detect_in(root: &Path) -> Result<Vec<Device>, DeviceError> {
        let mountinfo_path = root.join("proc/self/mountinfo");
        let text = fs::read_to_string(&mountinfo_path).map_err(|source| DeviceError::Read {
            path: mountinfo_path,
            source,
        })?;
        let mounts: Vec<(MountEntry, BlockDevice)> = parse_mountinfo(&text)
            .into_iter()
            .filter_map(|m| block_device(root, &m.source).map(|b| (m, b)))
            .collect();
        let system_disk = mounts
            .iter()
            .find(|(m, _)| m.mount_point == Path::new("/"))
            .map(|(_, b)| b.disk.clone());
        let labels = labels_by_device(root);
        let mut seen = HashSet::new();
        let mut devices = Vec::new();
        for (mount, block) in mounts {
            if system_disk.as_deref() == Some(block.disk.as_str())
                || !is_removable_disk(root, &block.disk)
                || !seen.insert(block.name.clone())
            {
                continue;
            }
            devices.push(Device {
                label: labels
                    .iter()
                    .find(|(device, _)| *device == block.name)
                    .map(|(_, label)| label.clone()),
                size_bytes: size_bytes(root, &block.name),
                mount_point: mount.mount_point,
                device: mount.source,
                filesystem: mount.filesystem,
                read_only: mount.read_only,
            });
        }
        Ok(devices)
    }

    /// Resolves a mount source like `/dev/sdb1` (or a symlink such as
    /// `/dev/mapper/x`) to its sysfs block device; `None` for sources that
    /// are not block devices.
    fn block_device(root: &Path, source: &str) -> Option<BlockDevice> {
        let relative = source.strip_prefix("/dev/")?;
        let node = root.join("dev").join(relative);
        let name = fs::canonicalize(&node)
            .ok()
            .and_then(|p| file_name(&p))
            .or_else(|| file_name(Path::new(source)))?;
        let class_dir = root.join("sys/class/block").join(&name);
        let resolved = fs::canonicalize(&class_dir).ok()?;
        let disk = if class_dir.join("partition").exists() {
            file_name(resolved.parent()?)?
        } else {
            name.clone()
        };
        Some(BlockDevice { name, disk })
    }

    fn file_name(path: &Path) -> Option<String> {
        path.file_name().and_then(OsStr::to_str).map(str::to_owned)
    }

    /// Whether sysfs marks the disk removable, or the disk hangs off a USB
    /// bus (USB hard disks and many card readers say they are fixed).
    fn is_removable_disk(root: &Path, disk: &str) -> bool {
        let disk_dir = root.join("sys/block").join(disk);
        let flagged = fs::read_to_string(disk_dir.join("removable")).is_ok_and(|s| s.trim() == "1");
        flagged || is_on_usb(root, &disk_dir)
    }

    fn is_on_usb(root: &Path, disk_dir: &Path) -> bool {
        let Ok(resolved) = fs::canonicalize(disk_dir) else {
            return false;
        };
        let canonical_root = fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
        let within = resolved.strip_prefix(&canonical_root).unwrap_or(&resolved);
        within.to_string_lossy().contains("/usb")
    }

    /// The partition's size: sysfs counts 512-byte sectors whatever the
    /// device's real sector size.
    fn size_bytes(root: &Path, name: &str) -> Option<u64> {
        let path = root.join("sys/class/block").join(name).join("size");
        let sectors: u64 = fs::read_to_string(path).ok()?.trim().parse().ok()?;
        sectors.checked_mul(512)
    }

    /// `(device name, label)` for every symlink in `dev/disk/by-label`. A
    /// system without labelled filesystems has no such directory; labels are
    /// a nicety, so one that cannot be read just leaves devices unlabelled.
    fn labels_by_device(root: &Path) -> Vec<(String, String)> {
        let Ok(entries) = fs::read_dir(root.join("dev/disk/by-label")) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let target = fs::read_link(entry.path()).ok()?;
                let device = file_name(&target)?;
                let label = decode_hex_escapes(entry.file_name().to_str()?);
                Some((device, label))
            })
            .collect()
    }
}

#[cfg(target_os = "macos")]
mod macos {
    //! Detection from `/Volumes`, where macOS mounts every disk but the
    //! start-up disk, which appears there only as a symlink to `/`.

    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    use std::path::Path;

    use super::{Device, DeviceError};

    /// Every real directory under `volumes` is a mounted volume.
    pub(super) fn volumes(volumes: &Path) -> Result<Vec<Device>, DeviceError> {
        let entries = fs::read_dir(volumes).map_err(|source| DeviceError::Read {
            path: volumes.to_path_buf(),
            source,
        })?;
        let mut devices: Vec<Device> = entries
            .filter_map(Result::ok)
            .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
            .map(|entry| {
                let mount_point = entry.path();
                Device {
                    label: entry.file_name().to_str().map(str::to_owned),
                    size_bytes: None,
                    device: device_node(&mount_point).unwrap_or_default(),
                    filesystem: String::new(),
                    read_only: false,
                    mount_point,
                }
            })
            .collect();
        devices.sort_by(|a, b| a.mount_point.cmp(&b.mount_point));
        Ok(devices)
    }

    /// The `/dev/diskNsM` block device whose number is the volume's device
    /// number; `None` for network shares and when `/dev` cannot be read.
    fn device_node(mount_point: &Path) -> Option<String> {
        let dev = fs::metadata(mount_point).ok()?.dev();
        fs::read_dir("/dev")
            .ok()?
            .filter_map(Result::ok)
            .filter(|entry| entry.file_name().to_string_lossy().starts_with("disk"))
            .find(|entry| {
                fs::metadata(entry.path())
                    .is_ok_and(|m| m.file_type().is_block_device() && m.rdev() == dev)
            })
            .map(|entry| entry.path().to_string_lossy().into_owned())
    }
}

#[cfg(windows)]
mod windows {
    //! Detection by drive letter, asking Windows for each drive's type with
    //! `fsutil fsinfo drivetype` (the workspace forbids unsafe code, so no FFI).

    use std::path::PathBuf;
    use std::process::Command;

    use super::Device;

    /// The drives `D:` to `Z:` that exist and are removable.
    pub(super) fn removable_drives() -> Vec<Device> {
        (b'D'..=b'Z')
            .map(char::from)
            .filter_map(|letter| {
                let root = format!("{letter}:\\");
                let removable = PathBuf::from(&root).exists() && is_removable(letter);
                removable.then(|| Device {
                    mount_point: PathBuf::from(&root),
                    label: None,
                    size_bytes: None,
                    device: format!("{letter}:"),
                    filesystem: String::new(),
                    read_only: false,
                })
            })
            .collect()
    }

    /// `fsutil` answers e.g. `E: - Removable Drive`.
    fn is_removable(letter: char) -> bool {
        Command::new("fsutil")
            .args(["fsinfo", "drivetype", &format!("{letter}:")])
            .output()
            .ok()
            .is_some_and(|o| String::from_utf8_lossy(&o.stdout).contains("Removable"))
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::fs;
    use std::os::unix::fs::symlink;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::linux::{
        MountEntry, decode_hex_escapes, decode_octal_escapes, detect_in, parse_mountinfo,
    };
    use super::*;

    /// A scratch directory removed when dropped.
    struct FakeRoot(PathBuf);

    impl FakeRoot {
        fn new(name: &str) -> Self {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "tillmesh-device-{name}-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("create fake root");
            Self(dir)
        }

        fn write(&self, relative: &str, contents: &str) {
            let path = self.0.join(relative);
            fs::create_dir_all(path.parent().expect("parent")).expect("create parent");
            fs::write(path, contents).expect("write fake file");
        }

        fn link(&self, relative: &str, target: &str) {
            let path = self.0.join(relative);
            fs::create_dir_all(path.parent().expect("parent")).expect("create parent");
            symlink(target, path).expect("create fake symlink");
        }

        /// A disk under `devices_dir` (relative to `sys/devices`) with its
        /// `removable` flag, plus its partitions and their sizes in sectors.
        fn disk(&self, devices_dir: &str, disk: &str, removable: bool, parts: &[(&str, u64)]) {
            let disk_dir = format!("devices/{devices_dir}/block/{disk}");
            let flag = if removable { "1\n" } else { "0\n" };
            self.write(&format!("sys/{disk_dir}/removable"), flag);
            self.link(&format!("sys/block/{disk}"), &format!("../{disk_dir}"));
            self.link(
                &format!("sys/class/block/{disk}"),
                &format!("../../{disk_dir}"),
            );
            for (index, (part, sectors)) in parts.iter().enumerate() {
                let part_dir = format!("{disk_dir}/{part}");
                self.write(
                    &format!("sys/{part_dir}/partition"),
                    &format!("{}\n", index + 1),
                );
                self.write(&format!("sys/{part_dir}/size"), &format!("{sectors}\n"));
                self.link(
                    &format!("sys/class/block/{part}"),
                    &format!("../../{part_dir}"),
                );
            }
        }
    }

    impl Drop for FakeRoot {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const MOUNTINFO: &str = "\
22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw,errors=remount-ro
23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:5 - proc proc rw
24 22 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:6 - sysfs sysfs rw
25 22 0:23 / /run rw,nosuid,nodev shared:7 - tmpfs tmpfs rw,size=1628068k,mode=755
26 22 259:1 / /boot/efi rw,relatime shared:8 - vfat /dev/nvme0n1p1 rw,fmask=0077
41 22 8:17 / /media/till/SHOP\\040STICK rw,nosuid,nodev,relatime shared:300 master:2 - vfat /dev/sdb1 rw,uid=1000,shortname=mixed
42 22 8:17 / /srv/again rw,relatime - vfat /dev/sdb1 rw
43 22 179:1 / /media/till/3734-3130 ro,nosuid,nodev,relatime shared:301 - exfat /dev/mmcblk0p1 ro,uid=1000
44 22 8:1 / /data rw,relatime shared:9 - ext4 /dev/sda1 rw
";

    const STICK_SECTORS: u64 = 60_062_500;
    const SD_SECTORS: u64 = 31_116_288;

    fn fake_system() -> FakeRoot {
        let root = FakeRoot::new("system");
        root.write("proc/self/mountinfo", MOUNTINFO);
        root.disk(
            "pci0000:00/0000:00:1d.0/0000:02:00.0/nvme/nvme0/nvme0n1",
            "nvme0n1",
            false,
            &[("nvme0n1p1", 1_048_576), ("nvme0n1p2", 998_166_528)],
        );
        // A USB stick that calls itself fixed: found through the USB bus.
        root.disk(
            "pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0/host6/target6:0:0/6:0:0:0",
            "sdb",
            false,
            &[("sdb1", STICK_SECTORS)],
        );
        // An SD card in a built-in reader that flags it removable.
        root.disk(
            "platform/fe320000.mmc/mmc_host/mmc0/mmc0:aaaa",
            "mmcblk0",
            true,
            &[("mmcblk0p1", SD_SECTORS)],
        );
        // A SATA data disk: neither removable nor on USB.
        root.disk(
            "pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0",
            "sda",
            false,
            &[("sda1", 1_953_523_712)],
        );
        root.link("dev/disk/by-label/SHOP\\x20STICK", "../../sdb1");
        root.link("dev/disk/by-label/system", "../../nvme0n1p2");
        root.link("dev/disk/by-label/DATA", "../../sda1");
        root
    }

    #[test]
    fn finds_exactly_the_removable_mounts() {
        let root = fake_system();
        let devices = detect_in(&root.0).expect("detect in fake root");
        assert_eq!(
            devices,
            vec![
                Device {
                    mount_point: PathBuf::from("/media/till/SHOP STICK"),
                    label: Some("SHOP STICK".into()),
                    size_bytes: Some(STICK_SECTORS * 512),
                    device: "/dev/sdb1".into(),
                    filesystem: "vfat".into(),
                    read_only: false,
                },
                Device {
                    mount_point: PathBuf::from("/media/till/3734-3130"),
                    label: None,
                    size_bytes: Some(SD_SECTORS * 512),
                    device: "/dev/mmcblk0p1".into(),
                    filesystem: "exfat".into(),
                    read_only: true,
                },
            ]
        );
    }

    #[test]
    fn never_offers_the_disk_holding_the_root_filesystem() {
        let root = FakeRoot::new("usb-boot");
        root.write(
            "proc/self/mountinfo",
            "22 1 8:2 / / rw - ext4 /dev/sdc2 rw\n\
             23 22 8:1 / /boot/efi rw - vfat /dev/sdc1 rw\n\
             41 22 8:17 / /media/stick rw - vfat /dev/sdb1 rw\n",
        );
        root.disk(
            "pci0000:00/usb1/1-1/host1",
            "sdc",
            true,
            &[("sdc1", 1), ("sdc2", 2)],
        );
        root.disk("pci0000:00/usb1/1-2/host2", "sdb", true, &[("sdb1", 8)]);
        let devices = detect_in(&root.0).expect("detect in fake root");
        let mounts: Vec<&Path> = devices.iter().map(|d| d.mount_point.as_path()).collect();
        assert_eq!(mounts, vec![Path::new("/media/stick")]);
    }

    #[test]
    fn missing_mountinfo_is_a_clear_error() {
        let root = FakeRoot::new("empty");
        let err = detect_in(&root.0).expect_err("no mountinfo");
        let message = err.to_string();
        assert!(message.contains("proc/self/mountinfo"), "{message}");
    }

    #[test]
    fn parses_optional_fields_and_read_only_flags() {
        let entries = parse_mountinfo(MOUNTINFO);
        assert_eq!(entries.len(), 9);
        assert_eq!(
            entries[5],
            MountEntry {
                mount_point: PathBuf::from("/media/till/SHOP STICK"),
                filesystem: "vfat".into(),
                source: "/dev/sdb1".into(),
                read_only: false,
            }
        );
        assert!(entries[7].read_only);
        // Read-only superblock under a read-write mount.
        let text = "50 22 8:33 / /mnt rw,relatime - ext4 /dev/sdc1 ro\n";
        assert!(parse_mountinfo(text)[0].read_only);
    }

    #[test]
    fn skips_malformed_mountinfo_lines() {
        let text = "garbage\n\n41 22 8:17 / /mnt rw no-separator vfat /dev/sdb1 rw\n";
        assert!(parse_mountinfo(text).is_empty());
    }

    #[test]
    fn decodes_mountinfo_escapes() {
        let decode = |s| String::from_utf8(decode_octal_escapes(s)).expect("utf-8");
        assert_eq!(
            decode(r"/media/till/SHOP\040STICK"),
            "/media/till/SHOP STICK"
        );
        assert_eq!(
            decode(r"/mnt/tab\011and\012newline"),
            "/mnt/tab\tand\nnewline"
        );
        assert_eq!(decode(r"/mnt/back\134slash"), "/mnt/back\\slash");
        assert_eq!(decode(r"/mnt/\040\040"), "/mnt/  ");
        // Not an escape: kept as written.
        assert_eq!(decode(r"/mnt/odd\9x"), r"/mnt/odd\9x");
        assert_eq!(decode(r"/mnt/short\04"), r"/mnt/short\04");
        assert_eq!(decode(r"/mnt/end\"), r"/mnt/end\");
        // Non-ASCII names are raw UTF-8 bytes in mountinfo.
        assert_eq!(decode("/media/Kasse Zürich"), "/media/Kasse Zürich");
    }

    #[test]
    fn decodes_label_escapes() {
        assert_eq!(decode_hex_escapes(r"SHOP\x20STICK"), "SHOP STICK");
        assert_eq!(decode_hex_escapes(r"A\x2fB"), "A/B");
        assert_eq!(decode_hex_escapes(r"plain"), "plain");
        assert_eq!(decode_hex_escapes(r"bad\xZZ"), r"bad\xZZ");
    }

    #[test]
    fn real_system_lists_mounted_devices() {
        let devices = removable_devices().expect("list removable devices on this machine");
        for device in devices {
            assert!(device.mount_point.exists(), "{device:?} is not mounted");
        }
    }
}

/// The free bytes (for an unprivileged writer) and the total bytes of the
/// filesystem holding `path`; `None` where that cannot be read.
pub fn space(path: &Path) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        let s = rustix::fs::statvfs(path).ok()?;
        Some((
            s.f_bavail.saturating_mul(s.f_frsize),
            s.f_blocks.saturating_mul(s.f_frsize),
        ))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}
