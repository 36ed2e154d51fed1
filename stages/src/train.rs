//! `train`: trains a Latte on the cached latents with the reference's recipe (`latte-train`).
//!
//! Output: `model.safetensors` (EMA weights under the reference's key names: what sampling
//! loads), `model_raw.safetensors` (the raw weights), `config.json` (`model`: the LatteConfig,
//! `train`: the TrainConfig, `latents`: scale factor, latent shape, classes, dataset),
//! `checkpoints/` (the newest checkpoints, resumable), `loss.jsonl`, `loss.png`.
//!
//! While it trains, checkpoints (every `checkpoint_every` steps, atomic) and the loss log live
//! in the engine's scratch directory of this cache key (`StageContext::work`), or in
//! `resume_dir` when set: a run that is interrupted (error, Ctrl-C, kill, power loss) is
//! resumed bit-identically from its newest complete checkpoint by the next run of the same
//! configuration. On Ctrl-C or SIGTERM (the run's cancel token) the stage finishes the step it
//! is in, writes a checkpoint of it and returns `Interrupted`, so nothing since the last
//! scheduled checkpoint is lost.

use std::ops::ControlFlow;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use latte_engine::{InputSpec, Interrupted, ParamSpec, ParamType, Params, Stage, StageContext, StageError};
use latte_fit::{FitError, FitOptions, PRECISIONS};
use latte_model::{Conditioning, LatteConfig, PatchEmbedKind, TemporalPos};
use latte_train::{LrDecay, RunPaths, StepLog, TrainConfig, TrainError};

pub struct Train;

const PARAMS: &[ParamSpec] = &[
    ParamSpec { name: "model", ty: ParamType::Str, default: Some("\"Latte-S/2\""), help: "model preset `Latte-{S,B,L,XL}/{2,4,8}`" },
    ParamSpec { name: "depth", ty: ParamType::Int, default: Some("0"), help: "number of blocks; 0 = the preset's" },
    ParamSpec { name: "hidden_size", ty: ParamType::Int, default: Some("0"), help: "token width; 0 = the preset's" },
    ParamSpec { name: "num_heads", ty: ParamType::Int, default: Some("0"), help: "attention heads; 0 = the preset's" },
    ParamSpec { name: "patch_size", ty: ParamType::Int, default: Some("0"), help: "patch side; 0 = the preset's" },
    ParamSpec { name: "variant", ty: ParamType::Int, default: Some("1"), help: "Latte variant 1-4 (the released code has 1)" },
    ParamSpec { name: "conditioning", ty: ParamType::Str, default: Some("\"adaln\""), help: "\"adaln\" (S-AdaLN, the reference) or \"tokens\"" },
    ParamSpec { name: "temporal_pos", ty: ParamType::Str, default: Some("\"absolute\""), help: "\"absolute\" (the reference) or \"rope\"" },
    ParamSpec { name: "tubelet_stride", ty: ParamType::Int, default: Some("0"), help: "0 = uniform per-frame patches (the reference); s > 0 = tubelets of s frames" },
    ParamSpec { name: "conditional", ty: ParamType::Bool, default: Some("true"), help: "condition on class labels when the data set has them" },
    ParamSpec { name: "class_dropout_prob", ty: ParamType::Float, default: Some("0.1"), help: "label dropout for classifier-free guidance" },
    ParamSpec { name: "num_frames", ty: ParamType::Int, default: Some("16"), help: "frames per training clip" },
    ParamSpec { name: "frame_interval", ty: ParamType::Int, default: Some("3"), help: "frame stride of the clip window" },
    ParamSpec { name: "image_frames", ty: ParamType::Int, default: Some("0"), help: "extra independent image frames per clip (joint training; LatteIMG uses 8)" },
    ParamSpec { name: "steps", ty: ParamType::Int, default: Some("2000"), help: "optimizer steps" },
    ParamSpec { name: "batch_size", ty: ParamType::Int, default: Some("5"), help: "clips per micro-batch" },
    ParamSpec { name: "grad_accum", ty: ParamType::Int, default: Some("1"), help: "micro-batches per optimizer step" },
    ParamSpec { name: "lr", ty: ParamType::Float, default: Some("1e-4"), help: "AdamW learning rate (peak, with `lr_decay`)" },
    ParamSpec { name: "warmup_steps", ty: ParamType::Int, default: Some("0"), help: "linear learning-rate warm-up steps" },
    ParamSpec {
        name: "lr_decay",
        ty: ParamType::Str,
        default: Some("\"constant\""),
        help: "after the warm-up: \"constant\" (the reference) or \"cosine\" [ours], half a cosine from lr to 0 at the last step",
    },
    ParamSpec { name: "weight_decay", ty: ParamType::Float, default: Some("0.0"), help: "AdamW weight decay" },
    ParamSpec { name: "beta1", ty: ParamType::Float, default: Some("0.9"), help: "AdamW beta1" },
    ParamSpec { name: "beta2", ty: ParamType::Float, default: Some("0.999"), help: "AdamW beta2" },
    ParamSpec { name: "eps", ty: ParamType::Float, default: Some("1e-8"), help: "AdamW epsilon" },
    ParamSpec { name: "ema_decay", ty: ParamType::Float, default: Some("0.9999"), help: "EMA decay per step (short runs need less, e.g. 0.995)" },
    ParamSpec { name: "clip_max_norm", ty: ParamType::Float, default: Some("0.1"), help: "global gradient-norm limit" },
    ParamSpec { name: "clip_from_step", ty: ParamType::Int, default: Some("-1"), help: "first step that clips gradients; -1 = never" },
    ParamSpec {
        name: "min_snr_gamma",
        ty: ParamType::Float,
        default: Some("0.0"),
        help: "min-SNR-γ loss weighting [ours]: each clip's ε-MSE weighted by min(SNR(t), γ)/SNR(t) (Hang et al. 2023 use γ = 5); 0 = uniform, as the reference",
    },
    ParamSpec { name: "seed", ty: ParamType::Int, default: Some("3407"), help: "model initialisation seed" },
    ParamSpec { name: "data_seed", ty: ParamType::Int, default: Some("3407"), help: "seed of clip order, windows, flips, posterior samples, timesteps and noise" },
    ParamSpec { name: "checkpoint_every", ty: ParamType::Int, default: Some("500"), help: "checkpoint interval in steps" },
    ParamSpec { name: "keep_checkpoints", ty: ParamType::Int, default: Some("2"), help: "newest checkpoints kept" },
    crate::DEVICE,
    ParamSpec {
        name: "precision",
        ty: ParamType::Str,
        default: Some("\"f32\""),
        help: "\"f32\" (the reference, fp32/TF32) or \"bf16\" (bf16 compute, f32 weights, optimizer state and loss; Open-Sora's Latte recipe)",
    },
    ParamSpec {
        name: "ranks",
        ty: ParamType::Int,
        default: Some("1"),
        help: "data-parallel ranks on the CPU: threads that each train on batch_size/ranks clips of every micro-batch with an equal share of the stage's threads, gradients summed each step; 2 on a 2-core machine trains the default's small model about 1.2× faster (the weights equal 1 rank's up to float rounding)",
    },
    ParamSpec { name: "loader_threads", ty: ParamType::Int, default: Some("1"), help: "threads preparing batches ahead of the model (more for a GPU on large clips; changes no value)" },
    ParamSpec {
        name: "checkpointing",
        ty: ParamType::Bool,
        default: Some("false"),
        help: "gradient checkpointing: recompute cheap activations in the backward pass instead of keeping them (less memory, more compute; same results)",
    },
    ParamSpec {
        name: "resume_dir",
        ty: ParamType::Str,
        default: Some("\"\""),
        help: "a folder outside the store for checkpoints and the loss log, resumed from when it holds a checkpoint (also by a run with other parameters, e.g. more steps); empty = the engine's scratch directory of this configuration, so rerunning after an interruption resumes",
    },
];

