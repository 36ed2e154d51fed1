//! In-process decoding with FFmpeg (libavformat/libavcodec/libswscale via `ffmpeg-next`).
//!
//! Frame indices come from presentation timestamps, never from counting frames after a seek:
//! a seek lands on the keyframe at or before the target, not on the target (spec
//! pipeline-stack §1.5).

use std::path::{Path, PathBuf};

use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg::{Packet, Rational};
use ffmpeg_next as ffmpeg;

use crate::error::VideoError;
use crate::frame::Frame;

/// The largest frame decoded, in pixels: 8K UHD (7680×4320). A corrupt stream can make
/// FFmpeg produce frames of up to 2²⁸ pixels from a few kilobytes (concealing what it cannot
/// decode), and each frame becomes a packed RGB buffer here, so larger frames are refused
/// before that buffer is made. No dataset the toolkit reads comes near it.
pub const MAX_FRAME_PIXELS: u64 = 7680 * 4320;

fn check_frame_size(path: &Path, w: u32, h: u32) -> Result<(), VideoError> {
    if w as u64 * h as u64 > MAX_FRAME_PIXELS {
        return Err(VideoError::Decode {
            path: path.to_owned(),
            reason: format!("a frame of {w}x{h} is larger than 8K UHD (7680x4320): a corrupt stream?"),
        });
    }
    Ok(())
}

/// Container-level facts about a video.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoInfo {
    pub width: usize,
    pub height: usize,
    /// Average frame rate of the stream (0 when the container does not say).
    pub fps: f64,
    /// Frame count the container declares, or duration × fps when it declares none; a full
    /// decode may find a different number.
    pub frame_count: u64,
    pub codec: String,
}

/// The largest single allocation FFmpeg may make in this process. Its default (2 GiB) lets a
/// corrupt 8 KB avi (a RIFF list claiming 2 GiB) make the demuxer allocate and zero 2 GiB;
/// the largest legitimate buffer is an RGB picture of [`MAX_FRAME_PIXELS`] (100 MB), so a
/// quarter GiB refuses only what a file merely claims. FFmpeg then returns ENOMEM, an error.
pub const FFMPEG_MAX_ALLOC: usize = 256 << 20;

/// Initialises FFmpeg once, bounds its allocations and silences its log (errors are reported
/// through `VideoError`).
pub fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Registration cannot fail on FFmpeg >= 4; a failure would surface on open.
        let _ = ffmpeg::init();
        // SAFETY: sets one global of libavutil, before this process uses FFmpeg for anything else.
        unsafe { ffmpeg::ffi::av_max_alloc(FFMPEG_MAX_ALLOC) };
        ffmpeg::log::set_level(ffmpeg::log::Level::Fatal);
    });
}

/// An open video file.
pub struct VideoReader {
    path: PathBuf,
    ictx: ffmpeg::format::context::Input,
    decoder: ffmpeg::decoder::Video,
    stream: usize,
    tb: Rational,
    fps: Rational,
    start: i64,
    info: VideoInfo,
    scaler: Option<(Pixel, u32, u32, scaling::Context)>,
    /// Whether anything was read since opening (or the last seek); a read from frame 0 of a
    /// fresh reader needs no seek.
    fresh: bool,
    /// Frames the decoder produced so far (the cost of the reads, for tests and benchmarks).
    decoded: usize,
}

fn err_open(path: &Path, e: impl std::fmt::Display) -> VideoError {
    VideoError::Open { path: path.to_owned(), reason: e.to_string() }
}

fn err_decode(path: &Path, e: impl std::fmt::Display) -> VideoError {
    VideoError::Decode { path: path.to_owned(), reason: e.to_string() }
}

