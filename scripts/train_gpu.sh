#!/usr/bin/env bash
# Continue the default model on one GPU for MINUTES of wall time: the denoiser
# (configs/gpu-dit.toml) and the VAE decoder (configs/gpu-vae-decoder.toml) train side by
# side, both starting from weights/. DEST then holds their logs, the new denoiser with the
# shipped VAE (DEST/dit-only) and the new denoiser with the new decoder (DEST/model). Score
# them with benchmarks/quality.py before anything replaces weights/.
#   scripts/train_gpu.sh 8 /tmp/gpu-run
set -euo pipefail
minutes=${1:?usage: scripts/train_gpu.sh MINUTES DEST}
dest=${2:?usage: scripts/train_gpu.sh MINUTES DEST}
runs=${RUNS:-runs}
dit_config=${DIT_CONFIG:-configs/gpu-dit.toml}
vae_config=${VAE_CONFIG:-configs/gpu-vae-decoder.toml}
python=${PYTHON:-python3}
mkdir -p "$dest"

$python -m cinegen train --config "$vae_config" --out-dir "$runs/gpu-vae-decoder" --minutes "$minutes" \
    >"$dest/vae.log" 2>&1 &
vae=$!
$python -m cinegen train --config "$dit_config" --out-dir "$runs/gpu-dit" --minutes "$minutes" >"$dest/dit.log" 2>&1
cp -r "$runs/gpu-dit/model" "$dest/dit-only"
# A failed decoder run still leaves the denoiser's result in DEST/dit-only.
wait "$vae"
$python -m cinegen train --export "$dest/model" --run "$runs/gpu-dit" --autoencoder "$runs/gpu-vae-decoder"
