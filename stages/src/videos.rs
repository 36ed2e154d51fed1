//! `videos`: finds the clips of a dataset (or generates the synthetic one) and writes
//! `manifest.json` (see ARCHITECTURE.md) plus `rejected.json` for files that cannot be opened.

use anyhow::{anyhow, Context};
use latte_datasets::{build_manifest, scan, write_synthetic, DatasetKind, Rejected, ScanOptions};
use latte_engine::{InputSpec, ParamSpec, ParamType, Params, Stage, StageContext, StageError};
use latte_video::synthetic::SyntheticConfig;

pub struct Videos;

const PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "dataset",
        ty: ParamType::Str,
        default: Some("\"synthetic\""),
        help: "synthetic | ffs | ucf101 | sky | taichi | videos (any folder of video files) | frames (any folder of frame folders)",
    },
    ParamSpec { name: "path", ty: ParamType::Path, default: Some("\"\""), help: "the dataset's root folder (not used by `synthetic`)" },
    ParamSpec {
        name: "sky_min_frames",
        ty: ParamType::Int,
        default: Some("48"),
        help: "sky: keep frame folders with more than this many frames (num_frames × frame_interval)",
    },
    ParamSpec { name: "num_videos", ty: ParamType::Int, default: Some("32"), help: "synthetic: number of videos (1 to 1,000,000)" },
    ParamSpec { name: "min_frames", ty: ParamType::Int, default: Some("56"), help: "synthetic: shortest video length in frames" },
    ParamSpec { name: "max_frames", ty: ParamType::Int, default: Some("80"), help: "synthetic: longest video length in frames" },
    ParamSpec { name: "fps", ty: ParamType::Int, default: Some("8"), help: "synthetic: frame rate of the mp4 files" },
    ParamSpec { name: "width", ty: ParamType::Int, default: Some("64"), help: "synthetic: frame width (even)" },
    ParamSpec { name: "height", ty: ParamType::Int, default: Some("64"), help: "synthetic: frame height (even)" },
    ParamSpec { name: "num_classes", ty: ParamType::Int, default: Some("4"), help: "synthetic: motion classes used (1-4)" },
    ParamSpec { name: "seed", ty: ParamType::Int, default: Some("0"), help: "synthetic: seed of the generator" },
];

fn kind(p: &Params) -> Result<DatasetKind, String> {
    let s = p.str("dataset").map_err(|e| e.to_string())?;
    DatasetKind::parse(s).ok_or_else(|| format!("parameter `dataset` is \"{s}\"; use one of {}", DatasetKind::NAMES.join(", ")))
}

fn synthetic_config(p: &Params) -> Result<SyntheticConfig, StageError> {
    let cfg = SyntheticConfig {
        num_videos: p.usize("num_videos")?,
        min_frames: p.usize("min_frames")?,
        max_frames: p.usize("max_frames")?,
        fps: u32::try_from(p.usize("fps")?).map_err(|_| "parameter `fps` is too large")?,
        width: p.usize("width")?,
        height: p.usize("height")?,
        num_classes: p.usize("num_classes")?,
        seed: p.u64("seed")?,
    };
    cfg.validate().map_err(|e| format!("{e} (parameters of the `videos` stage)"))?;
    Ok(cfg)
}

impl Stage for Videos {
    fn kind(&self) -> &'static str {
        "videos"
    }

    fn version(&self) -> &'static str {
        "2" // 2: H.264 without x264's lookahead (byte-reproducible encodes)
    }

    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }

    fn inputs(&self) -> &'static [InputSpec] {
        &[]
    }

    fn validate(&self, params: &Params) -> Result<(), String> {
        match kind(params)? {
            DatasetKind::Synthetic => synthetic_config(params).map(|_| ()).map_err(|e| e.to_string()),
            k => match params.opt_str("path").map_err(|e| e.to_string())? {
                Some(_) => Ok(()),
                None => Err(format!("dataset `{}` needs parameter `path` (the dataset's root folder)", k.name())),
            },
        }
    }

    fn run(&self, ctx: &StageContext<'_>) -> Result<(), StageError> {
        let kind = kind(ctx.params)?;
        let (manifest, rejected) = if kind == DatasetKind::Synthetic {
            let cfg = synthetic_config(ctx.params)?;
            ctx.progress.set_message(&format!("writing {} synthetic videos", cfg.num_videos));
            let m = write_synthetic(&cfg, ctx.out, ctx.threads).context("generating the synthetic dataset")?;
            (m, Vec::<Rejected>::new())
        } else {
            let root = ctx.params.path("path")?;
            let opts = ScanOptions { sky_min_frames: ctx.params.usize("sky_min_frames")? };
            let found = scan(kind, &root, &opts).with_context(|| format!("scanning dataset `{}` at {}", kind.name(), root.display()))?;
            ctx.progress.set_message(&format!("probing {} clips", found.candidates.len()));
            build_manifest(kind, found, ctx.threads)
        };
        for r in &rejected {
            ctx.progress.log(&format!("rejected {}: {}", r.path.display(), r.reason));
        }
        if manifest.clips.is_empty() {
            return Err(anyhow!(
                "no usable clip in dataset `{}`: all {} candidates were rejected (first: {})",
                kind.name(),
                rejected.len(),
                rejected.first().map(|r| format!("{}: {}", r.path.display(), r.reason)).unwrap_or_default()
            )
            .into());
        }
        manifest.write(&ctx.out.join("manifest.json"))?;
        Rejected::write_all(&ctx.out.join("rejected.json"), &rejected)?;
        ctx.progress.log(&format!("{} clips, {} rejected", manifest.clips.len(), rejected.len()));
        Ok(())
    }
}