impl VideoReader {
    pub fn open(path: &Path) -> Result<Self, VideoError> {
        init();
        let meta = std::fs::metadata(path).map_err(|e| VideoError::io(path, e))?;
        if meta.len() == 0 {
            return Err(err_open(path, "the file is empty (0 bytes)"));
        }
        let ictx = ffmpeg::format::input(path).map_err(|e| err_open(path, e))?;
        let st = ictx.streams().best(ffmpeg::media::Type::Video).ok_or_else(|| VideoError::NoVideoStream { path: path.to_owned() })?;
        let stream = st.index();
        let tb = st.time_base();
        let fps = if st.avg_frame_rate().numerator() > 0 { st.avg_frame_rate() } else { st.rate() };
        let start = if st.start_time() == ffmpeg::ffi::AV_NOPTS_VALUE { 0 } else { st.start_time() };
        let mut ctx = ffmpeg::codec::context::Context::from_parameters(st.parameters()).map_err(|e| err_open(path, e))?;
        // One decoding thread: callers decode several videos in parallel instead, which scales
        // better for small frames (spec pipeline-stack §1.4).
        ctx.set_threading(ffmpeg::threading::Config { kind: ffmpeg::threading::Type::Frame, count: 1, ..Default::default() });
        let decoder = ctx.decoder().video().map_err(|e| err_open(path, e))?;
        if decoder.width() == 0 || decoder.height() == 0 {
            return Err(err_open(path, "the video stream has no frame size"));
        }
        check_frame_size(path, decoder.width(), decoder.height())?;
        let fps_f = if fps.denominator() != 0 { f64::from(fps) } else { 0.0 };
        let declared = st.frames().max(0) as u64;
        let frame_count = if declared > 0 {
            declared
        } else if st.duration() > 0 && fps_f > 0.0 {
            (st.duration() as f64 * f64::from(tb) * fps_f).round() as u64
        } else if ictx.duration() > 0 && fps_f > 0.0 {
            (ictx.duration() as f64 / 1e6 * fps_f).round() as u64
        } else {
            0
        };
        let info = VideoInfo {
            width: decoder.width() as usize,
            height: decoder.height() as usize,
            fps: fps_f,
            frame_count,
            codec: decoder.codec().map(|c| c.name().to_owned()).unwrap_or_default(),
        };
        Ok(Self { path: path.to_owned(), ictx, decoder, stream, tb, fps, start, info, scaler: None, fresh: true, decoded: 0 })
    }

    pub fn info(&self) -> &VideoInfo {
        &self.info
    }

    /// Frames decoded since the file was opened.
    pub fn frames_decoded(&self) -> usize {
        self.decoded
    }

