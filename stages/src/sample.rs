//! `sample`: draws videos from a trained Latte as the reference's `sample/sample_ddp.py` does
//! (spec latte-reference §5.1) through `latte_sample`, which documents the sampling rules, the
//! seeding invariant and the output folder.
//!
//! Inputs: `train` (`config.json` + `model.safetensors` / `model_raw.safetensors`), or the
//! `checkpoint` parameter naming a weights file (an official `.pt`) with `model`,
//! `num_classes`, `num_frames`, `latent_size`, `scale_factor`; and `vae` (a `vae_train`
//! output), or the `weights` parameter naming a diffusers folder. Output:
//! `samples.zarr/` (latte-store ragged layout, array `samples` uint8 `[total_frames, H, W, 3]`,
//! one entry per sample with id `NNNN` and its class label), `videos/NNNN.mp4` (H.264),
//! `grid.mp4` and `grid.gif` (the first `grid_n` samples tiled).

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use latte_engine::{InputSpec, ParamSpec, ParamType, Params, Progress, Stage, StageContext, StageError};
use latte_model::LatteConfig;
use latte_sample::{parse_method, sample_to_dir, vae_folder, ModelSource, SampleOptions, SampleProgress};

pub struct Sample;

const PARAMS: &[ParamSpec] = &[
    ParamSpec { name: "n", ty: ParamType::Int, default: Some("16"), help: "number of videos (2048 for FVD in the paper)" },
    ParamSpec { name: "batch_size", ty: ParamType::Int, default: Some("2"), help: "videos denoised at once (bounds memory; does not change the results)" },
    ParamSpec { name: "method", ty: ParamType::Str, default: Some("\"ddpm\""), help: "\"ddpm\" (ancestral, the reference) or \"ddim\"" },
    ParamSpec { name: "steps", ty: ParamType::Int, default: Some("250"), help: "uniformly respaced sampling steps (1-1000)" },
    ParamSpec { name: "eta", ty: ParamType::Float, default: Some("0.0"), help: "DDIM noise scale (0 = deterministic)" },
    ParamSpec { name: "cfg_scale", ty: ParamType::Float, default: Some("1.0"), help: "classifier-free guidance scale; 1.0 = none (7.0 for UCF101 in the paper)" },
    ParamSpec { name: "use_ema", ty: ParamType::Bool, default: Some("true"), help: "sample with the EMA weights (model.safetensors); false = the raw weights" },
    ParamSpec { name: "seed", ty: ParamType::Int, default: Some("0"), help: "sample i draws its class and noise from the ChaCha8 stream (seed, i)" },
    ParamSpec { name: "fps", ty: ParamType::Int, default: Some("8"), help: "frame rate of the written mp4 and GIF files" },
    ParamSpec { name: "grid_n", ty: ParamType::Int, default: Some("16"), help: "samples tiled into grid.mp4 / grid.gif (the first ones)" },
    ParamSpec { name: "decode_batch", ty: ParamType::Int, default: Some("16"), help: "frames decoded by the VAE at once (bounds memory)" },
    crate::DEVICE,
    ParamSpec {
        name: "precision",
        ty: ParamType::Str,
        default: Some("\"f32\""),
        help: "compute dtype of the network: \"f32\", \"f16\" (the reference samples in fp16) or \"bf16\"; the diffusion arithmetic stays f32",
    },
    ParamSpec {
        name: "weights",
        ty: ParamType::Path,
        default: Some("\"\""),
        help: "a diffusers AutoencoderKL folder (e.g. Stable Diffusion's sd-vae-ft-ema); empty = the `vae` input",
    },
    ParamSpec {
        name: "checkpoint",
        ty: ParamType::Path,
        default: Some("\"\""),
        help: "a Latte weights file instead of the `train` input: an official checkpoint (.pt, EMA weights) or a .safetensors under the reference's key names",
    },
    ParamSpec { name: "model", ty: ParamType::Str, default: Some("\"Latte-XL/2\""), help: "with `checkpoint`: the model preset `Latte-{S,B,L,XL}/{2,4,8}`" },
    ParamSpec { name: "num_classes", ty: ParamType::Int, default: Some("0"), help: "with `checkpoint`: 0 = unconditional, 101 for UCF101" },
    ParamSpec { name: "num_frames", ty: ParamType::Int, default: Some("16"), help: "with `checkpoint`: frames per video" },
    ParamSpec { name: "latent_size", ty: ParamType::Int, default: Some("32"), help: "with `checkpoint`: latent side (32 for 256×256 with SD's VAE)" },
    ParamSpec { name: "scale_factor", ty: ParamType::Float, default: Some("0.18215"), help: "with `checkpoint`: the latent scale factor the model was trained at" },
];

