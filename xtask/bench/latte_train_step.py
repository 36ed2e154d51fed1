"""Times training steps of the reference Latte (Vchitect/Latte `models/latte.py`, variant 1,
unconditional, learn_sigma, adaLN-Zero, attention_mode 'math') with the reference's IDDPM hybrid
loss (`diffusion/gaussian_diffusion.py`: MSE on eps + the VB term with eps detached, decoder NLL
where t = 0), the reference's `clip_grad_norm_` (norm computed every step, clipping off),
AdamW(lr 1e-4, weight decay 0) and EMA update, on the CPU or a CUDA GPU. Written from
shared/spec/latte-reference.md §1/§2/§3.

The JSON config may also set `device` ("cpu", "cuda", "cuda:N"; default "cpu"), `precision`
("f32": on CUDA with TF32 matmuls, as the reference's train.py allows; "bf16": forward and loss
under `torch.autocast(dtype=torch.bfloat16)`, f32 master weights and optimizer) and
`checkpointing` (`torch.utils.checkpoint` around each transformer block, use_reentrant=False,
as the reference's `gradient_checkpointing`).

Run by `cargo xtask bench train` (xtask/src/bench_train.rs) in the same run as the Rust side:

    python latte_train_step.py --config '{"hidden_size": 384, "depth": 12, ...}' [--check DIR]

Prints one machine-readable line

    RESULT torch params=… trainable=… step_median_ms=… step_min_ms=… gflop_per_step=… gflops=… peak_rss_mib=… base_rss_mib=…
        clips_per_s=… peak_gpu_mib=… peak_gpu_alloc_mib=… device=… precision=… checkpointing=…

(peak_gpu_mib: `torch.cuda.max_memory_reserved()`, peak_gpu_alloc_mib: `max_memory_allocated()`;
nan on the CPU)

and, with `--check DIR` (weights of the Rust model under the reference's key names, one input
batch and the Rust model's output on it, written by the Rust side), after the timing (so it does
not count towards the peak):

    CHECK pos_embed_max_abs=… temp_embed_max_abs=… forward_max_abs=… out_max_abs=…

`--selftest FIXTURES` instead compares this file with the reference's own tensors
(`shared/fixtures/latte-v1-uncond`, `diffusion-iddpm`) and prints

    SELFTEST forward_max_abs=… out_max_abs=… tables_max_abs=… loss_max_abs=…

Needs only torch and numpy (no einops, timm or safetensors package).
"""

import argparse
import json
import math
import os
import resource
import struct
import sys
import time
from collections import OrderedDict
from copy import deepcopy

import numpy as np
import torch
import torch.nn as nn
import torch.utils.checkpoint

# ------------------------------------------------------------------------------------------
# Model (models/latte.py)


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class Attention(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.attn_drop = nn.Dropout(0.0)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(0.0)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4).contiguous()
        q, k, v = qkv.unbind(0)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        attn = self.attn_drop(attn)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        x = self.proj(x)
        return self.proj_drop(x)


class Mlp(nn.Module):
    """timm `Mlp` as the reference builds it (drop 0, no norm)."""

    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.drop1 = nn.Dropout(0.0)
        self.norm = nn.Identity()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop2 = nn.Dropout(0.0)

    def forward(self, x):
        return self.drop2(self.fc2(self.norm(self.drop1(self.act(self.fc1(x))))))


class PatchEmbed(nn.Module):
    """timm `PatchEmbed` (Conv2d, flatten, no norm)."""

    def __init__(self, patch, in_chans, dim):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch, bias=True)
        self.norm = nn.Identity()

    def forward(self, x):
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden_size, frequency_embedding_size=256):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size, bias=True),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size, bias=True),
        )
        self.frequency_embedding_size = frequency_embedding_size

    @staticmethod
    def timestep_embedding(t, dim, max_period=10000):
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(start=0, end=half, dtype=torch.float32) / half).to(t.device)
        args = t[:, None].float() * freqs[None]
        embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if dim % 2:
            embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
        return embedding

    def forward(self, t):
        return self.mlp(self.timestep_embedding(t, self.frequency_embedding_size))


class TransformerBlock(nn.Module):
    def __init__(self, hidden_size, num_heads, mlp_ratio=4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size, bias=True))

    def forward(self, x, c):
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x


