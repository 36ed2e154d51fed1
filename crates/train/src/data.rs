//! Latent clips and the batches drawn from them, prepared on a loader thread.
//!
//! Each training sample is what the reference's data loader plus its VAE call produce
//! (spec §3.2, §4.2): a clip drawn from a per-epoch shuffle, a window of frames by the dataset's
//! rule, a flip orientation, a *fresh* posterior sample `mean + exp(½·logvar)·ε` of every frame
//! (latents are cached as mean and log variance, both orientations), scaled by 0.18215; plus the
//! diffusion timestep and noise, and the class label with its dropout coin.
//!
//! Every draw for micro-batch `m` comes from a ChaCha8 stream derived from (data seed, m) alone,
//! so the loader can run ahead, and a resumed run continues with exactly the draws an
//! uninterrupted one would have made.

use std::ops::Range;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use crate::{TrainConfig, TrainError};

/// The error a clip reader returns (the latents store's, or any other source's).
pub type ReadError = Box<dyn std::error::Error + Send + Sync>;

/// Reads frames of one clip: `(clip, orientation (0 = original, 1 = flipped), frame indices
/// within the clip) -> (mean, logvar)`, each `indices.len() · C·h·w` floats, frame-major.
pub type ClipReader = dyn Fn(usize, usize, &[usize]) -> Result<(Vec<f32>, Vec<f32>), ReadError> + Send + Sync;

/// Picks a clip's frame indices given its length (the dataset's window rule).
pub type WindowDraw = dyn Fn(usize, &mut ChaCha8Rng) -> Result<Vec<usize>, ReadError> + Send + Sync;

/// A set of video clips cached as VAE posteriors, as the training loop sees it.
pub struct LatentClips {
    /// Frames in each clip.
    pub counts: Vec<usize>,
    /// Class index per clip when the data set is labelled.
    pub labels: Option<Vec<usize>>,
    pub num_classes: Option<usize>,
    /// (C, h, w) of one latent frame.
    pub frame_shape: [usize; 3],
    /// Whether the data set's transform flips clips (FFS, UCF101, Taichi; not Sky).
    pub flip: bool,
    pub read: Box<ClipReader>,
    pub window: Box<WindowDraw>,
}

impl LatentClips {
    /// Clips held in memory: `mean`/`logvar` are `[2, total_frames, C, h, w]` (orientation
    /// first), clips laid out one after another with `counts` frames each.
    pub fn in_memory(
        mean: Vec<f32>,
        logvar: Vec<f32>,
        counts: Vec<usize>,
        frame_shape: [usize; 3],
        window: Box<WindowDraw>,
    ) -> Result<Self, TrainError> {
        let total: usize = counts.iter().sum();
        let fl: usize = frame_shape.iter().product();
        for (name, v) in [("mean", &mean), ("logvar", &logvar)] {
            if v.len() != 2 * total * fl {
                return Err(TrainError::Data(format!(
                    "in-memory latents `{name}` hold {} values, expected 2 × {total} frames × {fl}",
                    v.len()
                )));
            }
        }
        let offsets: Vec<usize> = counts.iter().scan(0, |o, c| Some(std::mem::replace(o, *o + c))).collect();
        let (mean, logvar) = (Arc::new(mean), Arc::new(logvar));
        let read = Box::new(move |clip: usize, orient: usize, idx: &[usize]| {
            let mut m = Vec::with_capacity(idx.len() * fl);
            let mut l = Vec::with_capacity(idx.len() * fl);
            for &i in idx {
                let start = (orient * total + offsets[clip] + i) * fl;
                m.extend_from_slice(&mean[start..start + fl]);
                l.extend_from_slice(&logvar[start..start + fl]);
            }
            Ok((m, l))
        });
        Ok(Self { counts, labels: None, num_classes: None, frame_shape, flip: true, read, window })
    }

    pub fn total_frames(&self) -> usize {
        self.counts.iter().sum()
    }

