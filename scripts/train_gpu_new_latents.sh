#!/usr/bin/env bash
# New latents for the default model on one GPU: the whole VAE (configs/gpu-vae-joint.toml) for
# VAE_MINUTES, then the denoiser (configs/gpu-dit.toml, from the shipped one) on the new VAE's
# latents for DIT_MINUTES. DEST gets both logs and DEST/model (new VAE + its denoiser). Score it
# with benchmarks/quality.py (and --vae-ceiling) before anything replaces weights/. Both runs let
# their learning rate fall to 0 over the last COOLDOWN share (default 0.3) of their minutes.
#   scripts/train_gpu_new_latents.sh 5 7 /tmp/gpu-run
set -euo pipefail
usage="usage: scripts/train_gpu_new_latents.sh VAE_MINUTES DIT_MINUTES DEST"
vae_minutes=${1:?$usage}
dit_minutes=${2:?$usage}
dest=${3:?$usage}
runs=${RUNS:-runs}
vae_config=${VAE_CONFIG:-configs/gpu-vae-joint.toml}
dit_config=${DIT_CONFIG:-configs/gpu-dit.toml}
python=${PYTHON:-python3}
cooldown=${COOLDOWN:-0.3}
mkdir -p "$dest"

vae_run="$runs/new-latents-vae"
dit_run="$runs/new-latents-dit"
$python -m cinegen train --config "$vae_config" --out-dir "$vae_run" --minutes "$vae_minutes" --cooldown "$cooldown" >"$dest/vae.log" 2>&1
# The denoiser's config, with its latent cache encoded by the new VAE.
printf 'base = "%s"\nautoencoder_from = "%s"\n' "$(realpath "$dit_config")" "$vae_run" >"$dest/dit.toml"
$python -m cinegen train --config "$dest/dit.toml" --out-dir "$dit_run" --minutes "$dit_minutes" --cooldown "$cooldown" >"$dest/dit.log" 2>&1
$python -m cinegen train --export "$dest/model" --run "$dit_run" --autoencoder "$vae_run"
