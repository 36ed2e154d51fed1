//! `vae_train`: trains a small AutoencoderKL on the pipeline's own frames (no Stable Diffusion
//! weights can be downloaded here) and saves it in the diffusers layout, so the `latents` and
//! `sample` stages treat it exactly like SD's VAE.
//!
//! Output: `vae/config.json` + `vae/diffusion_pytorch_model.safetensors`, `report.json`
//! (`latte_vae::train::TrainReport`: held-out PSNR, scaling factor, loss curve) and
//! `reconstructions.png`.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use latte_engine::atomic::write_atomic;
use latte_engine::{Cancel, InputSpec, ParamSpec, ParamType, Params, Progress, Stage, StageContext, StageError};
use latte_vae::burn::tensor::Device;
use latte_vae::train::{reconstruction_cells, train, ReconstructionLoss, TrainFrames, VaeTrainConfig};
use latte_vae::{save_pretrained, VaeConfig};
use latte_video::{tile_columns, Frame};

pub struct VaeTrain;

const PARAMS: &[ParamSpec] = &[
    crate::DEVICE,
    ParamSpec {
        name: "block_out_channels",
        ty: ParamType::IntList,
        default: Some("[32, 32, 64, 64]"),
        help: "channels per resolution level; n levels downsample by 2^(n-1) (SD: [128, 256, 512, 512])",
    },
    ParamSpec {
        name: "layers_per_block",
        ty: ParamType::Int,
        default: Some("1"),
        help: "ResNet blocks per encoder level (decoder: one more)",
    },
    ParamSpec { name: "norm_num_groups", ty: ParamType::Int, default: Some("8"), help: "GroupNorm groups; divides every channel count" },
    ParamSpec { name: "latent_channels", ty: ParamType::Int, default: Some("4"), help: "latent channels (the Latte model expects 4)" },
    ParamSpec {
        name: "steps",
        ty: ParamType::Int,
        default: Some("700"),
        help: "optimizer steps (700 of batch 4: about 2 minutes on 2 busy cores)",
    },
    ParamSpec {
        name: "batch_size",
        ty: ParamType::Int,
        default: Some("4"),
        help: "crops per step (more steps of smaller batches trained faster for the same time)",
    },
    ParamSpec {
        name: "crop",
        ty: ParamType::Int,
        default: Some("32"),
        help: "side of the random square crops trained on; 0 = whole frames",
    },
    ParamSpec {
        name: "lr",
        ty: ParamType::Float,
        default: Some("0.001"),
        help: "peak AdamW learning rate (warmup, then cosine to a tenth)",
    },
    ParamSpec {
        name: "kl_weight",
        ty: ParamType::Float,
        default: Some("1e-6"),
        help: "weight of KL(q‖N(0,I)) per pixel element against the reconstruction loss",
    },
    ParamSpec {
        name: "loss",
        ty: ParamType::Str,
        default: Some("\"mse\""),
        help: "reconstruction loss: \"l1\" or \"mse\" (mse optimises the reported PSNR directly)",
    },
    ParamSpec {
        name: "initial_logvar",
        ty: ParamType::Float,
        default: Some("-6.0"),
        help: "initial bias of the posterior log-variance: a near-deterministic start trains faster",
    },
    ParamSpec {
        name: "zero_residual_init",
        ty: ParamType::Bool,
        default: Some("true"),
        help: "start the last layer of every residual branch at zero, so each block starts as the identity (trains faster)",
    },
    ParamSpec {
        name: "seed",
        ty: ParamType::Int,
        default: Some("0"),
        help: "seed of the initialisation, the batches and the posterior noise",
    },
    ParamSpec {
        name: "heldout_fraction",
        ty: ParamType::Float,
        default: Some("0.1"),
        help: "fraction of videos kept out of training for the PSNR report",
    },
    ParamSpec {
        name: "max_frames",
        ty: ParamType::Int,
        default: Some("4096"),
        help: "frames loaded for training (evenly subsampled); bounds memory",
    },
    ParamSpec {
        name: "fit_scaling_factor",
        ty: ParamType::Bool,
        default: Some("true"),
        help: "set scaling_factor to 1/std of the latents (as SD's 0.18215 was chosen); false keeps 0.18215",
    },
    ParamSpec {
        name: "ranks",
        ty: ParamType::Int,
        default: Some("1"),
        help: "data-parallel ranks: threads that each train on batch_size/ranks crops of every step with an equal share of the stage's threads, gradients summed each step; 2 on a 2-core machine trains the default's small VAE about 1.15× faster (the weights equal 1 rank's up to float rounding)",
    },
];

const INPUTS: &[InputSpec] = &[InputSpec { name: "frames", required: true, help: "the `frames` stage (frames.zarr)" }];