    fn check(&self) -> Result<(), TrainError> {
        if self.counts.is_empty() || self.total_frames() == 0 {
            return Err(TrainError::Data("the latent store holds no clips".into()));
        }
        if let Some(labels) = &self.labels {
            let n = self.num_classes.ok_or_else(|| TrainError::Data("labels given without num_classes".into()))?;
            if labels.len() != self.counts.len() {
                return Err(TrainError::Data(format!("{} labels for {} clips", labels.len(), self.counts.len())));
            }
            if let Some(l) = labels.iter().find(|&&l| l >= n) {
                return Err(TrainError::Data(format!("label {l} is not below num_classes {n}")));
            }
        }
        Ok(())
    }
}

/// One micro-batch, host-side, ready to become tensors. Under data parallelism it holds this
/// rank's share of the micro-batch's clips (B = batch_size / world size).
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Global micro-batch index (optimizer step × grad_accum + micro-batch).
    pub index: u64,
    /// Scaled latents (B, F + K, C, h, w), row-major.
    pub x0: Vec<f32>,
    /// Diffusion noise, same shape.
    pub noise: Vec<f32>,
    pub shape: [usize; 5],
    /// Diffusion timestep per clip.
    pub t: Vec<usize>,
    /// Class per clip after dropout (null class = num_classes); `None` when unconditional.
    pub y: Option<Vec<usize>>,
    /// Class per extra image frame (B·K, clip-major) after dropout; `None` when unconditional
    /// or without image frames.
    pub y_image: Option<Vec<usize>>,
}

/// Draws micro-batches deterministically from (seed, index).
#[derive(Clone)]
pub(crate) struct BatchSampler {
    clips: Arc<LatentClips>,
    cfg: TrainConfig,
    num_timesteps: usize,
    /// Shuffled clip order of the epoch in `cached_epoch`.
    order: Vec<usize>,
    cached_epoch: Option<u64>,
    /// The clips of each micro-batch this rank keeps (data parallel); all of them alone.
    share: Range<usize>,
}

/// Stream ids: micro-batch draws use `index`; epoch shuffles use the high half of the space.
const EPOCH_STREAM: u64 = 1 << 63;

impl BatchSampler {
    pub(crate) fn new(clips: Arc<LatentClips>, cfg: &TrainConfig, num_timesteps: usize) -> Result<Self, TrainError> {
        clips.check()?;
        let share = 0..cfg.batch_size;
        Ok(Self { clips, cfg: cfg.clone(), num_timesteps, order: Vec::new(), cached_epoch: None, share })
    }

    /// Keeps only `share` of each micro-batch's clips. The draws of the others are still made
    /// (and dropped), so every rank's clips are the ones a single rank would have drawn; their
    /// latents are not read.
    pub(crate) fn with_share(mut self, share: Range<usize>) -> Self {
        debug_assert!(share.end <= self.cfg.batch_size && share.start < share.end);
        self.share = share;
        self
    }

    fn rng(&self, stream: u64) -> ChaCha8Rng {
        latte_seed::stream(self.cfg.data_seed, stream)
    }

    /// The clip of global sample `j`: epoch `j / n` visits every clip once, in its own order
    /// (the reference's shuffled sampler, without dropping a ragged last batch).
    fn clip_of(&mut self, j: u64) -> usize {
        let n = self.clips.counts.len() as u64;
        let epoch = j / n;
        if self.cached_epoch != Some(epoch) {
            self.order = (0..n as usize).collect();
            let mut rng = self.rng(EPOCH_STREAM | epoch);
            self.order.shuffle(&mut rng);
            self.cached_epoch = Some(epoch);
        }
        self.order[(j % n) as usize]
    }

    fn null_class(&self) -> usize {
        self.clips.num_classes.unwrap_or(0)
    }