class FinalLayer(nn.Module):
    def __init__(self, hidden_size, patch_size, out_channels):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels, bias=True)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size, bias=True))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


def get_1d_sincos_pos_embed_from_grid(embed_dim, pos):
    omega = np.arange(embed_dim // 2, dtype=np.float64)
    omega /= embed_dim / 2.0
    omega = 1.0 / 10000**omega
    pos = pos.reshape(-1)
    out = np.einsum("m,d->md", pos, omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def get_2d_sincos_pos_embed(embed_dim, grid_size):
    grid_h = np.arange(grid_size, dtype=np.float32)
    grid_w = np.arange(grid_size, dtype=np.float32)
    grid = np.meshgrid(grid_w, grid_h)  # w goes first
    grid = np.stack(grid, axis=0).reshape([2, 1, grid_size, grid_size])
    emb_h = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[0])
    emb_w = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[1])
    return np.concatenate([emb_h, emb_w], axis=1)


def get_1d_sincos_temp_embed(embed_dim, length):
    pos = torch.arange(0, length).unsqueeze(1)
    return get_1d_sincos_pos_embed_from_grid(embed_dim, pos.numpy())


class Latte(nn.Module):
    """Variant 1, extras = 1 (unconditional): the configuration both sides time."""

    def __init__(self, input_size, patch_size, in_channels, hidden_size, depth, num_heads, mlp_ratio, num_frames, learn_sigma=True):
        super().__init__()
        self.learn_sigma = learn_sigma
        self.in_channels = in_channels
        self.out_channels = in_channels * 2 if learn_sigma else in_channels
        self.patch_size = patch_size
        self.num_heads = num_heads
        self.x_embedder = PatchEmbed(patch_size, in_channels, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        num_patches = (input_size // patch_size) ** 2
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, hidden_size), requires_grad=False)
        self.temp_embed = nn.Parameter(torch.zeros(1, num_frames, hidden_size), requires_grad=False)
        self.hidden_size = hidden_size
        self.blocks = nn.ModuleList([TransformerBlock(hidden_size, num_heads, mlp_ratio=mlp_ratio) for _ in range(depth)])
        self.gradient_checkpointing = False
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)
        self.initialize_weights()

    def initialize_weights(self):
        def _basic_init(module):
            if isinstance(module, nn.Linear):
                torch.nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.constant_(module.bias, 0)

        self.apply(_basic_init)
        grid = int(self.pos_embed.shape[-2] ** 0.5)
        self.pos_embed.data.copy_(torch.from_numpy(get_2d_sincos_pos_embed(self.pos_embed.shape[-1], grid)).float().unsqueeze(0))
        temp = get_1d_sincos_temp_embed(self.temp_embed.shape[-1], self.temp_embed.shape[-2])
        self.temp_embed.data.copy_(torch.from_numpy(temp).float().unsqueeze(0))
        w = self.x_embedder.proj.weight.data
        nn.init.xavier_uniform_(w.view([w.shape[0], -1]))
        nn.init.constant_(self.x_embedder.proj.bias, 0)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for block in self.blocks:
            nn.init.constant_(block.adaLN_modulation[-1].weight, 0)
            nn.init.constant_(block.adaLN_modulation[-1].bias, 0)
        nn.init.constant_(self.final_layer.adaLN_modulation[-1].weight, 0)
        nn.init.constant_(self.final_layer.adaLN_modulation[-1].bias, 0)
        nn.init.constant_(self.final_layer.linear.weight, 0)
        nn.init.constant_(self.final_layer.linear.bias, 0)

    def unpatchify(self, x):
        c = self.out_channels
        p = self.x_embedder.proj.kernel_size[0]
        h = w = int(x.shape[1] ** 0.5)
        x = x.reshape(shape=(x.shape[0], h, w, p, p, c))
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(shape=(x.shape[0], c, h * p, w * p))

    def forward(self, x, t):
        b, f, c, hh, ww = x.shape
        x = x.reshape(b * f, c, hh, ww)  # einops 'b f c h w -> (b f) c h w'
        x = self.x_embedder(x) + self.pos_embed
        t = self.t_embedder(t)
        timestep_spatial = t.repeat_interleave(self.temp_embed.shape[1], dim=0)  # 'n d -> (n c) d'
        timestep_temp = t.repeat_interleave(self.pos_embed.shape[1], dim=0)
        def run(block, x, c):
            # as the reference: recompute each block's activations in the backward pass
            if self.gradient_checkpointing and torch.is_grad_enabled():
                return torch.utils.checkpoint.checkpoint(block, x, c, use_reentrant=False)
            return block(x, c)

        for i in range(0, len(self.blocks), 2):
            spatial_block, temp_block = self.blocks[i : i + 2]
            x = run(spatial_block, x, timestep_spatial)
            n, d = x.shape[1], x.shape[2]
            x = x.reshape(b, f, n, d).permute(0, 2, 1, 3).reshape(b * n, f, d)  # '(b f) t d -> (b t) f d'
            if i == 0:
                x = x + self.temp_embed
            x = run(temp_block, x, timestep_temp)
            x = x.reshape(b, n, f, d).permute(0, 2, 1, 3).reshape(b * f, n, d)  # '(b t) f d -> (b f) t d'
        x = self.final_layer(x, timestep_spatial)
        x = self.unpatchify(x)
        return x.reshape(b, f, *x.shape[1:])  # '(b f) c h w -> b f c h w'


