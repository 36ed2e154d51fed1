//! Encoding RGB frames to video files (H.264 mp4 for the synthetic dataset and the sampler;
//! MPEG-4 part 2 avi as UCF101 ships) and to animated GIF.

use std::path::{Path, PathBuf};

use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg::{Dictionary, Packet, Rational};
use ffmpeg_next as ffmpeg;

use crate::decode::init;
use crate::error::VideoError;
use crate::frame::Frame;

/// Which encoder writes the file. The container follows the file extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// libx264, yuv420p (use an `.mp4` path).
    H264,
    /// FFmpeg's `mpeg4` encoder with the XVID tag (use an `.avi` path), as UCF101's files.
    Mpeg4Xvid,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EncodeOptions {
    pub codec: Codec,
    pub fps: u32,
    /// Frames between keyframes (the seek granularity of the file).
    pub gop: u32,
    /// x264 constant rate factor (lower is better; 18 is visually lossless). Ignored by MPEG-4,
    /// which uses a fixed quantiser.
    pub crf: u32,
}

impl EncodeOptions {
    pub fn h264(fps: u32) -> Self {
        Self { codec: Codec::H264, fps, gop: 2 * fps.max(1), crf: 18 }
    }
    pub fn mpeg4(fps: u32) -> Self {
        Self { codec: Codec::Mpeg4Xvid, fps, gop: fps.max(1), crf: 0 }
    }
}

/// Writes frames of one size to a video file. Deterministic: one encoder thread, no
/// timestamps from the clock.
pub struct VideoWriter {
    path: PathBuf,
    octx: ffmpeg::format::context::Output,
    encoder: ffmpeg::encoder::Video,
    scaler: scaling::Context,
    enc_tb: Rational,
    stream_tb: Rational,
    width: usize,
    height: usize,
    next_pts: i64,
}

fn err(path: &Path, e: impl std::fmt::Display) -> VideoError {
    VideoError::Encode { path: path.to_owned(), reason: e.to_string() }
}

