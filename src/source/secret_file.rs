//! Reading a small secret file (a key, a client secret, a Vault credential) the way
//! `FileKeySource` does: opened without blocking, so a FIFO or a device cannot hold a blocking
//! thread for ever; anything but a regular file refused; read up to a cap into a buffer that
//! never moves and is zeroed on drop.

use std::io;
#[cfg(any(feature = "vault", feature = "oauth2"))]
use std::io::Read;
use std::path::Path;

#[cfg(any(feature = "vault", feature = "oauth2"))]
use zeroize::Zeroizing;

/// Opens `path` for reading without blocking on a FIFO or a device, whose type is then
/// refused; a regular file reads as usual.
#[cfg(unix)]
pub(crate) fn open_nonblocking(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

#[cfg(not(unix))]
pub(crate) fn open_nonblocking(path: &Path) -> io::Result<std::fs::File> {
    std::fs::File::open(path)
}

/// `path`'s bytes, at most `cap` of them (more is an error), if it is a regular file.
#[cfg(any(feature = "vault", feature = "oauth2"))]
pub(crate) fn read_capped(path: &Path, cap: usize) -> io::Result<Zeroizing<Vec<u8>>> {
    let file = open_nonblocking(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "is a directory, not a file"
        } else {
            "is not a regular file (a FIFO, socket or device)"
        };
        return Err(io::Error::new(io::ErrorKind::InvalidInput, what));
    }
    let mut buf = Zeroizing::new(Vec::with_capacity(cap + 1));
    file.take(cap as u64 + 1).read_to_end(&mut buf)?;
    if buf.len() > cap {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("is larger than {} KiB", cap / 1024),
        ));
    }
    Ok(buf)
}

#[cfg(all(test, unix, any(feature = "vault", feature = "oauth2")))]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "s3cret\n").unwrap();
        assert_eq!(&read_capped(&file, 64).unwrap()[..], b"s3cret\n");
        assert!(read_capped(&file, 4)
            .unwrap_err()
            .to_string()
            .contains("larger"));
        let err = read_capped(dir.path(), 64).unwrap_err();
        assert!(err.to_string().contains("directory"), "{err}");
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // Returns at once (no writer would ever come), refused by type.
        let err = read_capped(&fifo, 64).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
}