def forward_gflops(cfg):
    """GFLOPs of one forward of one clip, counted as `latte_model::flops` counts them (matrix
    products and adaLN linears; 2 x MACs)."""
    d, p, c = cfg["hidden_size"], cfg["patch_size"], cfg["in_channels"]
    n = (cfg["input_size"] // p) ** 2
    f = cfg["num_frames"]
    tokens = n * f
    mlp = int(d * 4.0)
    co = 2 * c
    macs = tokens * c * p * p * d + 256 * d + d * d
    for i in range(cfg["depth"]):
        seqs, length, rows = (f, n, f) if i % 2 == 0 else (n, f, n)
        macs += tokens * d * 4 * d + 2 * seqs * length * length * d + tokens * 2 * d * mlp + rows * d * 6 * d
    macs += f * d * 2 * d + tokens * d * p * p * co
    return 2.0 * macs / 1e9


# ------------------------------------------------------------------------------------------
# Diffusion (diffusion/gaussian_diffusion.py, diffusion_utils.py): linear schedule, 1000 steps,
# eps prediction, LEARNED_RANGE variance, LossType.MSE (hybrid with the VB term).


def mean_flat(tensor):
    return tensor.mean(dim=list(range(1, len(tensor.shape))))


def normal_kl(mean1, logvar1, mean2, logvar2):
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + ((mean1 - mean2) ** 2) * torch.exp(-logvar2))


def approx_standard_normal_cdf(x):
    return 0.5 * (1.0 + torch.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * torch.pow(x, 3))))