    pub(crate) fn draw(&mut self, index: u64) -> Result<Batch, TrainError> {
        let (b, f, k) = (self.cfg.batch_size, self.cfg.num_frames, self.cfg.image_frames);
        let [c, h, w] = self.clips.frame_shape;
        let fl = c * h * w;
        let share = self.share.clone();
        let kept = share.len();
        let mut rng = self.rng(index);
        let mut mean = Vec::with_capacity(kept * (f + k) * fl);
        let mut logvar = Vec::with_capacity(kept * (f + k) * fl);
        let mut ys = Vec::with_capacity(kept);
        let mut y_images = Vec::with_capacity(kept * k);
        let labelled = self.clips.labels.is_some();
        for i in 0..b {
            let mine = share.contains(&i);
            let clip = self.clip_of(index * b as u64 + i as u64);
            let clips = Arc::clone(&self.clips);
            let count = clips.counts[clip];
            let idx = (clips.window)(count, &mut rng).map_err(|e| TrainError::Data(format!("clip {clip}: {e}")))?;
            if idx.len() != f || idx.iter().any(|&i| i >= count) {
                return Err(TrainError::Data(format!(
                    "clip {clip} ({count} frames) gave the window {idx:?}; need {f} indices below {count} \
                     (drop clips shorter than the window, or lower num_frames)"
                )));
            }
            let orient = usize::from(clips.flip && rng.random::<f64>() < 0.5);
            if mine {
                let (m, l) = (clips.read)(clip, orient, &idx).map_err(|e| TrainError::Data(format!("reading clip {clip}: {e}")))?;
                check_len(clip, &m, &l, f * fl)?;
                mean.extend(m);
                logvar.extend(l);
            }
            if k > 0 {
                // Extra frames are independent images from anywhere in the data set; one flip
                // decision covers all of them.
                let orient = usize::from(clips.flip && rng.random::<f64>() < 0.5);
                let total = clips.total_frames();
                let image_drop = rng.random::<f64>() < self.cfg.class_dropout_prob;
                for _ in 0..k {
                    let (img_clip, frame) = locate(&clips.counts, rng.random_range(0..total));
                    if !mine {
                        continue;
                    }
                    let (m, l) =
                        (clips.read)(img_clip, orient, &[frame]).map_err(|e| TrainError::Data(format!("reading clip {img_clip}: {e}")))?;
                    check_len(img_clip, &m, &l, fl)?;
                    mean.extend(m);
                    logvar.extend(l);
                    if let Some(labels) = &clips.labels {
                        y_images.push(if image_drop { self.null_class() } else { labels[img_clip] });
                    }
                }
            }
            if let Some(labels) = &clips.labels {
                let drop = rng.random::<f64>() < self.cfg.class_dropout_prob;
                if mine {
                    ys.push(if drop { self.null_class() } else { labels[clip] });
                }
            }
        }
        // `DiagonalGaussianDistribution.sample()`: logvar clamped to [−30, 20], then scaled.
        // The other ranks' ε are drawn and dropped: the stream stays the single rank's.
        let scale = self.cfg.scale_factor as f32;
        let per_clip = (f + k) * fl;
        let mut x0 = Vec::with_capacity(kept * per_clip);
        for i in 0..b {
            if share.contains(&i) {
                let at = (i - share.start) * per_clip;
                x0.extend(mean[at..at + per_clip].iter().zip(&logvar[at..at + per_clip]).map(|(&m, &lv)| {
                    let e: f32 = rng.sample(StandardNormal);
                    (m + (0.5 * lv.clamp(-30.0, 20.0)).exp() * e) * scale
                }));
            } else {
                for _ in 0..per_clip {
                    let _: f32 = rng.sample(StandardNormal);
                }
            }
        }
        let t: Vec<usize> = (0..b).map(|_| rng.random_range(0..self.num_timesteps)).collect();
        let noise: Vec<f32> = (0..b * per_clip).map(|_| rng.sample(StandardNormal)).collect();
        Ok(Batch {
            index,
            x0,
            noise: noise[share.start * per_clip..share.end * per_clip].to_vec(),
            shape: [kept, f + k, c, h, w],
            t: t[share].to_vec(),
            y: labelled.then_some(ys),
            y_image: (labelled && k > 0).then_some(y_images),
        })
    }
}