const INPUTS: &[InputSpec] = &[
    InputSpec {
        name: "train",
        required: false,
        help: "the `train` stage (config.json, model.safetensors); not needed when `checkpoint` is set",
    },
    InputSpec { name: "vae", required: false, help: "a `vae_train` stage (vae/); not needed when `weights` is set" },
];

/// The stage's parameters as sampling options.
pub(crate) fn options(p: &Params) -> anyhow::Result<SampleOptions> {
    let e = |e: StageError| anyhow!("{e}");
    let fps = p.usize("fps").map_err(e)?;
    Ok(SampleOptions {
        n: p.usize("n").map_err(e)?,
        batch_size: p.usize("batch_size").map_err(e)?,
        method: parse_method(p.str("method").map_err(e)?, p.float("eta").map_err(e)?)?,
        steps: p.usize("steps").map_err(e)?,
        cfg_scale: p.float("cfg_scale").map_err(e)?,
        use_ema: p.bool("use_ema").map_err(e)?,
        seed: p.u64("seed").map_err(e)?,
        fps: u32::try_from(fps).map_err(|_| anyhow!("parameter `fps` is {fps}; use 1 to 1000"))?,
        grid_n: p.usize("grid_n").map_err(e)?,
        decode_batch: p.usize("decode_batch").map_err(e)?,
        device: p.str("device").map_err(e)?.to_owned(),
        precision: p.str("precision").map_err(e)?.to_owned(),
    })
}

/// A stage's progress as the sampling loop reports it.
pub(crate) struct StageProgress<'a>(pub(crate) &'a dyn Progress);

impl SampleProgress for StageProgress<'_> {
    fn begin(&self, total_steps: u64, line: &str) {
        self.0.set_length(total_steps);
        self.0.log(line);
    }
    fn step(&self) {
        self.0.inc(1);
    }
}

impl Stage for Sample {
    fn kind(&self) -> &'static str {
        "sample"
    }

    fn version(&self) -> &'static str {
        // 2: H.264 without x264's lookahead (byte-reproducible encodes)
        // 3: `device` and `precision` parameters; samples.zarr records the precision
        "3"
    }

    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }

    fn inputs(&self) -> &'static [InputSpec] {
        INPUTS
    }

    fn validate(&self, params: &Params) -> Result<(), String> {
        let opts = options(params).map_err(|e| e.to_string())?;
        opts.validate().map_err(|e| format!("{:#}", anyhow::Error::from(e)))?;
        file_config(params).map(|_| ()).map_err(|e| format!("{e:#}"))
    }

    fn run(&self, ctx: &StageContext<'_>) -> Result<(), StageError> {
        let opts = options(ctx.params)?;
        let source = model_source(ctx)?;
        let vae = vae_dir(ctx)?;
        // Stops between two denoising steps once the run is cancelled.
        let progress = crate::cancel::Stopping { inner: ctx.progress, cancel: ctx.cancel };
        let report = crate::cancel::stoppable(|| sample_to_dir(&source, &vae, ctx.out, &opts, &StageProgress(&progress)))?
            .map_err(|e| crate::stage_error(e.into()))?;
        ctx.progress.log(&format!("sample: {} videos of {} frames at {}×{}", report.n, report.frames, report.height, report.width));
        Ok(())
    }
}

