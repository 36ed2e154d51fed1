//! The synthetic dataset: procedurally animated scenes (shapes moving and bouncing) with a
//! few motion classes, so that class-conditional training has something to learn. Every
//! video is a pure function of `(seed, index)`.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::frame::Frame;

/// The motion classes, in label order.
pub const MOTION_CLASSES: [&str; 4] = ["horizontal", "vertical", "diagonal", "orbit"];

/// Most synthetic videos a dataset may ask for.
pub const MAX_VIDEOS: usize = 1_000_000;
/// Most frames a synthetic video may have.
pub const MAX_FRAMES: usize = 100_000;

#[derive(Clone, Debug, PartialEq)]
pub struct SyntheticConfig {
    pub num_videos: usize,
    /// Each video's length is drawn uniformly from `min_frames..=max_frames`.
    pub min_frames: usize,
    pub max_frames: usize,
    pub fps: u32,
    pub width: usize,
    pub height: usize,
    /// How many of [`MOTION_CLASSES`] are used (1–4); labels cycle through them.
    pub num_classes: usize,
    pub seed: u64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self { num_videos: 32, min_frames: 56, max_frames: 80, fps: 8, width: 64, height: 64, num_classes: 4, seed: 0 }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("synthetic dataset: {0}")]
pub struct SyntheticError(pub String);

impl SyntheticConfig {
    /// Refuses values that cannot work, and counts so large they cannot be meant (beyond
    /// [`MAX_VIDEOS`] videos or [`MAX_FRAMES`] frames a video, the data would not fit a disk).
    pub fn validate(&self) -> Result<(), SyntheticError> {
        let e = |m: String| Err(SyntheticError(m));
        if !(1..=MAX_VIDEOS).contains(&self.num_videos) {
            return e(format!("num_videos must be 1..={MAX_VIDEOS}, got {}", self.num_videos));
        }
        if self.min_frames == 0 || self.min_frames > self.max_frames || self.max_frames > MAX_FRAMES {
            return e(format!("need 1 <= min_frames <= max_frames <= {MAX_FRAMES}, got {}..={}", self.min_frames, self.max_frames));
        }
        if self.width > 4096 || self.height > 4096 {
            return e(format!("width and height must be at most 4096, got {}x{}", self.width, self.height));
        }
        if self.min_frames == 0 || self.min_frames > self.max_frames {
            return e(format!("need 1 <= min_frames <= max_frames, got {}..={}", self.min_frames, self.max_frames));
        }
        if self.width < 16 || self.height < 16 || self.width % 2 == 1 || self.height % 2 == 1 {
            return e(format!("width and height must be even and at least 16, got {}x{}", self.width, self.height));
        }
        if !(1..=MOTION_CLASSES.len()).contains(&self.num_classes) {
            return e(format!("num_classes must be 1..={}, got {}", MOTION_CLASSES.len(), self.num_classes));
        }
        if self.fps == 0 {
            return e("fps must be at least 1".into());
        }
        Ok(())
    }

    /// Label of video `index` (classes alternate so every class is present).
    pub fn label(&self, index: usize) -> u32 {
        (index % self.num_classes) as u32
    }
}

#[derive(Clone, Copy, Debug)]
enum Shape {
    Disc,
    Square,
    Ring,
}

struct Sprite {
    shape: Shape,
    radius: f32,
    colour: [f32; 3],
    /// Position and velocity in pixels (per frame).
    pos: [f32; 2],
    vel: [f32; 2],
    /// Orbit parameters (centre, radius, angular speed, phase).
    orbit: ([f32; 2], f32, f32, f32),
}

/// One rendered video.
pub struct SyntheticVideo {
    pub label: u32,
    pub frames: Vec<Frame>,
}

fn bounce(p: f32, v: f32, lo: f32, hi: f32) -> (f32, f32) {
    // Reflect off the walls; several reflections cannot happen in one frame at these speeds.
    let np = p + v;
    if np < lo {
        (2.0 * lo - np, -v)
    } else if np > hi {
        (2.0 * hi - np, -v)
    } else {
        (np, v)
    }
}

