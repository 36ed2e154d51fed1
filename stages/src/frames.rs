//! `frames`: decodes every clip of the manifest, applies the dataset's spatial transform and
//! stores the frames **unflipped** in `frames.zarr/` (ragged; see ARCHITECTURE.md). The
//! latents stage encodes both orientations. Clips that cannot be decoded or are too short
//! are listed in `rejected.json` (with the `videos` stage's rejections); the stage fails only
//! when every clip is rejected. A cancelled run stops after the clips being decoded.

use latte_datasets::{extract_frames, ExtractError, ExtractOptions, Manifest, Rejected};
use latte_engine::{InputSpec, ParamSpec, ParamType, Params, Stage, StageContext, StageError};
use latte_video::WindowSpec;

pub struct Frames;

const PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "size",
        ty: ParamType::Int,
        default: Some("64"),
        help: "output frames are size × size (256 in the paper); a multiple of 8 (SD's VAE downsamples ×8) from 8 to 4096",
    },
    ParamSpec {
        name: "windows_per_video",
        ty: ParamType::Int,
        default: Some("0"),
        help: "0: store every frame (the train stage draws windows); K > 0: store K seeded clips per video, decoding only those",
    },
    ParamSpec { name: "num_frames", ty: ParamType::Int, default: Some("16"), help: "frames per clip (shortest usable video)" },
    ParamSpec { name: "frame_interval", ty: ParamType::Int, default: Some("3"), help: "temporal stride of a clip" },
    ParamSpec { name: "seed", ty: ParamType::Int, default: Some("0"), help: "seed of the windows when windows_per_video > 0" },
];

const INPUTS: &[InputSpec] = &[InputSpec { name: "videos", required: true, help: "the `videos` stage (manifest.json)" }];

fn options(p: &Params) -> Result<ExtractOptions, StageError> {
    let size = p.usize("size")?;
    if !(8..=4096).contains(&size) || !size.is_multiple_of(8) {
        return Err(format!(
            "parameter `size` is {size}; use a multiple of 8 from 8 to 4096 (the VAE downsamples ×8, so latents are size/8 on a side)"
        )
        .into());
    }
    let spec = WindowSpec { num_frames: p.usize("num_frames")?, interval: p.usize("frame_interval")? };
    if spec.num_frames == 0 || spec.interval == 0 {
        return Err("parameters `num_frames` and `frame_interval` must be at least 1".into());
    }
    let k = p.usize("windows_per_video")?;
    Ok(ExtractOptions { size, windows_per_video: (k > 0).then_some(k), spec, seed: p.u64("seed")? })
}

