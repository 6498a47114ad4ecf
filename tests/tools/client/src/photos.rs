//! The photos a traffic generator sends (the demo's and the soak's `--images`,
//! `--max-images`, `--max-image-bytes`): every JPEG/PNG of a folder, read once, within named
//! limits.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::flags::ConfigError;

/// The flags that choose the photos.
#[derive(Debug, Clone, clap::Args)]
pub struct Photos {
    /// Folder of JPEG/PNG photos to send, in turn.
    #[arg(long, env = "GRAYGUARD_IMAGES", default_value = ".data/images")]
    pub images: PathBuf,
    /// Most photos read from --images.
    #[arg(long, default_value_t = 64)]
    pub max_images: usize,
    /// Largest photo accepted, bytes.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub max_image_bytes: u64,
}

impl Photos {
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.max_images == 0 {
            return Err(ConfigError::Flag("max-images", "must be positive".into()));
        }
        Ok(())
    }

    /// Reads them (see [`load`]).
    pub fn load(&self) -> Result<Vec<Image>, ImageError> {
        load(&self.images, self.max_images, self.max_image_bytes)
    }
}

/// One photo, ready to be sent as a request body.
#[derive(Debug, Clone)]
pub struct Image {
    pub name: String,
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
}

#[derive(Debug)]
pub enum ImageError {
    Read(PathBuf, std::io::Error),
    TooLarge { path: PathBuf, bytes: u64, max: u64 },
    None(PathBuf),
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageError::Read(p, e) => write!(f, "--images: cannot read {}: {e}", p.display()),
            ImageError::TooLarge { path, bytes, max } => write!(
                f,
                "--images: {} has {bytes} bytes, more than --max-image-bytes {max}",
                path.display()
            ),
            ImageError::None(p) => write!(
                f,
                "--images: no .jpg/.jpeg/.png in {} (run `make setup`)",
                p.display()
            ),
        }
    }
}

impl std::error::Error for ImageError {}

fn content_type(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "jpg" | "jpeg" => Some("image/jpeg"),
        "png" => Some("image/png"),
        _ => None,
    }
}

/// Reads up to `max_images` photos (by name order) of `dir`; a photo larger than
/// `max_bytes` is an error rather than a silent skip.
pub fn load(dir: &Path, max_images: usize, max_bytes: u64) -> Result<Vec<Image>, ImageError> {
    let entries = std::fs::read_dir(dir).map_err(|e| ImageError::Read(dir.to_path_buf(), e))?;
    let mut paths: Vec<(PathBuf, &'static str)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter_map(|p| content_type(&p).map(|c| (p, c)))
        .collect();
    paths.sort();
    paths.truncate(max_images);
    let mut images = Vec::with_capacity(paths.len());
    for (path, content_type) in paths {
        let len = std::fs::metadata(&path)
            .map_err(|e| ImageError::Read(path.clone(), e))?
            .len();
        if len > max_bytes {
            return Err(ImageError::TooLarge {
                path,
                bytes: len,
                max: max_bytes,
            });
        }
        let bytes = std::fs::read(&path).map_err(|e| ImageError::Read(path.clone(), e))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        images.push(Image {
            name,
            content_type,
            bytes,
        });
    }
    if images.is_empty() {
        return Err(ImageError::None(dir.to_path_buf()));
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_images_in_name_order_within_limits() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.PNG"), b"png").unwrap();
        std::fs::write(dir.path().join("a.jpg"), b"jpeg").unwrap();
        std::fs::write(dir.path().join("c.jpeg"), b"jpeg2").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        let imgs = load(dir.path(), 2, 100).unwrap();
        let names: Vec<_> = imgs
            .iter()
            .map(|i| (i.name.as_str(), i.content_type))
            .collect();
        assert_eq!(names, vec![("a.jpg", "image/jpeg"), ("b.PNG", "image/png")]);
        assert_eq!(imgs[0].bytes, b"jpeg");
    }

    #[test]
    fn refuses_oversized_missing_and_empty() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.jpg"), vec![0u8; 50]).unwrap();
        let e = load(dir.path(), 10, 10).unwrap_err().to_string();
        assert!(e.contains("--max-image-bytes 10"), "{e}");
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            load(empty.path(), 10, 10),
            Err(ImageError::None(_))
        ));
        assert!(matches!(
            load(&empty.path().join("missing"), 10, 10),
            Err(ImageError::Read(..))
        ));
    }
}