const INPUTS: &[InputSpec] = &[InputSpec { name: "latents", required: true, help: "the `latents` stage (latents.zarr)" }];

impl Stage for Train {
    fn kind(&self) -> &'static str {
        "train"
    }

    fn version(&self) -> &'static str {
        // 2: loss.jsonl no longer records wall times (outputs are a function of the key)
        // 3: device / precision / checkpointing parameters, recorded in config.json
        "3"
    }

    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }

    fn unkeyed_defaults(&self) -> &'static [&'static str] {
        // added after version 3's outputs were cached (the ablation grids' hours of training)
        &["min_snr_gamma", "lr_decay", "ranks"]
    }

    fn inputs(&self) -> &'static [InputSpec] {
        INPUTS
    }

    fn validate(&self, params: &Params) -> Result<(), String> {
        let s = |e: StageError| e.to_string();
        let cfg = train_config(params).map_err(|e| e.to_string())?;
        cfg.validate().map_err(|e| e.to_string())?;
        let mut model = model_config(params).map_err(|e| e.to_string())?;
        // The latent side and classes come from the store; check the rest now.
        model.num_frames = cfg.num_frames;
        model.validate().map_err(|e| format!("model: {e}"))?;
        if params.usize("frame_interval").map_err(s)? == 0 {
            return Err("parameter `frame_interval` must be at least 1".into());
        }
        let device = crate::device_spec(params)?;
        crate::precision(params, "precision", PRECISIONS)?;
        let ranks = params.usize("ranks").map_err(s)?;
        if ranks == 0 || !cfg.batch_size.is_multiple_of(ranks) {
            return Err(format!("parameter `ranks` = {ranks} must be at least 1 and divide `batch_size` = {}", cfg.batch_size));
        }
        if ranks > 1 && device.kind != latte_nn::device::DeviceKind::Cpu {
            return Err(format!(
                "parameter `ranks` = {ranks} is for the CPU; with `device = \"{}\"` set `ranks = 1` (list several GPUs in `device` instead)",
                params.str("device").map_err(s)?
            ));
        }
        Ok(())
    }

    fn run(&self, ctx: &StageContext<'_>) -> Result<(), StageError> {
        run(ctx).map_err(crate::stage_error)
    }
}

fn err(e: StageError) -> anyhow::Error {
    anyhow!("{e}")
}

fn train_config(p: &Params) -> anyhow::Result<TrainConfig> {
    let clip_from = p.int("clip_from_step").map_err(err)?;
    Ok(TrainConfig {
        steps: p.u64("steps").map_err(err)?,
        batch_size: p.usize("batch_size").map_err(err)?,
        grad_accum: p.usize("grad_accum").map_err(err)?,
        num_frames: p.usize("num_frames").map_err(err)?,
        image_frames: p.usize("image_frames").map_err(err)?,
        lr: p.float("lr").map_err(err)?,
        warmup_steps: p.u64("warmup_steps").map_err(err)?,
        lr_decay: lr_decay(p)?,
        weight_decay: p.float("weight_decay").map_err(err)?,
        beta1: p.float("beta1").map_err(err)?,
        beta2: p.float("beta2").map_err(err)?,
        eps: p.float("eps").map_err(err)?,
        ema_decay: p.float("ema_decay").map_err(err)?,
        clip_max_norm: p.float("clip_max_norm").map_err(err)?,
        clip_from_step: u64::try_from(clip_from).ok(),
        class_dropout_prob: p.float("class_dropout_prob").map_err(err)?,
        data_seed: p.u64("data_seed").map_err(err)?,
        checkpoint_every: p.u64("checkpoint_every").map_err(err)?,
        keep_checkpoints: p.usize("keep_checkpoints").map_err(err)?,
        loader_threads: p.usize("loader_threads").map_err(err)?.clamp(1, 64),
        min_snr_gamma: p.float("min_snr_gamma").map_err(err)?,
        ..TrainConfig::default()
    })
}

