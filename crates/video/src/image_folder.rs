//! Videos stored as folders of image frames (SkyTimelapse, Taichi-HD): listing, the
//! reference's numeric frame order, and PNG/JPEG decoding to RGB.

use std::path::{Path, PathBuf};

use crate::error::VideoError;
use crate::frame::Frame;

/// Whether `path` has an image extension the loaders accept (`.jpg`, `.jpeg`, `.png`, any case).
pub fn is_image(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
}

/// The reference's frame sort key, `int(name.split('.')[0].split('_')[-1])`.
pub fn frame_number(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let stem = name.split('.').next()?;
    stem.rsplit('_').next()?.parse().ok()
}

/// The image files directly inside `dir`, in numeric frame order. A file whose name has no
/// number is an error naming it (the reference would silently reuse another video's frames).
pub fn list_frames(dir: &Path) -> Result<Vec<PathBuf>, VideoError> {
    let rd = std::fs::read_dir(dir).map_err(|e| VideoError::io(dir, e))?;
    let mut frames = Vec::new();
    for entry in rd {
        let p = entry.map_err(|e| VideoError::io(dir, e))?.path();
        if p.is_file() && is_image(&p) {
            let n = frame_number(&p).ok_or_else(|| VideoError::Invalid {
                path: p.clone(),
                reason: "frame file name has no number after its last `_` (expected e.g. `000123.jpg` or `clip_000123.png`)".into(),
            })?;
            frames.push((n, p));
        }
    }
    frames.sort();
    Ok(frames.into_iter().map(|(_, p)| p).collect())
}

/// Decodes a PNG or JPEG file to RGB (grey repeated to 3 channels, alpha dropped).
pub fn read_image(path: &Path) -> Result<Frame, VideoError> {
    let bytes = std::fs::read(path).map_err(|e| VideoError::io(path, e))?;
    let bad = |reason: String| VideoError::Image { path: path.to_owned(), reason };
    if bytes.starts_with(b"\x89PNG") {
        let mut dec = png::Decoder::new(std::io::Cursor::new(&bytes));
        dec.set_transformations(png::Transformations::normalize_to_color8());
        let mut reader = dec.read_info().map_err(|e| bad(e.to_string()))?;
        let size = reader.output_buffer_size().ok_or_else(|| bad("image too large".into()))?;
        let mut buf = vec![0; size];
        let info = reader.next_frame(&mut buf).map_err(|e| bad(e.to_string()))?;
        let (w, h) = (info.width as usize, info.height as usize);
        let channels = info.color_type.samples();
        let src = &buf[..w * h * channels];
        let data: Vec<u8> = match channels {
            1 => src.iter().flat_map(|&g| [g, g, g]).collect(),
            2 => src.chunks_exact(2).flat_map(|p| [p[0], p[0], p[0]]).collect(),
            3 => src.to_vec(),
            4 => src.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect(),
            n => return Err(bad(format!("unsupported PNG with {n} channels"))),
        };
        Ok(Frame::new(w, h, data))
    } else if bytes.starts_with(&[0xFF, 0xD8]) {
        use zune_jpeg::zune_core::{bytestream::ZCursor, colorspace::ColorSpace, options::DecoderOptions};
        let opts = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::RGB);
        let mut dec = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(&bytes), opts);
        let data = dec.decode().map_err(|e| bad(e.to_string()))?;
        let (w, h) = dec.dimensions().ok_or_else(|| bad("no image size".into()))?;
        if data.len() != w * h * 3 {
            return Err(bad(format!("decoded {} bytes for {w}x{h} RGB", data.len())));
        }
        Ok(Frame::new(w, h, data))
    } else {
        Err(bad("neither PNG nor JPEG (by its first bytes)".into()))
    }
}

/// Writes an RGB frame as PNG (tests and exports).
pub fn write_png(path: &Path, frame: &Frame) -> Result<(), VideoError> {
    let file = std::fs::File::create(path).map_err(|e| VideoError::io(path, e))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), frame.width as u32, frame.height as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let bad = |e: png::EncodingError| VideoError::Image { path: path.to_owned(), reason: e.to_string() };
    let mut w = enc.write_header().map_err(bad)?;
    w.write_image_data(&frame.data).map_err(bad)?;
    w.finish().map_err(bad)
}
