#!/usr/bin/env bash
# Stop 28's device call (one GPU, 15 device minutes in all): three runs side by side for MINUTES
# of wall time each, then what they made in DEST (at most 16 MB a file for the tool to bring back).
#   A  configs/gpu-dit-events.toml    the shipped DiT on event scenes (issue 5: trails, dots, walls)
#   B  configs/gpu-vae-decoder.toml   the shipped VAE's decoder alone: the same latents, so the
#                                     shipped DiT works on it as it is (issue 4: flicker)
#   C  configs/gpu-vae-joint.toml     the whole VAE; paired with the shipped DiT as stop 24 paired
#                                     the old DiT with B8, whose encoder had also moved
# The two VAE runs render their clips with 4 workers and one thread each (their configs say 6 and
# 2), so that A's latent cache gets most of the 16 cores.
#   bash benchmarks/results/stop28/gpu_call.sh 8 $OUT     # on the device, from the repository root
set -u
minutes=${1:?usage: gpu_call.sh MINUTES DEST}
dest=${2:?usage: gpu_call.sh MINUTES DEST}
python=${PYTHON:-python3}
mkdir -p "$dest/logs" runs
$python scripts/minilm_carry.py unpack .carry/minilm /tmp/minilm >"$dest/logs/unpack.log" 2>&1 || exit 1
export PYTHONPATH=/tmp/minilm/shim:$PWD PYTHONUNBUFFERED=1
nvidia-smi -L >"$dest/logs/device.txt" 2>&1; nproc >>"$dest/logs/device.txt"

for part in decoder joint; do
    printf 'base = "%s"\nworkers = 4\nthreads = 1\nout_dir = "runs/vae-%s"\n' \
        "$PWD/configs/gpu-vae-$part.toml" "$part" >"runs/vae-$part.toml"
done
train() { $python -m cinegen train --config "$1" --minutes "$minutes" --cooldown 0.3 >"$dest/logs/$2.log" 2>&1; }
train configs/gpu-dit-events.toml a_events & a=$!
train runs/vae-decoder.toml b_decoder & b=$!
train runs/vae-joint.toml c_joint & c=$!
wait $a; echo "A exit $?" >>"$dest/logs/device.txt"
wait $b; echo "B exit $?" >>"$dest/logs/device.txt"
wait $c; echo "C exit $?" >>"$dest/logs/device.txt"

cp runs/gpu-dit-events/model/model.safetensors "$dest/a_events.safetensors"
cp runs/gpu-dit-events/model/config.json "$dest/logs/a_config.json"
$python -m cinegen train --export runs/b-model --run weights --autoencoder runs/vae-decoder \
    >>"$dest/logs/b_decoder.log" 2>&1 && cp runs/b-model/model.safetensors "$dest/b_decoder.safetensors"
# C's encoder moved, which --export refuses for a denoiser trained on the old latents: pair them
# here, keeping the shipped latent statistics the DiT learned with.
$python - >>"$dest/logs/c_joint.log" 2>&1 <<'PY' && cp runs/c-model/model.safetensors "$dest/c_joint.safetensors"
import torch
from cinegen.backends.native import NativeBackend
from cinegen.train import load_autoencoder
shipped = NativeBackend.load("weights", torch.device("cpu"), text_encoder=False)
vae = load_autoencoder("runs/vae-joint", shipped.config.autoencoder)
vae.latent_mean.copy_(shipped.vae.latent_mean)
vae.latent_std.copy_(shipped.vae.latent_std)
NativeBackend.save("runs/c-model", shipped.config, vae, shipped.dit)
PY
for run in gpu-dit-events vae-decoder vae-joint; do cp "runs/$run/log.jsonl" "$dest/logs/$run.jsonl"; done
tr '\r' '\n' <"$dest/logs/a_events.log" | grep -v "it/s\]$\|clip/s\]$" >"$dest/logs/a_events.txt" && rm "$dest/logs/a_events.log"
ls -la "$dest" >>"$dest/logs/device.txt"