def discretized_gaussian_log_likelihood(x, *, means, log_scales):
    centered_x = x - means
    inv_stdv = torch.exp(-log_scales)
    cdf_plus = approx_standard_normal_cdf(inv_stdv * (centered_x + 1.0 / 255.0))
    cdf_min = approx_standard_normal_cdf(inv_stdv * (centered_x - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    cdf_delta = cdf_plus - cdf_min
    return torch.where(
        x < -0.999,
        log_cdf_plus,
        torch.where(x > 0.999, log_one_minus_cdf_min, torch.log(cdf_delta.clamp(min=1e-12))),
    )


def _extract_into_tensor(arr, timesteps, broadcast_shape):
    res = torch.from_numpy(arr).to(device=timesteps.device)[timesteps].float()
    while len(res.shape) < len(broadcast_shape):
        res = res[..., None]
    return res + torch.zeros(broadcast_shape, device=timesteps.device)


class GaussianDiffusion:
    def __init__(self):
        betas = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
        self.betas = betas
        self.num_timesteps = len(betas)
        alphas = 1.0 - betas
        self.alphas_cumprod = np.cumprod(alphas, axis=0)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.sqrt_alphas_cumprod = np.sqrt(self.alphas_cumprod)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - self.alphas_cumprod)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1)
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_log_variance_clipped = (
            np.log(np.append(self.posterior_variance[1], self.posterior_variance[1:]))
            if len(self.posterior_variance) > 1
            else np.array([])
        )
        self.posterior_mean_coef1 = betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - self.alphas_cumprod)

    def q_sample(self, x_start, t, noise):
        return (
            _extract_into_tensor(self.sqrt_alphas_cumprod, t, x_start.shape) * x_start
            + _extract_into_tensor(self.sqrt_one_minus_alphas_cumprod, t, x_start.shape) * noise
        )

    def q_posterior_mean_variance(self, x_start, x_t, t):
        posterior_mean = (
            _extract_into_tensor(self.posterior_mean_coef1, t, x_t.shape) * x_start
            + _extract_into_tensor(self.posterior_mean_coef2, t, x_t.shape) * x_t
        )
        posterior_variance = _extract_into_tensor(self.posterior_variance, t, x_t.shape)
        posterior_log_variance_clipped = _extract_into_tensor(self.posterior_log_variance_clipped, t, x_t.shape)
        return posterior_mean, posterior_variance, posterior_log_variance_clipped

    def _predict_xstart_from_eps(self, x_t, t, eps):
        return (
            _extract_into_tensor(self.sqrt_recip_alphas_cumprod, t, x_t.shape) * x_t
            - _extract_into_tensor(self.sqrt_recipm1_alphas_cumprod, t, x_t.shape) * eps
        )

    def p_mean_variance(self, model_output, x, t):
        """LEARNED_RANGE, clip_denoised False, given the (frozen) model output."""
        B, F, C = x.shape[:3]
        model_output, model_var_values = torch.split(model_output, C, dim=2)
        min_log = _extract_into_tensor(self.posterior_log_variance_clipped, t, x.shape)
        max_log = _extract_into_tensor(np.log(self.betas), t, x.shape)
        frac = (model_var_values + 1) / 2
        model_log_variance = frac * max_log + (1 - frac) * min_log
        pred_xstart = self._predict_xstart_from_eps(x_t=x, t=t, eps=model_output)
        model_mean, _, _ = self.q_posterior_mean_variance(x_start=pred_xstart, x_t=x, t=t)
        return {"mean": model_mean, "log_variance": model_log_variance}

    def _vb_terms_bpd(self, frozen_out, x_start, x_t, t):
        true_mean, _, true_log_variance_clipped = self.q_posterior_mean_variance(x_start=x_start, x_t=x_t, t=t)
        out = self.p_mean_variance(frozen_out, x_t, t)
        kl = normal_kl(true_mean, true_log_variance_clipped, out["mean"], out["log_variance"])
        kl = mean_flat(kl) / np.log(2.0)
        decoder_nll = -discretized_gaussian_log_likelihood(x_start, means=out["mean"], log_scales=0.5 * out["log_variance"])
        decoder_nll = mean_flat(decoder_nll) / np.log(2.0)
        return torch.where((t == 0), decoder_nll, kl)

    def training_losses(self, model, x_start, t, noise=None):
        if noise is None:
            noise = torch.randn_like(x_start)
        x_t = self.q_sample(x_start, t, noise=noise)
        model_output = model(x_t, t)
        B, F, C = x_t.shape[:3]
        assert model_output.shape == (B, F, C * 2, *x_t.shape[3:])
        model_output, model_var_values = torch.split(model_output, C, dim=2)
        # The VB term trains only the variance: it sees the eps prediction detached.
        frozen_out = torch.cat([model_output.detach(), model_var_values], dim=2)
        vb = self._vb_terms_bpd(frozen_out, x_start, x_t, t)
        mse = mean_flat((noise - model_output) ** 2)
        return {"loss": mse + vb, "mse": mse, "vb": vb}


# ------------------------------------------------------------------------------------------
# Training utilities (utils.py, train.py)


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, clip_grad=True):
    """The reference's `utils.clip_grad_norm_`: the norm is computed every step; clipping only
    from `start_clip_iter` on."""
    grads = [p.grad for p in parameters if p.grad is not None]
    total_norm = torch.norm(torch.stack([torch.norm(g.detach(), norm_type) for g in grads]), norm_type)
    if clip_grad:
        clip_coef = max_norm / (total_norm + 1e-6)
        clip_coef_clamped = torch.clamp(clip_coef, max=1.0)
        for g in grads:
            g.detach().mul_(clip_coef_clamped)
    return total_norm


@torch.no_grad()
def update_ema(ema_model, model, decay=0.9999):
    ema_params = OrderedDict(ema_model.named_parameters())
    model_params = OrderedDict(model.named_parameters())
    for name, param in model_params.items():
        ema_params[name].mul_(decay).add_(param.data, alpha=1 - decay)


def rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def build_model(cfg):
    return Latte(
        input_size=cfg["input_size"],
        patch_size=cfg["patch_size"],
        in_channels=cfg["in_channels"],
        hidden_size=cfg["hidden_size"],
        depth=cfg["depth"],
        num_heads=cfg["num_heads"],
        mlp_ratio=4.0,
        num_frames=cfg["num_frames"],
        learn_sigma=True,
    )


def setup_device(cfg):
    """The config's device; on CUDA, TF32 matmuls and convolutions as the reference's train.py
    (also under bf16 autocast, for what stays f32)."""
    device = torch.device(cfg.get("device", "cpu"))
    precision = cfg.get("precision", "f32")
    if precision not in ("f32", "bf16"):
        sys.exit(f"precision must be f32 or bf16, not {precision!r}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit(f"device {device}: this torch ({torch.__version__}) sees no CUDA GPU; install a CUDA build of torch or use cpu")
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device, precision


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(cfg):
    base_rss = rss_mib()
    device, precision = setup_device(cfg)
    torch.manual_seed(cfg.get("seed", 3407))
    # built on the CPU, so that the init does not depend on the device
    model = build_model(cfg).to(device)
    model.gradient_checkpointing = bool(cfg.get("checkpointing", False))
    ema = deepcopy(model)
    ema.requires_grad_(False)
    update_ema(ema, model, decay=0)
    model.train()
    ema.eval()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0)
    diffusion = GaussianDiffusion()
    b, f, c, s = cfg["batch_size"], cfg["num_frames"], cfg["in_channels"], cfg["input_size"]
    # Cached VAE posteriors (mean, log-variance) as the Rust side reads them; each step draws a
    # fresh sample `(mean + std * z) * 0.18215` as the reference's `latent_dist.sample()`.
    mean = torch.randn(b, f, c, s, s).to(device)
    logvar = torch.full((b, f, c, s, s), -4.0).to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for it in range(cfg["warmup"] + cfg["iters"]):
        sync(device)
        t0 = time.perf_counter()
        x = (mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)) * 0.18215
        t = torch.randint(0, diffusion.num_timesteps, (x.shape[0],), device=device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = diffusion.training_losses(model, x, t)["loss"].mean()
        loss.backward()
        grad_norm = clip_grad_norm_(model.parameters(), 0.1, clip_grad=False)
        opt.step()
        opt.zero_grad()
        update_ema(ema, model)
        loss_v, norm_v = loss.item(), grad_norm.item()
        sync(device)
        dt = (time.perf_counter() - t0) * 1e3
        print(f"torch step {it}: loss {loss_v:.5f} grad_norm {norm_v:.4f} {dt:.1f} ms", file=sys.stderr)
        if it >= cfg["warmup"]:
            times.append(dt)
    peak = rss_mib()
    times.sort()
    step_ms = times[len(times) // 2] if times else float("nan")
    step_min = times[0] if times else float("nan")
    gflop = 3.0 * forward_gflops(cfg) * b
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if device.type == "cuda":
        gpu_reserved = torch.cuda.max_memory_reserved(device) / 2**20
        gpu_alloc = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        gpu_reserved = gpu_alloc = float("nan")
    print(
        f"RESULT torch params={params} trainable={trainable} step_median_ms={step_ms:.2f} step_min_ms={step_min:.2f} gflop_per_step={gflop:.4f} "
        f"gflops={gflop / (step_ms * 1e-3):.2f} peak_rss_mib={peak:.1f} base_rss_mib={base_rss:.1f} "
        f"clips_per_s={b / (step_ms * 1e-3):.4f} peak_gpu_mib={gpu_reserved:.1f} peak_gpu_alloc_mib={gpu_alloc:.1f} "
        f"device={device} precision={precision} checkpointing={int(model.gradient_checkpointing)} "
        f"threads={torch.get_num_threads()} torch={torch.__version__}",
        flush=True,
    )
    return model


def load_safetensors(path):
    """Minimal safetensors reader (8-byte header length, JSON header, raw little-endian data)."""
    dtypes = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64, "I32": np.int32}
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n))
        data = fh.read()
    out = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        lo, hi = info["data_offsets"]
        arr = np.frombuffer(data[lo:hi], dtype=dtypes[info["dtype"]]).reshape(info["shape"])
        out[key] = torch.from_numpy(arr.astype(np.float32, copy=True))
    return out