    /// Converts a decoded frame to packed RGB24 (swscale, bilinear chroma, as PyAV's `to_rgb`).
    fn rgb_of(&mut self, f: &ffmpeg::frame::Video) -> Result<Frame, VideoError> {
        let (fmt, w, h) = (f.format(), f.width(), f.height());
        check_frame_size(&self.path, w, h)?;
        if !matches!(&self.scaler, Some((pf, pw, ph, _)) if *pf == fmt && *pw == w && *ph == h) {
            let ctx =
                scaling::Context::get(fmt, w, h, Pixel::RGB24, w, h, scaling::Flags::BILINEAR).map_err(|e| err_decode(&self.path, e))?;
            self.scaler = Some((fmt, w, h, ctx));
        }
        let mut rgb = ffmpeg::frame::Video::empty();
        let Some((_, _, _, sws)) = self.scaler.as_mut() else { unreachable!("scaler set above") };
        sws.run(f, &mut rgb).map_err(|e| err_decode(&self.path, e))?;
        let (w, h) = (w as usize, h as usize);
        let stride = rgb.stride(0);
        let plane = rgb.data(0);
        let mut data = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            data.extend_from_slice(&plane[y * stride..y * stride + w * 3]);
        }
        Ok(Frame::new(w, h, data))
    }

    /// Reads the next packet of the video stream; `None` at the end of the file.
    fn next_packet(&mut self) -> Result<Option<Packet>, VideoError> {
        loop {
            let mut p = Packet::empty();
            match p.read(&mut self.ictx) {
                Ok(()) if p.stream() == self.stream => return Ok(Some(p)),
                Ok(()) => continue,
                Err(ffmpeg::Error::Eof) => return Ok(None),
                // A corrupt packet: the demuxer can resync past it (as ffmpeg's CLI does).
                Err(ffmpeg::Error::InvalidData) => continue,
                Err(e) => return Err(err_decode(&self.path, e)),
            }
        }
    }

    /// Drives the decoder, handing each decoded frame to `f` until it returns `false` or the
    /// stream ends. Returns whether the stream ended.
    fn pump(&mut self, mut f: impl FnMut(&mut Self, &ffmpeg::frame::Video) -> Result<bool, VideoError>) -> Result<bool, VideoError> {
        self.fresh = false;
        let mut frame = ffmpeg::frame::Video::empty();
        let mut eof = false;
        loop {
            loop {
                match self.decoder.receive_frame(&mut frame) {
                    Ok(()) => {
                        self.decoded += 1;
                        if !f(self, &frame)? {
                            return Ok(false);
                        }
                    }
                    Err(ffmpeg::Error::Eof) => return Ok(true),
                    Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::error::EAGAIN => break,
                    Err(e) => return Err(err_decode(&self.path, e)),
                }
            }
            if eof {
                return Ok(true);
            }
            match self.next_packet()? {
                Some(p) => {
                    // A damaged packet is skipped like FFmpeg's CLI does; a file that
                    // yields no frame at all is reported by the caller.
                    match self.decoder.send_packet(&p) {
                        Ok(()) | Err(ffmpeg::Error::InvalidData) => {}
                        Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::error::EAGAIN => {}
                        Err(e) => return Err(err_decode(&self.path, e)),
                    }
                }
                None => {
                    eof = true;
                    // Ignore a second EOF (the decoder may already be draining).
                    let _ = self.decoder.send_eof();
                }
            }
        }
    }

    /// Decodes every frame in order, handing each (as RGB) to `f`. Returns the frame count.
    /// Like torchvision's `read_video`, frames are counted as decoded, with no fps resampling.
    pub fn for_each_frame(&mut self, mut f: impl FnMut(usize, Frame) -> Result<(), VideoError>) -> Result<usize, VideoError> {
        if !self.fresh {
            self.seek_to(0)?;
        }
        let mut n = 0;
        self.pump(|me, fr| {
            let rgb = me.rgb_of(fr)?;
            f(n, rgb)?;
            n += 1;
            Ok(true)
        })?;
        if n == 0 {
            return Err(err_decode(&self.path, "no frame could be decoded"));
        }
        Ok(n)
    }

    /// Every frame of the video.
    pub fn read_all(&mut self) -> Result<Vec<Frame>, VideoError> {
        let mut v = Vec::new();
        self.for_each_frame(|_, f| {
            v.push(f);
            Ok(())
        })?;
        Ok(v)
    }

    /// The pts of frame `idx` in stream time base.
    fn pts_of(&self, idx: usize) -> i64 {
        let (tn, td) = (self.tb.numerator() as i128, self.tb.denominator() as i128);
        let (fn_, fd) = (self.fps.numerator() as i128, self.fps.denominator() as i128);
        // A file may declare a zero frame rate or time base: frame 0 is then the start (the
        // only index asked for without timestamps, by a rewinding full decode).
        let offset = (idx as i128 * td * fd).checked_div(tn * fn_).unwrap_or(0);
        (self.start as i128 + offset) as i64
    }

    /// The frame index of a pts: `round((pts - start) · tb · fps)`.
    fn index_of(&self, pts: i64) -> i64 {
        let x = (pts - self.start) as f64 * f64::from(self.tb) * f64::from(self.fps);
        x.round() as i64
    }

    fn seek_to(&mut self, idx: usize) -> Result<(), VideoError> {
        let target = self.pts_of(idx);
        let us = ffmpeg::Rescale::rescale(&target, self.tb, ffmpeg::rescale::TIME_BASE);
        // `..us` is passed as max_ts and avformat treats it as inclusive: the keyframe found is
        // at or before the target.
        self.ictx.seek(us, ..us).map_err(|e| err_decode(&self.path, format!("seek to frame {idx}: {e}")))?;
        self.decoder.flush();
        self.fresh = false;
        Ok(())
    }

    /// The frames at `indices` (ascending), decoding only from the keyframe before the first
    /// of them to the last: the cost of a clip does not grow with the length of the video.
    pub fn read_indices(&mut self, indices: &[usize]) -> Result<Vec<Frame>, VideoError> {
        if indices.is_empty() {
            return Ok(Vec::new());
        }
        if indices.windows(2).any(|w| w[0] > w[1]) {
            return Err(VideoError::Invalid { path: self.path.clone(), reason: format!("frame indices must ascend: {indices:?}") });
        }
        let timestamps_usable = self.fps.numerator() > 0 && self.fps.denominator() > 0 && self.tb.numerator() > 0;
        if !timestamps_usable {
            // Without a frame rate, indices can only be found by counting from the start.
            let all = self.read_all()?;
            return indices
                .iter()
                .map(|&i| all.get(i).cloned().ok_or(VideoError::TooFewFrames { path: self.path.clone(), wanted: i, decoded: all.len() }))
                .collect();
        }
        // Demuxers index keyframes by decode time, which trails presentation time when the
        // stream has B-frames, so a seek can land on the keyframe just *after* the target. Such
        // an overshoot is detected (the first decoded index is past the target) and the seek is
        // repeated further back.
        let mut back = 0usize;
        loop {
            let target = indices[0].saturating_sub(back);
            if !(self.fresh && target == 0) {
                self.seek_to(target)?;
            }
            match self.decode_from_seek(indices)? {
                Some(out) => return Ok(out),
                None if target == 0 => {
                    return Err(err_decode(&self.path, format!("frame {} not found from the start of the file", indices[0])));
                }
                None => back = if back == 0 { 8 } else { back * 4 },
            }
        }
    }

    /// Decodes forward from the current position collecting `indices`; `None` when the first
    /// frame decoded is already past `indices[0]` (the seek overshot).
    fn decode_from_seek(&mut self, indices: &[usize]) -> Result<Option<Vec<Frame>>, VideoError> {
        let mut out: Vec<Frame> = Vec::with_capacity(indices.len());
        let mut next = 0usize;
        let mut counted: i64 = -1;
        let mut last_seen = 0usize;
        let mut overshot = false;
        self.pump(|me, fr| {
            let idx = match fr.timestamp().or(fr.pts()) {
                Some(ts) => me.index_of(ts),
                // No timestamp at all: frames are consecutive from the keyframe.
                None => counted + 1,
            };
            counted = idx;
            if idx < 0 {
                return Ok(true);
            }
            let idx = idx as usize;
            last_seen = last_seen.max(idx + 1);
            if out.is_empty() && indices[next] < idx {
                overshot = true;
                return Ok(false);
            }
            let mut rgb: Option<Frame> = None;
            while next < indices.len() && indices[next] <= idx {
                let f = if indices[next] == idx {
                    match &rgb {
                        Some(f) => f.clone(),
                        None => me.rgb_of(fr)?,
                    }
                } else {
                    // An index the stream skipped (variable frame rate): the nearest earlier
                    // frame stands in, as a constant-rate resampler would.
                    out.last().cloned().unwrap_or(me.rgb_of(fr)?)
                };
                if indices[next] == idx {
                    rgb = Some(f.clone());
                }
                out.push(f);
                next += 1;
            }
            Ok(next < indices.len())
        })?;
        if overshot {
            return Ok(None);
        }
        if out.len() < indices.len() {
            return Err(VideoError::TooFewFrames { path: self.path.clone(), wanted: indices[out.len()], decoded: last_seen });
        }
        Ok(Some(out))
    }
}

/// Container facts without decoding.
pub fn probe(path: &Path) -> Result<VideoInfo, VideoError> {
    Ok(VideoReader::open(path)?.info)
}