fn lr_decay(p: &Params) -> anyhow::Result<LrDecay> {
    let name = p.str("lr_decay").map_err(err)?;
    LrDecay::parse(name).ok_or_else(|| anyhow!("parameter `lr_decay`: unknown schedule {name:?}; use \"constant\" or \"cosine\""))
}

/// The preset with the overrides applied (latent size, frames and classes are set later).
fn model_config(p: &Params) -> anyhow::Result<LatteConfig> {
    let mut cfg = LatteConfig::preset(p.str("model").map_err(err)?).context("parameter `model`")?;
    for (key, field) in [
        ("depth", &mut cfg.depth),
        ("hidden_size", &mut cfg.hidden_size),
        ("num_heads", &mut cfg.num_heads),
        ("patch_size", &mut cfg.patch_size),
    ] {
        let v = p.usize(key).map_err(err)?;
        if v > 0 {
            *field = v;
        }
    }
    cfg.variant = u8::try_from(p.int("variant").map_err(err)?)
        .ok()
        .and_then(|v| latte_model::Variant::try_from(v).ok())
        .ok_or_else(|| anyhow!("parameter `variant` must be 1-4"))?;
    cfg.conditioning = match p.str("conditioning").map_err(err)? {
        "adaln" => Conditioning::Adaln,
        "tokens" => Conditioning::Tokens,
        other => bail!("parameter `conditioning` is \"{other}\"; use \"adaln\" or \"tokens\""),
    };
    cfg.temporal_pos = match p.str("temporal_pos").map_err(err)? {
        "absolute" => TemporalPos::Absolute,
        "rope" => TemporalPos::Rope,
        other => bail!("parameter `temporal_pos` is \"{other}\"; use \"absolute\" or \"rope\""),
    };
    cfg.patch_embed = match p.usize("tubelet_stride").map_err(err)? {
        0 => PatchEmbedKind::Uniform,
        stride => PatchEmbedKind::Tubelet { stride },
    };
    cfg.class_dropout_prob = p.float("class_dropout_prob").map_err(err)?;
    // The hybrid loss needs the learned variance channels.
    cfg.learn_sigma = true;
    Ok(cfg)
}