def check(cfg, check_dir):
    """One forward of the reference model with the Rust model's weights on the Rust input, in
    true f32 (no TF32, no autocast) on the config's device: the reference the Rust output is
    measured against, whatever precision the Rust side ran in. The Rust side may have written
    a slice of the network (meta `depth`)."""
    device, _ = setup_device(cfg)
    meta = json.load(open(os.path.join(check_dir, "meta.json")))
    state = load_safetensors(os.path.join(check_dir, "weights.safetensors"))
    model = build_model(dict(cfg, depth=meta.get("depth", cfg["depth"])))
    # The frozen sin-cos tables come from this file's own init: compare them before loading.
    pos = (model.pos_embed.detach() - state["pos_embed"]).abs().max().item()
    temp = (model.temp_embed.detach() - state["temp_embed"]).abs().max().item()
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        print(f"CHECK-ERROR state dict keys differ: missing {missing[:8]} unexpected {unexpected[:8]}", flush=True)
        return
    model.eval().to(device)
    x = torch.from_numpy(np.fromfile(os.path.join(check_dir, "x.f32"), dtype="<f4").reshape(meta["x_shape"]))
    want = torch.from_numpy(np.fromfile(os.path.join(check_dir, "out.f32"), dtype="<f4").reshape(meta["out_shape"]))
    t = torch.tensor(meta["t"], dtype=torch.int64)
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    with torch.no_grad():
        got = model(x.to(device), t.to(device)).cpu()
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    diff = (got - want).abs().max().item()
    print(
        f"CHECK pos_embed_max_abs={pos:.3e} temp_embed_max_abs={temp:.3e} forward_max_abs={diff:.3e} "
        f"out_max_abs={want.abs().max().item():.3e}",
        flush=True,
    )


def selftest(fixtures):
    """This file against the reference's own tensors (`shared/fixtures`): the model's forward
    (`latte-v1-uncond`) and the hybrid loss terms (`diffusion-iddpm`)."""
    f = os.path.join(fixtures, "latte-v1-uncond")
    kw = json.load(open(os.path.join(f, "config.json")))["kwargs"]
    model = build_model(kw)
    state = load_safetensors(os.path.join(f, "weights.safetensors"))
    tables = max((model.pos_embed - state["pos_embed"]).abs().max().item(), (model.temp_embed - state["temp_embed"]).abs().max().item())
    model.load_state_dict(state, strict=True)
    model.eval()
    inputs = load_safetensors(os.path.join(f, "inputs.safetensors"))
    want = load_safetensors(os.path.join(f, "expected.safetensors"))["out"]
    with torch.no_grad():
        got = model(inputs["x"], inputs["t"].long())
    forward = (got - want).abs().max().item()
    d = load_safetensors(os.path.join(fixtures, "diffusion-iddpm", "diffusion.safetensors"))
    terms = GaussianDiffusion().training_losses(lambda x, t: d["model_out"], d["x0"], d["t"].long(), noise=d["noise"])
    loss = max((terms[k] - d[k]).abs().max().item() for k in ("mse", "vb", "loss"))
    print(f"SELFTEST forward_max_abs={forward:.3e} out_max_abs={want.abs().max().item():.3e} tables_max_abs={tables:.3e} loss_max_abs={loss:.3e}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--config",
        help="JSON: hidden_size, depth, num_heads, patch_size, num_frames, input_size, in_channels, "
        "batch_size, threads, iters, warmup (optional: seed, device, precision, checkpointing)",
    )
    ap.add_argument("--check", metavar="DIR", help="compare one forward with the Rust model's (see module doc)")
    ap.add_argument("--selftest", metavar="FIXTURES", help="only compare this file with the reference's tensors in shared/fixtures")
    args = ap.parse_args()
    if args.selftest:
        selftest(args.selftest)
        return
    if not args.config:
        ap.error("--config is required (or --selftest)")
    cfg = json.loads(args.config)
    cfg.setdefault("in_channels", 4)
    if cfg["depth"] % 2:
        sys.exit("depth must be even (variant 1 pairs spatial and temporal blocks)")
    torch.set_num_threads(int(cfg["threads"]))
    bench(cfg)
    if args.check:
        check(cfg, args.check)


if __name__ == "__main__":
    main()