fn check_len(clip: usize, m: &[f32], l: &[f32], want: usize) -> Result<(), TrainError> {
    if m.len() != want || l.len() != want {
        return Err(TrainError::Data(format!("reading clip {clip}: got {} mean / {} logvar values, expected {want}", m.len(), l.len())));
    }
    Ok(())
}

/// (clip, frame within clip) of global frame `g`.
fn locate(counts: &[usize], mut g: usize) -> (usize, usize) {
    for (clip, &c) in counts.iter().enumerate() {
        if g < c {
            return (clip, g);
        }
        g -= c;
    }
    unreachable!("global frame index below total_frames")
}

/// Micro-batches `first..last` drawn on `threads` threads, each `prefetch` ahead of the
/// consumer: thread `w` draws the micro-batches `first + w + k·threads`, and `next` takes them
/// back in order. A batch depends only on its index (its own seeded stream), so the number of
/// threads changes no value.
pub(crate) struct Loader {
    rxs: Vec<Receiver<Result<Batch, TrainError>>>,
    handles: Vec<JoinHandle<()>>,
    next: std::cell::Cell<usize>,
}

impl Loader {
    pub(crate) fn spawn(sampler: BatchSampler, first: u64, last: u64, prefetch: usize, threads: usize) -> Result<Self, TrainError> {
        let threads = threads.max(1);
        let (mut rxs, mut handles) = (Vec::new(), Vec::new());
        for w in 0..threads {
            let (tx, rx) = bounded(prefetch.max(1));
            let mut sampler = sampler.clone();
            let handle = std::thread::Builder::new()
                .name(format!("latte-train-loader-{w}"))
                .spawn(move || {
                    for index in (first + w as u64..last).step_by(threads) {
                        let batch = sampler.draw(index);
                        let failed = batch.is_err();
                        // A closed channel means training stopped; just end.
                        if tx.send(batch).is_err() || failed {
                            return;
                        }
                    }
                })
                .map_err(|e| TrainError::Io { path: "<loader thread>".into(), source: e })?;
            rxs.push(rx);
            handles.push(handle);
        }
        Ok(Self { rxs, handles, next: std::cell::Cell::new(0) })
    }