fn run(ctx: &StageContext<'_>) -> anyhow::Result<()> {
    let p = ctx.params;
    let opts = FitOptions {
        model: model_config(p)?,
        train: train_config(p)?,
        frame_interval: p.usize("frame_interval").map_err(err)?,
        conditional: p.bool("conditional").map_err(err)?,
        device: p.str("device").map_err(err)?.to_owned(),
        precision: p.str("precision").map_err(err)?.to_owned(),
        checkpointing: p.bool("checkpointing").map_err(err)?,
        ranks: p.usize("ranks").map_err(err)?,
        seed: p.u64("seed").map_err(err)?,
    };
    let store_dir = ctx.input("latents").map_err(err)?.join("latents.zarr");
    // Checkpoints and the loss log live where a killed run leaves them: the engine's scratch
    // directory for this cache key (a rerun of the same configuration resumes; any other
    // configuration has another key, hence another directory), or `resume_dir` when set.
    let resume_dir = p.str("resume_dir").map_err(err)?;
    let run_dir = if resume_dir.is_empty() { ctx.work.to_owned() } else { PathBuf::from(resume_dir) };
    let paths = RunPaths { plot: ctx.out.join("loss.png"), ..RunPaths::in_dir(&run_dir) };
    ctx.progress.set_length(opts.train.steps);
    let mut shown = 0u64;
    let on_step = |l: &StepLog| {
        ctx.progress.inc(l.step.saturating_sub(shown));
        shown = l.step;
        ctx.progress.set_message(&format!("loss {:.4} (mse {:.4}, vb {:.4}), {:.2} it/s", l.loss, l.mse, l.vb, 1.0 / l.secs));
        if ctx.cancelled() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    let log = |line: &str| ctx.progress.log(&format!("train: {line}"));
    let fitted = latte_fit::fit(&store_dir, &opts, &paths, log, on_step).map_err(|e| match e {
        FitError::Train(e @ TrainError::Interrupted { .. }) => {
            ctx.progress.log(&format!("train: {e}"));
            anyhow::Error::new(Interrupted).context(e.to_string())
        }
        FitError::Train(e @ TrainError::Checkpoint { .. }) if resume_dir.is_empty() => anyhow::Error::new(e).context(format!(
            "stage `{}` cannot resume the interrupted run kept in {}; rerun with `cargo xtask run --stage {} --force` \
             to train this configuration from scratch",
            ctx.name,
            ctx.work.display(),
            ctx.name
        )),
        e => e.into(),
    })?;
    fitted.write(ctx.out, &paths)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The stage end to end on a tiny latents store: outputs per the contract, EMA weights
    //! loadable by the model, and a second run resuming from `resume_dir`.

    use std::collections::BTreeMap;
    use std::path::Path;
    use std::sync::Arc;

    use latte_engine::{Cancel, NoProgress, Registry};
    use latte_model::burn::tensor::Device;
    use latte_model::Latte;
    use latte_store::{ArraySpec, GroupInfo, LatentsAttrs, RaggedWriter};

    use super::*;

    /// Stands in for the `latents` kind so that a pipeline text can bind the input slot.
    struct Upstream;
    impl Stage for Upstream {
        fn kind(&self) -> &'static str {
            "latents"
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
        fn run(&self, ctx: &StageContext<'_>) -> Result<(), StageError> {
            write_latents(ctx.out);
            Ok(())
        }
    }

    fn write_latents(dir: &Path) {
        let mut w = RaggedWriter::create(&dir.join("latents.zarr")).unwrap();
        for name in ["mean", "logvar"] {
            w.add_array::<f32>(&ArraySpec::new(name, &[2], &[4, 4, 4])).unwrap();
        }
        for (v, n) in [6usize, 7, 2].into_iter().enumerate() {
            let len = 2 * n * 64;
            let mean: Vec<f32> = (0..len).map(|i| ((i * 37 + v * 11) % 101) as f32 / 50.0 - 1.0).collect();
            w.append("mean", &mean).unwrap();
            w.append("logvar", &vec![-4.0f32; len]).unwrap();
            w.end_video(&format!("v{v}"), Some(v as u32 % 2)).unwrap();
        }
        let mut extra = serde_json::Map::new();
        let attrs = LatentsAttrs {
            scale_factor: 0.18215,
            vae_digest: "test".into(),
            dtype: "float32".into(),
            latent_shape: [4, 4, 4],
            downsample_factor: 8,
        };
        attrs.insert_into(&mut extra);
        w.finish(GroupInfo { dataset: "test".into(), num_classes: Some(2), window: latte_store::WindowRule::Stride, flip: true, extra })
            .unwrap();
    }

    fn params(root: &Path, steps: u64, resume: &Path) -> Params {
        try_params(root, steps, resume, "").unwrap()
    }

    /// The tiny training stage's parameters, with `extra` lines appended to its table.
    fn try_params(root: &Path, steps: u64, resume: &Path, extra: &str) -> Result<Params, String> {
        let mut r = Registry::new();
        r.register(Upstream);
        r.register(Train);
        let text = format!(
            "[stages.latents]\nkind = \"latents\"\n[stages.train]\nkind = \"train\"\ninputs = {{ latents = \"latents\" }}\n\
             depth = 2\nhidden_size = 32\nnum_heads = 2\nnum_frames = 3\nframe_interval = 2\nsteps = {steps}\n\
             batch_size = 2\ncheckpoint_every = 2\nema_decay = 0.9\nlr = 1e-3\nresume_dir = \"{}\"\n{extra}",
            resume.display()
        );
        let p = latte_engine::pipeline::parse(&text, &root.join("pipeline.toml"), &r, &Default::default()).map_err(|e| e.to_string())?;
        Ok(p.stage("train").unwrap().params.clone())
    }

    /// Trains the tiny model 3 steps with `extra` parameters; returns the logged losses and the
    /// raw weights.
    fn train_with(root: &Path, name: &str, extra: &str) -> (Vec<f64>, Vec<f32>) {
        let (input, out) = (root.join("in"), root.join(name));
        let inputs = BTreeMap::from([("latents".to_string(), input)]);
        let p = try_params(root, 3, Path::new(""), extra).unwrap();
        Train.validate(&p).unwrap();
        crate::testing::run_stage(&Train, &p, &inputs, &out, &Cancel::new()).unwrap_or_else(|e| panic!("{extra}: {e}"));
        let losses = latte_train::read_log(&out.join("loss.jsonl")).unwrap().iter().map(|l| l.loss).collect();
        let weights = latte_nn::host::read_safetensors(&out.join("model_raw.safetensors")).unwrap();
        let flat = weights.values().flat_map(|t| t.as_f32().unwrap().to_vec()).collect();
        (losses, flat)
    }

    fn rel_diff(a: &[f64], b: &[f64]) -> f64 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| (x - y).abs() / x.abs().max(1e-12)).fold(0.0, f64::max)
    }

    /// The same 3 steps on the CPU with gradient checkpointing, on the wgpu backend (Mesa's
    /// software renderer on CI), and in bf16: checkpointing changes nothing, wgpu only float
    /// rounding, bf16 a little more; each records what it ran with.
    #[test]
    fn devices_precision_and_checkpointing_train_the_same_model() {
        let root = tempfile_dir("devices");
        std::fs::create_dir_all(root.join("in")).unwrap();
        write_latents(&root.join("in"));
        let (cpu_loss, cpu_w) = train_with(&root, "cpu", "");
        let (ckpt_loss, ckpt_w) = train_with(&root, "ckpt", "checkpointing = true\n");
        assert_eq!(cpu_loss, ckpt_loss, "gradient checkpointing changed the losses");
        let d = latte_nn::host::max_abs_diff(&cpu_w, &ckpt_w);
        assert!(d <= 1e-6, "gradient checkpointing changed the weights by {d:e}");

        let (gpu_loss, gpu_w) = train_with(&root, "wgpu", "device = \"wgpu\"\n");
        let (dl, dw) = (rel_diff(&cpu_loss, &gpu_loss), latte_nn::host::max_abs_diff(&cpu_w, &gpu_w));
        println!("wgpu vs cpu: losses {dl:e} relative, weights {dw:e}");
        assert!(dl <= 1e-4 && dw <= 1e-4, "wgpu: losses {dl:e}, weights {dw:e}");

        let (bf_loss, bf_w) = train_with(&root, "bf16", "precision = \"bf16\"\n");
        let dl = rel_diff(&cpu_loss, &bf_loss);
        println!("bf16 vs f32: losses {dl:e} relative");
        assert!(dl > 1e-7 && dl <= 5e-2, "bf16 losses differ from f32 by {dl:e}");
        assert!(bf_w.iter().all(|v| v.is_finite()));

        let config: serde_json::Value = serde_json::from_slice(&std::fs::read(root.join("bf16/config.json")).unwrap()).unwrap();
        assert_eq!((config["precision"].as_str(), config["device"].as_str()), (Some("bf16"), Some("cpu")));
        let config: serde_json::Value = serde_json::from_slice(&std::fs::read(root.join("wgpu/config.json")).unwrap()).unwrap();
        assert_eq!(config["device"].as_str(), Some("wgpu"));
        let _ = std::fs::remove_dir_all(&root);
    }

    /// Two CPU ranks (`ranks = 2`, one clip each of every batch of 2) train the one-rank model
    /// up to float rounding, the same bits on every run, and `config.json` says so; a rank
    /// count that cannot share the batch, or ranks on a GPU, is refused at load.
    #[test]
    fn two_cpu_ranks_train_the_one_rank_model() {
        let root = tempfile_dir("ranks");
        std::fs::create_dir_all(root.join("in")).unwrap();
        write_latents(&root.join("in"));
        let (one_loss, one_w) = train_with(&root, "one", "");
        let (two_loss, two_w) = latte_nn::threads::on_threads(Some(2), || train_with(&root, "two", "ranks = 2\n"));
        let (again_loss, again_w) = latte_nn::threads::on_threads(Some(2), || train_with(&root, "again", "ranks = 2\n"));
        assert_eq!(two_loss, again_loss, "two ranks are not reproducible");
        assert_eq!(two_w, again_w, "two ranks are not reproducible");
        let (dl, dw) = (rel_diff(&one_loss, &two_loss), latte_nn::host::max_abs_diff(&one_w, &two_w));
        println!("2 ranks vs 1: losses {dl:e} relative, weights {dw:e}");
        assert!(dl <= 1e-5 && dw <= 1e-5, "2 ranks: losses {dl:e}, weights {dw:e}");
        let config = |name: &str| -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(root.join(name).join("config.json")).unwrap()).unwrap()
        };
        assert_eq!(config("two")["ranks"].as_u64(), Some(2));
        assert!(config("one").get("ranks").is_none(), "a one-rank output keeps its old config.json");

        let refused = |extra: &str| try_params(&root, 3, Path::new(""), extra).unwrap_err();
        let e = refused("ranks = 3\n");
        assert!(e.contains("`ranks` = 3") && e.contains("`batch_size` = 2"), "{e}");
        let e = refused("ranks = 2\ndevice = \"wgpu\"\n");
        assert!(e.contains("`ranks` = 2 is for the CPU") && e.contains("wgpu"), "{e}");
        let _ = std::fs::remove_dir_all(&root);
    }

    /// Device and precision names are checked when the pipeline loads, before anything runs.
    #[test]
    fn bad_devices_and_precisions_are_refused_at_load() {
        let root = tempfile_dir("bad-device");
        // the engine runs `validate` while it loads the file: the error carries file:line
        let refused = |extra: &str| try_params(&root, 3, Path::new(""), extra).unwrap_err();
        let e = refused("device = \"tpu\"\n");
        assert!(e.contains("`device`") && e.contains("tpu") && e.contains("cuda:N"), "{e}");
        let e = refused("precision = \"f16\"\n");
        assert!(e.contains("`precision`") && e.contains("\"bf16\""), "{e}");
        assert!(e.contains("pipeline.toml:17"), "{e}");
        match try_params(&root, 3, Path::new(""), "device = \"cuda:0\"\n") {
            Ok(_) => assert!(cfg!(feature = "cuda"), "cuda accepted without the feature"),
            Err(e) => assert!(!cfg!(feature = "cuda") && e.contains("--features cuda"), "{e}"),
        }
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn trains_writes_the_contract_and_resumes() {
        let root = std::env::temp_dir().join(format!("latte-train-stage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (input, resume) = (root.join("in"), root.join("resume"));
        std::fs::create_dir_all(&input).unwrap();
        write_latents(&input);
        let inputs = BTreeMap::from([("latents".to_string(), input.clone())]);
        let run_once = |steps: u64, out: &Path| {
            std::fs::create_dir_all(out).unwrap();
            let p = params(&root, steps, &resume);
            Train.validate(&p).unwrap();
            let work = root.join("work");
            let ctx = StageContext {
                name: "train",
                params: &p,
                inputs: &inputs,
                out,
                work: &work,
                memo: &work,
                threads: 1,
                progress: &NoProgress,
                cancel: &Cancel::new(),
            };
            Train.run(&ctx)
        };
        run_once(2, &root.join("out1")).unwrap();
        let out = root.join("out2");
        run_once(3, &out).unwrap();
        for f in
            ["model.safetensors", "model_raw.safetensors", "config.json", "loss.jsonl", "loss.png", "checkpoints/step-00000003/model.bpk"]
        {
            assert!(out.join(f).exists(), "{f} is missing");
        }
        let config: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
        assert_eq!(config["resumed_from"], serde_json::json!(2));
        assert_eq!(config["model"]["num_classes"], serde_json::json!(2));
        assert_eq!(config["model"]["input_size"], serde_json::json!(4));
        // The third video (2 frames) cannot give a 3-frame window at interval 2 and is skipped.
        assert_eq!(latte_train::read_log(&out.join("loss.jsonl")).unwrap().len(), 3);
        let cfg: LatteConfig = serde_json::from_value(config["model"].clone()).unwrap();
        let mut model = Latte::new(&cfg, &Device::flex(), 0).unwrap();
        model.load_safetensors(&out.join("model.safetensors")).unwrap();
        let _ = std::fs::remove_dir_all(&root);
    }

    /// A scratch directory holding an unreadable checkpoint is an error naming it and the way
    /// out, not a silent restart.
    #[test]
    fn an_unusable_checkpoint_in_the_scratch_says_how_to_start_over() {
        let root = tempfile_dir("unusable");
        let (input, out, work) = (root.join("in"), root.join("out"), root.join("work"));
        std::fs::create_dir_all(&input).unwrap();
        std::fs::create_dir_all(&out).unwrap();
        write_latents(&input);
        let step = work.join("checkpoints/step-00000002");
        std::fs::create_dir_all(&step).unwrap();
        std::fs::write(step.join("state.json"), "{ not json").unwrap();
        let inputs = BTreeMap::from([("latents".to_string(), input.clone())]);
        let p = params(&root, 4, Path::new(""));
        let ctx = StageContext {
            name: "train",
            params: &p,
            inputs: &inputs,
            out: &out,
            work: &work,
            memo: &work,
            threads: 1,
            progress: &NoProgress,
            cancel: &Cancel::new(),
        };
        let e = format!("{:#}", anyhow!(Train.run(&ctx).unwrap_err()));
        for want in ["--force", &work.display().to_string(), "state.json"] {
            assert!(e.contains(want), "`{want}` missing from: {e}");
        }
        let _ = std::fs::remove_dir_all(&root);
    }

    /// A tiny training pipeline (5 steps, checkpoints every `every`) run by the engine.
    fn pipeline_text(lr: &str, every: u64) -> String {
        format!(
            "[stages.latents]\nkind = \"latents\"\n[stages.train]\nkind = \"train\"\ninputs = {{ latents = \"latents\" }}\n\
             depth = 2\nhidden_size = 32\nnum_heads = 2\nnum_frames = 3\nframe_interval = 2\nsteps = 5\n\
             batch_size = 2\ncheckpoint_every = {every}\nema_decay = 0.9\nlr = {lr}\n"
        )
    }

    fn run_pipeline(dir: &Path, registry: &Registry, cancel: Option<&Cancel>) -> latte_engine::Result<latte_engine::Report> {
        let pipeline = latte_engine::pipeline::load(&dir.join("pipeline.toml"), registry, &Default::default())?;
        let mut plan = latte_engine::Plan::new(&pipeline, &Default::default())?;
        let options = latte_engine::RunOptions { jobs: 1, observer: &latte_engine::Silent, cancel };
        latte_engine::runner::run(std::slice::from_mut(&mut plan), &options)
    }

    fn real_registry() -> Registry {
        let mut r = Registry::new();
        r.register(Upstream);
        r.register(Train);
        r
    }

    /// The `train` kind (same key) that, once `at` steps are done, says so in `marker` and
    /// waits there: for the SIGKILL the test sends (`Freeze`), or for the run to be cancelled
    /// by the SIGINT it sends (`UntilCancelled`, so the interrupt lands after exactly that step).
    /// If the test is gone, it exits without cleanup rather than train on.
    struct StopAt {
        at: u64,
        marker: PathBuf,
        wait: Wait,
    }

    #[derive(Clone, Copy)]
    enum Wait {
        Freeze,
        UntilCancelled,
    }

    struct Watch<'a> {
        inner: &'a dyn latte_engine::Progress,
        done: std::sync::atomic::AtomicU64,
        stop: &'a StopAt,
        cancel: &'a Cancel,
    }

    impl latte_engine::Progress for Watch<'_> {
        fn set_length(&self, len: u64) {
            self.inner.set_length(len);
        }
        fn inc(&self, delta: u64) {
            let done = self.done.fetch_add(delta, std::sync::atomic::Ordering::SeqCst) + delta;
            if done < self.stop.at || done - delta >= self.stop.at {
                return;
            }
            std::fs::write(&self.stop.marker, done.to_string()).unwrap();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
            while matches!(self.stop.wait, Wait::Freeze) || !self.cancel.is_cancelled() {
                if std::time::Instant::now() > deadline {
                    std::process::exit(3);
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        fn set_message(&self, msg: &str) {
            self.inner.set_message(msg);
        }
        fn log(&self, line: &str) {
            self.inner.log(line);
        }
    }

    impl Stage for StopAt {
        fn kind(&self) -> &'static str {
            Train.kind()
        }
        fn version(&self) -> &'static str {
            Train.version()
        }
        fn params(&self) -> &'static [ParamSpec] {
            Train.params()
        }
        fn unkeyed_defaults(&self) -> &'static [&'static str] {
            Train.unkeyed_defaults()
        }
        fn inputs(&self) -> &'static [InputSpec] {
            Train.inputs()
        }
        fn run(&self, ctx: &StageContext<'_>) -> Result<(), StageError> {
            let watch = Watch { inner: ctx.progress, done: Default::default(), stop: self, cancel: ctx.cancel };
            Train.run(&StageContext { progress: &watch, ..*ctx })
        }
    }

    const CHILD_ENV: &str = "LATTE_TRAIN_FREEZE_DIR";

    /// Issue #6: a run killed with SIGKILL after the checkpoint of step 2 (while at step 3)
    /// loses nothing: the rerun of the same pipeline resumes from step 2 out of the engine's
    /// scratch directory and ends with the same bytes as a run never interrupted; a run with
    /// another configuration does not touch those checkpoints.
    #[test]
    fn a_killed_run_resumes_from_its_last_checkpoint_bit_identically() {
        if let Ok(dir) = std::env::var(CHILD_ENV) {
            // The child: train until step 3 is logged, then freeze.
            let dir = PathBuf::from(dir);
            let mut r = Registry::new();
            r.register(Upstream);
            r.register(StopAt { at: 3, marker: dir.join("frozen"), wait: Wait::Freeze });
            run_pipeline(&dir, &r, None).unwrap();
            panic!("the child was not frozen");
        }
        let killed = tempfile_dir("killed");
        std::fs::write(killed.join("pipeline.toml"), pipeline_text("1e-3", 2)).unwrap();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "train::tests::a_killed_run_resumes_from_its_last_checkpoint_bit_identically",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &killed)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        while !killed.join("frozen").exists() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the child exited ({status}) before reaching step 3");
            }
            assert!(std::time::Instant::now() < deadline, "the child never reached step 3");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child.kill().unwrap(); // SIGKILL on Unix: no cleanup runs
        child.wait().unwrap();

        // What the kill left: no output, the scratch with checkpoint 2 and three logged steps.
        let store = killed.join(".latte");
        let work: Vec<PathBuf> = std::fs::read_dir(store.join("work")).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
        assert_eq!(work.len(), 1, "{work:?}");
        let ckpts = latte_train::checkpoint::list_checkpoints(&work[0].join("checkpoints")).unwrap();
        assert_eq!(ckpts.iter().map(|c| c.0).collect::<Vec<_>>(), vec![2]);
        assert_eq!(latte_train::read_log(&work[0].join("loss.jsonl")).unwrap().len(), 3);
        let train_key = work[0].file_name().unwrap().to_str().unwrap().to_owned();
        assert!(!store.join("out").join(&train_key).exists());

        // Another learning rate is another key: it trains from scratch and leaves the killed
        // configuration's scratch alone.
        std::fs::write(killed.join("pipeline.toml"), pipeline_text("2e-3", 2)).unwrap();
        let report = run_pipeline(&killed, &real_registry(), None).unwrap();
        let other_key = &report.ran.iter().find(|r| r.0 == "train").unwrap().1;
        assert_ne!(other_key, &train_key);
        assert_eq!(train_config_json(&store, other_key)["resumed_from"], serde_json::Value::Null);
        assert!(work[0].join("checkpoints/step-00000002/state.json").is_file());
        assert!(!store.join("work").join(other_key).exists(), "a completed stage's scratch is deleted");

        // The rerun of the killed configuration resumes from step 2.
        std::fs::write(killed.join("pipeline.toml"), pipeline_text("1e-3", 2)).unwrap();
        let report = run_pipeline(&killed, &real_registry(), None).unwrap();
        assert_eq!(report.ran.iter().map(|r| (r.0.as_str(), r.1.as_str())).collect::<Vec<_>>(), vec![("train", train_key.as_str())]);
        let out = store.join("out").join(&train_key);
        assert_eq!(train_config_json(&store, &train_key)["resumed_from"], serde_json::json!(2));
        assert!(!work[0].exists(), "the scratch is deleted once the output is installed");

        // A run never interrupted, in another store.
        let straight = tempfile_dir("straight");
        std::fs::write(straight.join("pipeline.toml"), pipeline_text("1e-3", 2)).unwrap();
        run_pipeline(&straight, &real_registry(), None).unwrap();
        let reference = straight.join(".latte/out").join(&train_key);
        assert_eq!(train_config_json(&straight.join(".latte"), &train_key)["resumed_from"], serde_json::Value::Null);
        for f in ["model.safetensors", "model_raw.safetensors"] {
            let (a, b) = (std::fs::read(out.join(f)).unwrap(), std::fs::read(reference.join(f)).unwrap());
            assert!(a.len() > 10_000 && a == b, "{f}: the resumed run's file differs from the uninterrupted run's");
        }
        // The contract's `checkpoints/`: the newest two (keep_checkpoints = 2), complete.
        let kept = latte_train::checkpoint::list_checkpoints(&out.join("checkpoints")).unwrap();
        assert_eq!(kept.iter().map(|c| c.0).collect::<Vec<_>>(), vec![4, 5]);
        assert!(kept.iter().all(|(_, d)| ["model.bpk", "ema.bpk", "optim.bpk"].iter().all(|f| d.join(f).is_file())));
        let losses = |dir: &Path| -> Vec<(u64, u64)> {
            latte_train::read_log(&dir.join("loss.jsonl")).unwrap().iter().map(|l| (l.step, l.loss.to_bits())).collect()
        };
        assert_eq!(losses(&out), losses(&reference), "the resumed run's loss.jsonl is not the uninterrupted one");
        assert_eq!(losses(&out).len(), 5);
        let _ = std::fs::remove_dir_all(&killed);
        let _ = std::fs::remove_dir_all(&straight);
    }

    const SIGINT_CHILD_ENV: &str = "LATTE_TRAIN_SIGINT_DIR";
    /// The child's exit status when its run returned `Error::Interrupted` (as xtask's).
    const INTERRUPTED_EXIT: i32 = 130;

    /// Issue #15: a run that gets SIGINT after step 3 of 5, with no scheduled checkpoint before
    /// the end (`checkpoint_every` = 10), stops with the interrupted error, caches nothing for
    /// `train`, and leaves a checkpoint of step 3 in its scratch; the rerun resumes from 3 and
    /// ends with the bytes of a run never interrupted.
    #[test]
    fn a_sigint_checkpoints_the_current_step_and_the_rerun_resumes_bit_identically() {
        if let Ok(dir) = std::env::var(SIGINT_CHILD_ENV) {
            // The child: SIGINT cancels the run (xtask's first-signal handling), step 3 waits
            // for it.
            let dir = PathBuf::from(dir);
            let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
            signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&flag)).unwrap();
            let cancel = Cancel::from_flag(flag);
            let mut r = Registry::new();
            r.register(Upstream);
            r.register(StopAt { at: 3, marker: dir.join("paused"), wait: Wait::UntilCancelled });
            match run_pipeline(&dir, &r, Some(&cancel)) {
                Err(latte_engine::Error::Interrupted { stopped, not_run }) if stopped == ["train"] && not_run.is_empty() => {
                    std::process::exit(INTERRUPTED_EXIT)
                }
                other => panic!("the child's run was not interrupted in `train`: {other:?}"),
            }
        }
        let interrupted = tempfile_dir("sigint");
        std::fs::write(interrupted.join("pipeline.toml"), pipeline_text("1e-3", 10)).unwrap();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "train::tests::a_sigint_checkpoints_the_current_step_and_the_rerun_resumes_bit_identically",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(SIGINT_CHILD_ENV, &interrupted)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        while !interrupted.join("paused").exists() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the child exited ({status}) before reaching step 3");
            }
            assert!(std::time::Instant::now() < deadline, "the child never reached step 3");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // SAFETY: kill(2) on the child's pid, which has not been waited for, so it is still ours.
        assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) }, 0);
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(INTERRUPTED_EXIT), "{status}");

        // Nothing installed for train; its scratch holds the interrupt checkpoint of step 3 (the
        // only one) and three logged steps.
        let store = interrupted.join(".latte");
        let work: Vec<PathBuf> = std::fs::read_dir(store.join("work")).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
        assert_eq!(work.len(), 1, "{work:?}");
        let train_key = work[0].file_name().unwrap().to_str().unwrap().to_owned();
        assert!(!store.join("out").join(&train_key).exists(), "an interrupted stage must not be installed");
        let ckpts = latte_train::checkpoint::list_checkpoints(&work[0].join("checkpoints")).unwrap();
        assert_eq!(ckpts.iter().map(|c| c.0).collect::<Vec<_>>(), vec![3]);
        assert!(latte_train::checkpoint::read_state(&ckpts[0].1).unwrap().interrupted);
        assert_eq!(latte_train::read_log(&work[0].join("loss.jsonl")).unwrap().len(), 3);
        assert!(std::fs::read_dir(store.join("tmp")).map_or(true, |mut d| d.next().is_none()), "tmp/ must be cleaned up");

        // The rerun resumes from step 3.
        let report = run_pipeline(&interrupted, &real_registry(), None).unwrap();
        assert_eq!(report.ran.iter().map(|r| (r.0.as_str(), r.1.as_str())).collect::<Vec<_>>(), vec![("train", train_key.as_str())]);
        assert_eq!(train_config_json(&store, &train_key)["resumed_from"], serde_json::json!(3));
        let out = store.join("out").join(&train_key);

        let straight = tempfile_dir("sigint-straight");
        std::fs::write(straight.join("pipeline.toml"), pipeline_text("1e-3", 10)).unwrap();
        run_pipeline(&straight, &real_registry(), None).unwrap();
        let reference = straight.join(".latte/out").join(&train_key);
        for f in ["model.safetensors", "model_raw.safetensors"] {
            let (a, b) = (std::fs::read(out.join(f)).unwrap(), std::fs::read(reference.join(f)).unwrap());
            assert!(a.len() > 10_000 && a == b, "{f}: the resumed run's file differs from the uninterrupted run's");
        }
        let losses = |dir: &Path| -> Vec<(u64, u64)> {
            latte_train::read_log(&dir.join("loss.jsonl")).unwrap().iter().map(|l| (l.step, l.loss.to_bits())).collect()
        };
        assert_eq!(losses(&out), losses(&reference));
        // The interrupt checkpoint is gone once the final one exists: the same set as straight.
        let steps = |dir: &Path| -> Vec<u64> {
            latte_train::checkpoint::list_checkpoints(&dir.join("checkpoints")).unwrap().iter().map(|c| c.0).collect()
        };
        assert_eq!(steps(&out), vec![5]);
        assert_eq!(steps(&out), steps(&reference));
        let _ = std::fs::remove_dir_all(&interrupted);
        let _ = std::fs::remove_dir_all(&straight);
    }

    fn tempfile_dir(what: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("latte-train-{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn train_config_json(store: &Path, key: &str) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(store.join("out").join(key).join("config.json")).unwrap()).unwrap()
    }

    #[test]
    fn bad_parameters_are_rejected_by_name() {
        let root = std::env::temp_dir();
        let mut p = params(&root, 1, Path::new(""));
        p.values.insert("conditioning".into(), "sideways".into());
        let e = Train.validate(&p).unwrap_err();
        assert!(e.contains("conditioning"), "{e}");

        let mut p = params(&root, 1, Path::new(""));
        p.values.insert("lr_decay".into(), "linear".into());
        let e = Train.validate(&p).unwrap_err();
        assert!(e.contains("lr_decay") && e.contains("cosine"), "{e}");
        p.values.insert("lr_decay".into(), "cosine".into());
        assert_eq!(train_config(&p).unwrap().lr_decay, LrDecay::Cosine);
    }
}