/// The model configuration the `checkpoint` parameter's file is read with.
fn file_config(p: &Params) -> anyhow::Result<(LatteConfig, f64)> {
    let e = |e: StageError| anyhow!("{e}");
    let mut cfg = LatteConfig::preset(p.str("model").map_err(e)?).context("parameter `model`")?;
    cfg.num_classes = Some(p.usize("num_classes").map_err(e)?).filter(|&k| k > 0);
    cfg.num_frames = p.usize("num_frames").map_err(e)?;
    cfg.input_size = p.usize("latent_size").map_err(e)?;
    cfg.validate().context("parameters `model`, `num_classes`, `num_frames`, `latent_size`")?;
    let scale = p.float("scale_factor").map_err(e)?;
    if !(scale.is_finite() && scale > 0.0) {
        bail!("parameter `scale_factor` is {scale}; use a positive number (0.18215 for SD's VAE)");
    }
    Ok((cfg, scale))
}

fn model_source(ctx: &StageContext<'_>) -> anyhow::Result<ModelSource> {
    if let Some(path) = ctx.params.opt_str("checkpoint").map_err(|e| anyhow!("{e}"))? {
        let (config, scale_factor) = file_config(ctx.params)?;
        return Ok(ModelSource::File { path: PathBuf::from(path), config, scale_factor });
    }
    match ctx.inputs.get("train") {
        Some(dir) => Ok(ModelSource::TrainDir(dir.clone())),
        None => {
            bail!("stage `{}` needs a model: bind the `train` input to a train stage or set `checkpoint` to a Latte weights file", ctx.name)
        }
    }
}

fn vae_dir(ctx: &StageContext<'_>) -> anyhow::Result<PathBuf> {
    if let Some(path) = ctx.params.opt_str("weights").map_err(|e| anyhow!("{e}"))? {
        return Ok(PathBuf::from(path));
    }
    match ctx.inputs.get("vae") {
        Some(dir) => Ok(vae_folder(dir)),
        None => bail!(
            "stage `{}` needs a VAE: bind the `vae` input to a vae_train stage or set `weights` to a diffusers AutoencoderKL folder",
            ctx.name
        ),
    }
}

#[cfg(test)]
mod tests {
    //! The stage from a pipeline text: its files, cancellation, and parameters refused when the
    //! pipeline loads (crates/sample/tests has the sampling itself).

    use std::collections::BTreeMap;
    use std::path::Path;