    pub(crate) fn next(&self) -> Result<Batch, TrainError> {
        let i = self.next.get();
        self.next.set(i + 1);
        self.rxs[i % self.rxs.len()].recv().map_err(|_| TrainError::Data("a loader thread stopped early".into()))?
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Unblock senders waiting on full channels, then wait for the threads to end.
        self.rxs.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// Clips per second the loader alone delivers for `cfg` (`cfg.loader_threads` threads, no
/// training): what it can feed a GPU, for `bench train`.
pub fn loader_clips_per_second(clips: LatentClips, cfg: &TrainConfig, micro_batches: u64) -> Result<f64, TrainError> {
    let sampler = BatchSampler::new(Arc::new(clips), cfg, 1000)?;
    let started = std::time::Instant::now();
    let loader = Loader::spawn(sampler, 0, micro_batches, cfg.prefetch, cfg.loader_threads)?;
    let mut n = 0usize;
    for _ in 0..micro_batches {
        n += loader.next()?.shape[0];
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    //! The batch layout: (B, F + K, C, h, w) with every frame's (C, h, w) block taken whole from
    //! the frame the window picked, in the orientation drawn, scaled. A frame/channel axis
    //! mix-up anywhere between the `[2, N, C, h, w]` store and the batch breaks these values.

    use rand::SeedableRng;

    use super::*;

    const C: usize = 3;
    const H: usize = 2;
    const W: usize = 4;

    /// The value stored at (orientation, global frame, channel, y, x): every index recoverable.
    fn code(o: usize, g: usize, c: usize, y: usize, x: usize) -> f32 {
        (o * 100_000 + g * 1000 + c * 100 + y * 10 + x) as f32
    }

    /// Several loader threads hand out exactly the batches one thread does, in order.
    #[test]
    fn loader_threads_change_no_batch() {
        let counts = vec![5, 7, 6];
        let n = 2 * counts.iter().sum::<usize>() * C * H * W;
        let mean: Vec<f32> = (0..n).map(|i| (i % 97) as f32 / 50.0 - 1.0).collect();
        let window = || Box::new(|total: usize, _: &mut ChaCha8Rng| Ok(vec![total - 4, total - 3, total - 1])) as Box<WindowDraw>;
        let cfg = TrainConfig { batch_size: 3, num_frames: 3, data_seed: 9, ..TrainConfig::default() };
        let draw = |threads: usize| {
            let clips = LatentClips::in_memory(mean.clone(), vec![-2.0; n], counts.clone(), [C, H, W], window()).unwrap();
            let sampler = BatchSampler::new(Arc::new(clips), &cfg, 1000).unwrap();
            let loader = Loader::spawn(sampler, 2, 9, 2, threads).unwrap();
            (2..9).map(|_| loader.next().unwrap()).collect::<Vec<_>>()
        };
        let one = draw(1);
        assert_eq!(one.iter().map(|b| b.index).collect::<Vec<_>>(), (2..9).collect::<Vec<_>>());
        for threads in [2, 3, 8] {
            assert_eq!(draw(threads), one, "{threads} loader threads");
        }
        let clips = LatentClips::in_memory(mean.clone(), vec![-2.0; n], counts.clone(), [C, H, W], window()).unwrap();
        let rate = loader_clips_per_second(clips, &TrainConfig { loader_threads: 2, ..cfg.clone() }, 4).unwrap();
        assert!(rate.is_finite() && rate > 0.0, "{rate}");
    }

    #[test]
    fn batches_are_frame_major_whole_frames_in_one_orientation() {
        let counts = vec![5, 7, 6];
        let total: usize = counts.iter().sum();
        let mut mean = Vec::new();
        for o in 0..2 {
            for g in 0..total {
                for c in 0..C {
                    for y in 0..H {
                        for x in 0..W {
                            mean.push(code(o, g, c, y, x));
                        }
                    }
                }
            }
        }
        // exp(½·(−30)) ≈ 3e-7: the posterior sample is the mean to well under 0.5.
        let logvar = vec![-30.0f32; mean.len()];
        let window = Box::new(|total: usize, _: &mut ChaCha8Rng| Ok(vec![total - 4, total - 3, total - 1]));
        let clips = LatentClips::in_memory(mean, logvar, counts.clone(), [C, H, W], window).unwrap();
        let cfg = TrainConfig { batch_size: 4, num_frames: 3, scale_factor: 0.5, data_seed: 3, ..TrainConfig::default() };
        let mut sampler = BatchSampler::new(Arc::new(clips), &cfg, 1000).unwrap();
        let offsets = [0, 5, 12];
        let mut orientations = [0usize; 2];
        for index in 0..6 {
            let batch = sampler.draw(index).unwrap();
            assert_eq!(batch.shape, [4, 3, C, H, W]);
            for b in 0..4 {
                let at = |f: usize, c: usize, y: usize, x: usize| batch.x0[(((b * 3 + f) * C + c) * H + y) * W + x] / 0.5;
                // Frame 0, channel 0, pixel 0 names the clip, orientation and first frame.
                let v0 = at(0, 0, 0, 0).round() as usize;
                let (o, g0) = (v0 / 100_000, (v0 % 100_000) / 1000);
                orientations[o] += 1;
                let clip = (0..3).rev().find(|&k| g0 >= offsets[k]).unwrap();
                let want_frames: Vec<usize> =
                    [counts[clip] - 4, counts[clip] - 3, counts[clip] - 1].iter().map(|i| offsets[clip] + i).collect();
                for (f, &g) in want_frames.iter().enumerate() {
                    for c in 0..C {
                        for y in 0..H {
                            for x in 0..W {
                                let got = at(f, c, y, x);
                                let want = code(o, g, c, y, x);
                                assert!((got - want).abs() < 0.5, "batch {index} clip {b} [f{f} c{c} y{y} x{x}]: {got} != {want}");
                            }
                        }
                    }
                }
            }
        }
        assert!(orientations[0] > 0 && orientations[1] > 0, "both flip orientations drawn: {orientations:?}");
    }

    /// Data parallel: each rank's share of a micro-batch is exactly that slice of the single
    /// rank's batch (the same clips, windows, flips, ε, timesteps, noise and labels), and a rank
    /// reads only its own clips' latents.
    #[test]
    fn a_share_is_the_slice_of_the_whole_batch_and_reads_only_its_clips() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let counts = vec![5, 7, 6, 8, 9];
        let total: usize = counts.iter().sum();
        let n = 2 * total * C * H * W;
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mean: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        let logvar: Vec<f32> = (0..n).map(|_| rng.random_range(-4.0..-1.0)).collect();
        let window = Box::new(|total: usize, rng: &mut ChaCha8Rng| {
            let begin = rng.random_range(0..=total - 3);
            Ok((begin..begin + 3).collect())
        });
        let reads = Arc::new(AtomicUsize::new(0));
        let make = |reads: Arc<AtomicUsize>| {
            let mut clips = LatentClips::in_memory(mean.clone(), logvar.clone(), counts.clone(), [C, H, W], window.clone()).unwrap();
            clips.labels = Some(vec![0, 1, 2, 0, 1]);
            clips.num_classes = Some(3);
            let inner = std::mem::replace(&mut clips.read, Box::new(|_, _, _| Err("replaced".into())));
            clips.read = Box::new(move |c, o, i| {
                reads.fetch_add(1, Ordering::Relaxed);
                inner(c, o, i)
            });
            Arc::new(clips)
        };
        let cfg =
            TrainConfig { batch_size: 4, num_frames: 3, image_frames: 2, class_dropout_prob: 0.5, data_seed: 9, ..TrainConfig::default() };
        let per_clip = (3 + 2) * C * H * W;
        let mut whole = BatchSampler::new(make(Arc::new(AtomicUsize::new(0))), &cfg, 1000).unwrap();
        let mut halves: Vec<BatchSampler> =
            (0..2).map(|r| BatchSampler::new(make(Arc::clone(&reads)), &cfg, 1000).unwrap().with_share(2 * r..2 * r + 2)).collect();
        for index in [0, 1, 7] {
            let all = whole.draw(index).unwrap();
            for (r, half) in halves.iter_mut().enumerate() {
                let before = reads.load(Ordering::Relaxed);
                let part = half.draw(index).unwrap();
                // Two clips: one read of the window and two of the image frames each.
                assert_eq!(reads.load(Ordering::Relaxed) - before, 2 * 3, "batch {index} rank {r}: reads");
                let clips = 2 * r..2 * r + 2;
                assert_eq!(part.shape, [2, 5, C, H, W]);
                let same = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()) && a.len() == b.len();
                assert!(same(&part.x0, &all.x0[clips.start * per_clip..clips.end * per_clip]), "batch {index} rank {r}: x0");
                assert!(same(&part.noise, &all.noise[clips.start * per_clip..clips.end * per_clip]), "batch {index} rank {r}: noise");
                assert_eq!(part.t, all.t[clips.clone()]);
                assert_eq!(part.y.as_deref(), Some(&all.y.as_ref().unwrap()[clips.clone()]));
                assert_eq!(part.y_image.as_deref(), Some(&all.y_image.as_ref().unwrap()[2 * clips.start..2 * clips.end]));
            }
        }
    }
}