impl VideoWriter {
    pub fn create(path: &Path, width: usize, height: usize, opts: EncodeOptions) -> Result<Self, VideoError> {
        init();
        if width == 0 || height == 0 || width % 2 == 1 || height % 2 == 1 {
            return Err(err(path, format!("frame size {width}x{height} must be even and non-zero for yuv420p")));
        }
        if opts.fps == 0 {
            return Err(err(path, "fps must be at least 1"));
        }
        let mut octx = ffmpeg::format::output(path).map_err(|e| err(path, e))?;
        let global_header = octx.format().flags().contains(ffmpeg::format::Flags::GLOBAL_HEADER);
        let (codec, name) = match opts.codec {
            Codec::H264 => (ffmpeg::encoder::find_by_name("libx264"), "libx264"),
            Codec::Mpeg4Xvid => (ffmpeg::encoder::find(ffmpeg::codec::Id::MPEG4), "mpeg4"),
        };
        let codec =
            codec.ok_or_else(|| err(path, format!("FFmpeg has no `{name}` encoder; install Debian's ffmpeg libraries (libavcodec59)")))?;
        let mut ost = octx.add_stream(codec).map_err(|e| err(path, e))?;
        let stream_index = ost.index();
        let mut enc = ffmpeg::codec::context::Context::new_with_codec(codec).encoder().video().map_err(|e| err(path, e))?;
        let enc_tb = Rational::new(1, opts.fps as i32);
        enc.set_width(width as u32);
        enc.set_height(height as u32);
        enc.set_format(Pixel::YUV420P);
        enc.set_time_base(enc_tb);
        enc.set_frame_rate(Some(Rational::new(opts.fps as i32, 1)));
        enc.set_gop(opts.gop.max(1));
        enc.set_threading(ffmpeg::threading::Config { kind: ffmpeg::threading::Type::Frame, count: 1, ..Default::default() });
        if global_header {
            enc.set_flags(ffmpeg::codec::Flags::GLOBAL_HEADER);
        }
        let mut dict = Dictionary::new();
        match opts.codec {
            Codec::H264 => {
                dict.set("preset", "veryfast");
                dict.set("crf", &opts.crf.to_string());
                dict.set("threads", "1");
                // x264's lookahead (and mbtree, which needs it) made the same frames encode to
                // different bytes from run to run on Debian 12's libx264 164 (seen as a flaky
                // "same seed, same bytes" test, one run in two); without it every encode of the
                // same frames is the same file.
                dict.set("x264-params", "mbtree=0:rc-lookahead=0");
            }
            Codec::Mpeg4Xvid => {
                dict.set("qscale", "4");
                // SAFETY: plain field write on the encoder context before it is opened; the
                // tag only labels the stream (XVID) and does not change the bitstream.
                unsafe {
                    (*enc.as_mut_ptr()).codec_tag = u32::from_le_bytes(*b"XVID");
                    (*enc.as_mut_ptr()).flags |= ffmpeg::ffi::AV_CODEC_FLAG_QSCALE as i32;
                    (*enc.as_mut_ptr()).global_quality = 4 * ffmpeg::ffi::FF_QP2LAMBDA;
                }
            }
        }
        let encoder = enc.open_with(dict).map_err(|e| err(path, e))?;
        ost.set_parameters(&encoder);
        ost.set_time_base(enc_tb);
        if opts.codec == Codec::Mpeg4Xvid {
            // SAFETY: as above, on the stream's codec parameters before the header is written.
            unsafe {
                (*ost.parameters().as_mut_ptr()).codec_tag = u32::from_le_bytes(*b"XVID");
            }
        }
        octx.write_header().map_err(|e| err(path, e))?;
        let stream_tb = octx.stream(stream_index).map(|s| s.time_base()).ok_or_else(|| err(path, "output stream vanished"))?;
        let scaler = scaling::Context::get(
            Pixel::RGB24,
            width as u32,
            height as u32,
            Pixel::YUV420P,
            width as u32,
            height as u32,
            scaling::Flags::BILINEAR,
        )
        .map_err(|e| err(path, e))?;
        Ok(Self { path: path.to_owned(), octx, encoder, scaler, enc_tb, stream_tb, width, height, next_pts: 0 })
    }

    fn drain(&mut self) -> Result<(), VideoError> {
        let mut pkt = Packet::empty();
        while self.encoder.receive_packet(&mut pkt).is_ok() {
            // Every frame lasts one tick; without a duration the last frame would have none and
            // mp4's edit list would cut it (and the average frame rate would be off).
            if pkt.duration() <= 0 {
                pkt.set_duration(1);
            }
            pkt.set_stream(0);
            pkt.rescale_ts(self.enc_tb, self.stream_tb);
            pkt.write_interleaved(&mut self.octx).map_err(|e| err(&self.path, e))?;
        }
        Ok(())
    }

    pub fn write(&mut self, frame: &Frame) -> Result<(), VideoError> {
        if frame.width != self.width || frame.height != self.height {
            return Err(err(
                &self.path,
                format!("frame {}x{} differs from the video's {}x{}", frame.width, frame.height, self.width, self.height),
            ));
        }
        let mut rgb = ffmpeg::frame::Video::new(Pixel::RGB24, self.width as u32, self.height as u32);
        let stride = rgb.stride(0);
        let row = self.width * 3;
        let plane = rgb.data_mut(0);
        for y in 0..self.height {
            plane[y * stride..y * stride + row].copy_from_slice(&frame.data[y * row..(y + 1) * row]);
        }
        let mut yuv = ffmpeg::frame::Video::empty();
        self.scaler.run(&rgb, &mut yuv).map_err(|e| err(&self.path, e))?;
        yuv.set_pts(Some(self.next_pts));
        self.next_pts += 1;
        self.encoder.send_frame(&yuv).map_err(|e| err(&self.path, e))?;
        self.drain()
    }

    /// Flushes the encoder and writes the container trailer.
    pub fn finish(mut self) -> Result<(), VideoError> {
        self.encoder.send_eof().map_err(|e| err(&self.path, e))?;
        self.drain()?;
        self.octx.write_trailer().map_err(|e| err(&self.path, e))
    }
}