    use latte_engine::{Cancel, Interrupted, Registry};
    use latte_model::burn::tensor::Device;
    use latte_model::Latte;
    use latte_train::TrainOutputConfig;
    use latte_vae::{AutoencoderKL, VaeConfig};

    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("latte-sample-stage-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A `train` output holding a tiny unconditional Latte.
    fn train_dir(root: &Path) -> PathBuf {
        let dir = root.join("train");
        std::fs::create_dir_all(&dir).unwrap();
        let mut model = LatteConfig::preset("Latte-S/2").unwrap();
        (model.input_size, model.hidden_size, model.depth, model.num_heads, model.num_frames, model.num_classes) = (8, 32, 2, 2, 3, None);
        let latte = Latte::new(&model, &Device::flex(), 0).unwrap();
        for f in ["model.safetensors", "model_raw.safetensors"] {
            latte.save_safetensors(&dir.join(f)).unwrap();
        }
        let latents =
            latte_train::LatentsInfo { dataset: "test".into(), latent_shape: [4, 8, 8], num_classes: None, scale_factor: 0.18215 };
        TrainOutputConfig::new(model, latents).write(&dir).unwrap();
        dir
    }

    /// A `vae_train`-shaped output (`vae/`) with a random two-level VAE (8×8 latents → 16×16).
    fn vae_dir(root: &Path) -> PathBuf {
        let dir = root.join("vae_train");
        let cfg = VaeConfig::new(vec![8, 16], 1, 4, 4);
        let vae = AutoencoderKL::init(&cfg, 0, &Device::flex()).unwrap();
        latte_vae::save_pretrained(&vae, &cfg, &dir.join("vae")).unwrap();
        dir
    }

    /// Stands in for an upstream kind so that a pipeline text can bind the input slots.
    struct Upstream(&'static str);
    impl Stage for Upstream {
        fn kind(&self) -> &'static str {
            self.0
        }
        fn version(&self) -> &'static str {
            "0"
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

    fn params(root: &Path, extra: &str) -> Result<Params, String> {
        let mut r = Registry::new();
        r.register(Upstream("train"));
        r.register(Upstream("vae_train"));
        r.register(Sample);
        let text = format!(
            "[stages.train]\nkind = \"train\"\n[stages.vae]\nkind = \"vae_train\"\n\
             [stages.sample]\nkind = \"sample\"\ninputs = {{ train = \"train\", vae = \"vae\" }}\n{extra}\n"
        );
        let p = latte_engine::pipeline::parse(&text, &root.join("pipeline.toml"), &r, &Default::default()).map_err(|e| format!("{e}"))?;
        let params = p.stage("sample").unwrap().params.clone();
        Sample.validate(&params)?;
        Ok(params)
    }

    #[test]
    fn the_stage_runs_from_a_pipeline_and_rejects_bad_input() {
        let root = tmp("stage");
        let (train, vae) = (train_dir(&root), vae_dir(&root));
        let p = params(&root, "n = 2\nbatch_size = 2\nsteps = 3\ngrid_n = 1").unwrap();
        let out = root.join("out");
        std::fs::create_dir_all(&out).unwrap();
        let inputs = BTreeMap::from([("train".to_string(), train.clone()), ("vae".to_string(), vae.clone())]);
        let never = Cancel::new();
        crate::testing::run_stage(&Sample, &p, &inputs, &out, &never).unwrap();
        for f in ["videos/0000.mp4", "videos/0001.mp4", "grid.mp4", "grid.gif", "samples.zarr/zarr.json"] {
            assert!(out.join(f).is_file(), "{f} is missing");
        }
        // A cancelled run stops at its first denoising step: `Interrupted`, no videos.
        let cancelled = Cancel::new();
        cancelled.cancel();
        let out_c = root.join("out_cancelled");
        std::fs::create_dir_all(&out_c).unwrap();
        let e = crate::testing::run_stage(&Sample, &p, &inputs, &out_c, &cancelled).unwrap_err();
        assert!(Interrupted::is_in(e.as_ref()), "{e}");
        assert!(!out_c.join("videos/0000.mp4").exists());

        for (extra, key) in [
            ("method = \"euler\"", "method"),
            ("steps = 0", "steps"),
            ("steps = 1001", "steps"),
            ("eta = -1.0", "eta"),
            ("n = 0", "n"),
            ("fps = 0", "fps"),
        ] {
            let e = params(&root, extra).unwrap_err();
            assert!(e.contains(key), "{extra}: {e}");
        }
        // Neither a `train` input nor `checkpoint`: the stage says how to give it a model.
        let no_model = BTreeMap::from([("vae".to_string(), vae.clone())]);
        let out2 = root.join("out2");
        std::fs::create_dir_all(&out2).unwrap();
        let e = crate::testing::run_stage(&Sample, &p, &no_model, &out2, &never).unwrap_err().to_string();
        assert!(e.contains("`train`") && e.contains("`checkpoint`"), "{e}");
        std::fs::write(root.join("w.pt"), b"").unwrap();
        let e = params(&root, "checkpoint = \"w.pt\"\nmodel = \"Latte-M/2\"").unwrap_err();
        assert!(e.contains("model"), "{e}");
        let _ = std::fs::remove_dir_all(&root);
    }
}