fn vae_config(p: &Params) -> Result<VaeConfig, StageError> {
    let channels = p
        .int_list("block_out_channels")?
        .into_iter()
        .map(|c| usize::try_from(c).map_err(|_| format!("parameter `block_out_channels` holds {c}; channel counts are positive")))
        .collect::<Result<Vec<_>, _>>()?;
    let config = VaeConfig::new(channels, p.usize("layers_per_block")?, p.usize("norm_num_groups")?, p.usize("latent_channels")?);
    config.validate().map_err(|e| format!("the VAE parameters do not form a valid AutoencoderKL: {e}"))?;
    Ok(config)
}

fn train_config(p: &Params) -> Result<VaeTrainConfig, StageError> {
    Ok(VaeTrainConfig {
        steps: p.usize("steps")?,
        batch_size: p.usize("batch_size")?,
        crop: p.usize("crop")?,
        lr: p.float("lr")?,
        warmup_steps: (p.usize("steps")? / 20).max(1),
        weight_decay: 0.0,
        kl_weight: p.float("kl_weight")?,
        loss: p.str("loss")?.parse::<ReconstructionLoss>().map_err(|e| format!("parameter `loss`: {e}"))?,
        initial_logvar: p.float("initial_logvar")?,
        zero_residual_init: p.bool("zero_residual_init")?,
        seed: p.u64("seed")?,
        ranks: p.usize("ranks")?,
    })
}

impl Stage for VaeTrain {
    fn kind(&self) -> &'static str {
        "vae_train"
    }

    fn version(&self) -> &'static str {
        // 2: zero-initialised residual branches, MSE, lr 1e-3, 700 steps of batch 4 by default.
        // 3: report.json no longer records wall time (outputs are a function of the key).
        // 4: reconstructions.png (held-out and training frames above their reconstructions).
        "4"
    }

    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }

    fn unkeyed_defaults(&self) -> &'static [&'static str] {
        // added after version 4's outputs were cached (the ablation grids' VAEs)
        &["ranks"]
    }

    fn inputs(&self) -> &'static [InputSpec] {
        INPUTS
    }

    fn validate(&self, params: &Params) -> Result<(), String> {
        crate::device_spec(params)?;
        let config = vae_config(params).map_err(|e| e.to_string())?;
        train_config(params).map_err(|e| e.to_string())?.validate(&config)?;
        let h = params.float("heldout_fraction").map_err(|e| e.to_string())?;
        if !(0.0..1.0).contains(&h) {
            return Err(format!("parameter `heldout_fraction` must be in [0, 1), got {h}"));
        }
        Ok(())
    }

    fn run(&self, ctx: &StageContext<'_>) -> Result<(), StageError> {
        run(ctx).map_err(crate::stage_error)
    }
}

fn run(ctx: &StageContext<'_>) -> anyhow::Result<()> {
    let p = ctx.params;
    let param = |e: StageError| anyhow::anyhow!("{e}");
    let options = Options {
        vae: vae_config(p).map_err(param)?,
        train: train_config(p).map_err(param)?,
        heldout_fraction: p.float("heldout_fraction").map_err(param)?,
        max_frames: p.usize("max_frames").map_err(param)?,
        fit_scaling_factor: p.bool("fit_scaling_factor").map_err(param)?,
        device: crate::open_device(p)?,
    };
    let store_dir = ctx.input("frames").map_err(param)?.join("frames.zarr");
    train_on_store(&store_dir, &options, ctx.out, ctx.progress, ctx.cancel)
}

/// Everything `vae_train` needs besides its input and output paths.
pub struct Options {
    pub vae: VaeConfig,
    pub train: VaeTrainConfig,
    pub heldout_fraction: f64,
    pub max_frames: usize,
    pub fit_scaling_factor: bool,
    pub device: Device,
}