/// Encodes `frames` (all the same size) to `path`.
pub fn write_video(path: &Path, frames: &[Frame], opts: EncodeOptions) -> Result<(), VideoError> {
    let first = frames.first().ok_or_else(|| err(path, "no frames to write"))?;
    let mut w = VideoWriter::create(path, first.width, first.height, opts)?;
    for f in frames {
        w.write(f)?;
    }
    w.finish()
}

/// Writes an endlessly looping animated GIF (NeuQuant palette per frame).
pub fn write_gif(path: &Path, frames: &[Frame], fps: u32) -> Result<(), VideoError> {
    let first = frames.first().ok_or_else(|| err(path, "no frames to write"))?;
    let (w, h) = (first.width, first.height);
    if w > u16::MAX as usize || h > u16::MAX as usize {
        return Err(err(path, format!("{w}x{h} is too large for a GIF")));
    }
    let file = std::fs::File::create(path).map_err(|e| VideoError::io(path, e))?;
    let mut enc = gif::Encoder::new(std::io::BufWriter::new(file), w as u16, h as u16, &[]).map_err(|e| err(path, e))?;
    enc.set_repeat(gif::Repeat::Infinite).map_err(|e| err(path, e))?;
    let delay = (100.0 / fps.max(1) as f64).round() as u16;
    for f in frames {
        if f.width != w || f.height != h {
            return Err(err(path, "frames differ in size"));
        }
        let mut gf = gif::Frame::from_rgb_speed(w as u16, h as u16, &f.data, 10);
        gf.delay = delay;
        enc.write_frame(&gf).map_err(|e| err(path, e))?;
    }
    Ok(())
}

/// Writes one RGB frame as a baseline JPEG (FFmpeg's MJPEG encoder, full-range 4:2:0).
/// `quality` is the MJPEG quantiser scale, 2 (best) to 31.
pub fn write_jpeg(path: &Path, frame: &Frame, quality: u32) -> Result<(), VideoError> {
    init();
    let (w, h) = (frame.width as u32, frame.height as u32);
    if w == 0 || h == 0 || w % 2 == 1 || h % 2 == 1 {
        return Err(err(path, format!("frame size {w}x{h} must be even and non-zero")));
    }
    let codec = ffmpeg::encoder::find(ffmpeg::codec::Id::MJPEG).ok_or_else(|| err(path, "FFmpeg has no MJPEG encoder"))?;
    let mut enc = ffmpeg::codec::context::Context::new_with_codec(codec).encoder().video().map_err(|e| err(path, e))?;
    enc.set_width(w);
    enc.set_height(h);
    enc.set_format(Pixel::YUVJ420P);
    enc.set_time_base(Rational::new(1, 25));
    enc.set_qmin(quality.clamp(2, 31) as i32);
    enc.set_qmax(quality.clamp(2, 31) as i32);
    let mut encoder = enc.open().map_err(|e| err(path, e))?;
    let mut rgb = ffmpeg::frame::Video::new(Pixel::RGB24, w, h);
    let stride = rgb.stride(0);
    let row = frame.width * 3;
    for y in 0..frame.height {
        rgb.data_mut(0)[y * stride..y * stride + row].copy_from_slice(&frame.data[y * row..(y + 1) * row]);
    }
    let mut sws = scaling::Context::get(Pixel::RGB24, w, h, Pixel::YUVJ420P, w, h, scaling::Flags::BILINEAR).map_err(|e| err(path, e))?;
    let mut yuv = ffmpeg::frame::Video::empty();
    sws.run(&rgb, &mut yuv).map_err(|e| err(path, e))?;
    yuv.set_pts(Some(0));
    encoder.send_frame(&yuv).map_err(|e| err(path, e))?;
    encoder.send_eof().map_err(|e| err(path, e))?;
    let mut pkt = Packet::empty();
    encoder.receive_packet(&mut pkt).map_err(|e| err(path, e))?;
    let data = pkt.data().ok_or_else(|| err(path, "the MJPEG encoder produced no data"))?;
    std::fs::write(path, data).map_err(|e| VideoError::io(path, e))
}