/// Renders video `index` of the dataset.
pub fn render(cfg: &SyntheticConfig, index: usize) -> SyntheticVideo {
    let mut rng = latte_seed::stream(cfg.seed, index as u64);
    let label = cfg.label(index);
    let n = rng.random_range(cfg.min_frames..=cfg.max_frames);
    let (w, h) = (cfg.width as f32, cfg.height as f32);
    let bg_a: [f32; 3] = std::array::from_fn(|_| rng.random_range(0.0..120.0));
    let bg_b: [f32; 3] = std::array::from_fn(|_| rng.random_range(0.0..120.0));
    let n_sprites = rng.random_range(1..=2usize);
    let mut sprites: Vec<Sprite> = (0..n_sprites)
        .map(|_| {
            let radius = rng.random_range(0.08..0.16) * w.min(h);
            let speed = rng.random_range(0.02..0.05) * w.min(h);
            let sign = |r: &mut ChaCha8Rng| if r.random::<bool>() { 1.0 } else { -1.0 };
            let vel = match MOTION_CLASSES[label as usize] {
                "horizontal" => [speed * sign(&mut rng), 0.0],
                "vertical" => [0.0, speed * sign(&mut rng)],
                _ => [speed * std::f32::consts::FRAC_1_SQRT_2 * sign(&mut rng), speed * std::f32::consts::FRAC_1_SQRT_2 * sign(&mut rng)],
            };
            let shape = [Shape::Disc, Shape::Square, Shape::Ring][rng.random_range(0..3usize)];
            let colour = std::array::from_fn(|_| rng.random_range(130.0..255.0));
            let pos = [rng.random_range(radius..w - radius), rng.random_range(radius..h - radius)];
            let orbit_r = rng.random_range(0.15..0.3) * w.min(h);
            let orbit = ([w / 2.0, h / 2.0], orbit_r, speed / orbit_r * sign(&mut rng), rng.random_range(0.0..std::f32::consts::TAU));
            Sprite { shape, radius, colour, pos, vel, orbit }
        })
        .collect();
    let mut frames = Vec::with_capacity(n);
    for t in 0..n {
        let mut data = Vec::with_capacity(cfg.width * cfg.height * 3);
        for y in 0..cfg.height {
            let g = y as f32 / (h - 1.0);
            for x in 0..cfg.width {
                let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
                let mut c: [f32; 3] = std::array::from_fn(|k| bg_a[k] * (1.0 - g) + bg_b[k] * g);
                for s in &sprites {
                    let (dx, dy) = (px - s.pos[0], py - s.pos[1]);
                    let inside = match s.shape {
                        Shape::Disc => dx * dx + dy * dy <= s.radius * s.radius,
                        Shape::Square => dx.abs() <= s.radius * 0.85 && dy.abs() <= s.radius * 0.85,
                        Shape::Ring => {
                            let d = (dx * dx + dy * dy).sqrt();
                            d <= s.radius && d >= s.radius * 0.55
                        }
                    };
                    if inside {
                        c = s.colour;
                    }
                }
                data.extend(c.iter().map(|&v| v.round().clamp(0.0, 255.0) as u8));
            }
        }
        frames.push(Frame::new(cfg.width, cfg.height, data));
        for s in &mut sprites {
            if MOTION_CLASSES[label as usize] == "orbit" {
                let (c, r, om, ph) = s.orbit;
                let a = ph + om * (t + 1) as f32;
                s.pos = [c[0] + r * a.cos(), c[1] + r * a.sin()];
            } else {
                let (x, vx) = bounce(s.pos[0], s.vel[0], s.radius, w - s.radius);
                let (y, vy) = bounce(s.pos[1], s.vel[1], s.radius, h - s.radius);
                s.pos = [x, y];
                s.vel = [vx, vy];
            }
        }
    }
    SyntheticVideo { label, frames }
}