/// Trains on the frames of the store `store_dir` and writes `out/vae/` and `out/report.json`.
/// Once `cancel` is set it stops after the current step with `Interrupted` (no checkpoint: the
/// rerun trains from the start).
pub fn train_on_store(store_dir: &Path, options: &Options, out: &Path, progress: &dyn Progress, cancel: &Cancel) -> anyhow::Result<()> {
    let (vae_cfg, train_cfg) = (&options.vae, &options.train);
    let frames = TrainFrames::read(store_dir, options.heldout_fraction, options.max_frames).context("the frames to train the VAE on")?;
    let (height, width) = (frames.height, frames.width);
    progress.log(&format!(
        "vae_train: {} training and {} held-out frames of {height}×{width}, VAE {:?} (×{} downsampling)",
        frames.train.len(),
        frames.heldout.len(),
        vae_cfg.block_out_channels,
        vae_cfg.downsample_factor()
    ));

    progress.set_length(train_cfg.steps as u64);
    let started = Instant::now();
    let mut on_step = |step: usize, loss: f32| {
        progress.inc(1);
        if step % 10 == 0 {
            progress.set_message(&format!("loss {loss:.4}"));
        }
        crate::cancel::stop_if_cancelled(cancel);
    };
    let outcome = crate::cancel::stoppable(|| {
        train(vae_cfg, train_cfg, frames.batch(), &frames.train, &frames.heldout, &options.device, &mut on_step)
    })?
    .with_context(|| format!("training the VAE on {}", store_dir.display()))?;
    let seconds = started.elapsed().as_secs_f64();

    let config = outcome.saved_config(options.fit_scaling_factor, height);
    save_pretrained(&outcome.model, &config, &out.join("vae")).context("saving the trained VAE")?;

    let cells =
        reconstruction_cells(&outcome.model, &frames, SHEET_COLUMNS, &options.device).context("reconstructing frames for the sheet")?;
    let cells: Vec<_> = cells.into_iter().map(|c| vec![Frame::new(width, height, c)]).collect();
    let sheet = tile_columns(&cells, SHEET_COLUMNS).pop().context("no frames to draw the reconstruction sheet from")?;
    latte_video::image_folder::write_png(&out.join(RECONSTRUCTIONS_PNG), &sheet).context("writing the reconstruction sheet")?;

    let report = outcome.report(&config, (frames.train.len(), frames.heldout.len()), [height, width], RECONSTRUCTIONS_PNG);
    write_atomic(&out.join("report.json"), serde_json::to_string_pretty(&report)?.as_bytes())?;
    progress.log(&format!("vae_train: {seconds:.0} s, {}", report.summary()));
    Ok(())
}

/// Held-out frames above their reconstructions, then training frames above theirs.
const RECONSTRUCTIONS_PNG: &str = "reconstructions.png";
const SHEET_COLUMNS: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latents::tests::{frames_store, scratch, tiny_options};
    use latte_engine::NoProgress;
    use latte_store::RaggedReader;
    use latte_vae::train::{reconstruct, spread, FrameBatch};
    use latte_video::image_folder::read_image;

    #[test]
    fn reconstruction_sheet_shows_held_out_and_training_frames_above_their_decodings() {
        let dir = scratch("sheet");
        let frames = frames_store(&dir, 16, &[5, 3, 4]);
        let out = dir.join("vae_train");
        let options = tiny_options();
        train_on_store(&frames, &options, &out, &NoProgress, &Cancel::new()).unwrap();
        let report: latte_vae::train::TrainReport = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
        assert_eq!((report.train_frames, report.heldout_frames, report.steps), (9, 3, 2));
        assert_eq!(report.loss_curve.iter().map(|&(step, _)| step).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(report.reconstructions, RECONSTRUCTIONS_PNG);

        // 8 columns of 16×16 cells with 2-pixel borders; rows: the 3 held-out frames (the middle
        // video), their decodings, 8 of the 9 training frames, theirs.
        let sheet = read_image(&out.join(RECONSTRUCTIONS_PNG)).unwrap();
        assert_eq!((sheet.width, sheet.height), (8 * 18 + 2, 4 * 18 + 2));
        let cell = |col: usize, row: usize| sheet.crop(2 + col * 18, 2 + row * 18, 16, 16).data;

        let store = RaggedReader::open(&frames).unwrap();
        let pixels = store.array::<u8>("frames").unwrap().read_frames(&[], &(0..12).collect::<Vec<u64>>()).unwrap();
        let batch = FrameBatch { pixels: &pixels, count: 12, height: 16, width: 16 };
        let vae =
            latte_vae::load_weights(&options.vae, &out.join("vae").join("diffusion_pytorch_model.safetensors"), &options.device).unwrap();
        let held = reconstruct(&vae, batch, &[5, 6, 7], &options.device).unwrap();
        for (col, frame) in [5usize, 6, 7].into_iter().enumerate() {
            assert_eq!(cell(col, 0), pixels[frame * 768..(frame + 1) * 768], "held-out original {frame}");
            assert_eq!(cell(col, 1), held[col], "its decoding by the saved VAE");
        }
        assert!(cell(3, 0).iter().chain(&cell(3, 1)).all(|&v| v == 0), "no fourth held-out frame: black");
        let train = spread(&[0usize, 1, 2, 3, 4, 8, 9, 10, 11], 8);
        let decoded = reconstruct(&vae, batch, &train, &options.device).unwrap();
        for (col, &frame) in train.iter().enumerate() {
            assert_eq!(cell(col, 2), pixels[frame * 768..(frame + 1) * 768], "training original {frame}");
            assert_eq!(cell(col, 3), decoded[col]);
        }
    }
}