impl Stage for Frames {
    fn kind(&self) -> &'static str {
        "frames"
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
        options(params).map(|_| ()).map_err(|e| e.to_string())
    }

    fn run(&self, ctx: &StageContext<'_>) -> Result<(), StageError> {
        let opts = options(ctx.params)?;
        let dir = ctx.input("videos")?;
        let manifest = Manifest::read(&dir.join("manifest.json"))?;
        let upstream = dir.join("rejected.json");
        let mut rejected = if upstream.is_file() { Rejected::read_all(&upstream)? } else { Vec::new() };
        ctx.progress.set_length(manifest.clips.len() as u64);
        let store = ctx.out.join("frames.zarr");
        let tick = |_: &latte_datasets::Clip| {
            ctx.progress.inc(1);
            crate::cancel::stop_if_cancelled(ctx.cancel);
        };
        let result = crate::cancel::stoppable(|| extract_frames(&manifest, dir, &store, &opts, ctx.threads, &tick))?;
        let report = match result {
            Ok(r) => r,
            Err(ExtractError::AllRejected { total, first, rejected: mine }) => {
                rejected.extend(mine);
                Rejected::write_all(&ctx.out.join("rejected.json"), &rejected)?;
                return Err(format!(
                    "every clip was rejected ({total} in the manifest); first: {first}. Check the dataset files (reasons in {})",
                    ctx.out.join("rejected.json").display()
                )
                .into());
            }
            Err(e) => return Err(e.into()),
        };
        for r in &report.rejected {
            ctx.progress.log(&format!("rejected {}: {}", r.path.display(), r.reason));
        }
        rejected.extend(report.rejected);
        Rejected::write_all(&ctx.out.join("rejected.json"), &rejected)?;
        ctx.progress.log(&format!(
            "{} clips, {} frames stored, {} rejected",
            report.meta.num_videos(),
            report.meta.total_frames(),
            rejected.len()
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use latte_engine::{Cancel, Interrupted, NoProgress, Registry, Stage, StageContext};

    use super::Frames;
    use crate::videos::Videos;

    /// A cancelled run stops the extractor from inside its rayon workers and reports
    /// `Interrupted`; the same run uncancelled completes.
    #[test]
    fn a_cancelled_run_stops_extracting() {
        let root = std::env::temp_dir().join(format!("latte-frames-cancel-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mut r = Registry::new();
        r.register(Videos);
        r.register(Frames);
        let text = "[stages.videos]\nkind = \"videos\"\nnum_videos = 6\nmin_frames = 8\nmax_frames = 8\nwidth = 16\nheight = 16\n\
                    [stages.frames]\nkind = \"frames\"\ninputs = { videos = \"videos\" }\nsize = 8\nnum_frames = 4\nframe_interval = 1\n";
        let p = latte_engine::pipeline::parse(text, &root.join("pipeline.toml"), &r, &Default::default()).unwrap();
        let run = |stage: &dyn Stage, name: &str, inputs: &BTreeMap<String, std::path::PathBuf>, cancel: &Cancel| {
            let (out, work) = (root.join(format!("{name}-out")), root.join(format!("{name}-work")));
            let _ = std::fs::remove_dir_all(&out);
            std::fs::create_dir_all(&out).unwrap();
            let params = &p.stage(name).unwrap().params;
            let ctx = StageContext { name, params, inputs, out: &out, work: &work, memo: &work, threads: 2, progress: &NoProgress, cancel };
            stage.run(&ctx).map(|()| out)
        };
        let videos = run(&Videos, "videos", &BTreeMap::new(), &Cancel::new()).unwrap();
        let inputs = BTreeMap::from([("videos".to_owned(), videos)]);
        let cancel = Cancel::new();
        cancel.cancel();
        let e = run(&Frames, "frames", &inputs, &cancel).unwrap_err();
        assert!(Interrupted::is_in(e.as_ref()), "{e}");
        let out = run(&Frames, "frames", &inputs, &Cancel::new()).unwrap();
        assert!(out.join("frames.zarr").is_dir());
        let _ = std::fs::remove_dir_all(&root);
    }

    /// Values that cannot work, or counts too large to be meant, are refused when the pipeline
    /// loads, naming the file, line and parameter, before anything runs.
    #[test]
    fn impossible_sizes_and_counts_are_refused_at_load() {
        let mut r = Registry::new();
        r.register(Videos);
        r.register(Frames);
        let load = |videos: &str, size: &str| {
            let text = format!("[stages.videos]\nkind = \"videos\"\n{videos}\n[stages.frames]\nkind = \"frames\"\ninputs = {{ videos = \"videos\" }}\n{size}\n");
            latte_engine::pipeline::parse(&text, std::path::Path::new("/p/pipeline.toml"), &r, &Default::default())
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        assert_eq!(load("num_videos = 8", "size = 64"), Ok(()));
        let e = load("num_videos = 8", "size = 61").unwrap_err();
        assert!(e.contains("pipeline.toml:7: `stages.frames.size`") && e.contains("`size` is 61") && e.contains("multiple of 8"), "{e}");
        let e = load("num_videos = 99999999999", "size = 64").unwrap_err();
        assert!(e.contains("pipeline.toml:1") && e.contains("num_videos must be 1..=1000000"), "{e}");
        let e = load("max_frames = 10000000", "size = 64").unwrap_err();
        assert!(e.contains("max_frames <= 100000"), "{e}");
    }
}
