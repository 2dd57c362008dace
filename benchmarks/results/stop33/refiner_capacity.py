"""Can a per-frame network at full resolution sharpen the VAE's edges at all? An upper-bound check
for the edge refiner of commit 90e583b (taken out in 510c936), without the VAE in the loop: the shipped
VAE's decodes (gate off) of 64 rendered clips are computed once, and a fresh refiner (`refiner` below,
the same network) is fitted on them directly (random 64 px crops, L1
weighted 9x within 3 px of an edge), then scored on 16 other clips: the mean per-pixel error
(8-bit levels) by distance to the nearest edge of the rendered frame (a neighbour differing by > 20).

    python benchmarks/results/stop33/refiner_capacity.py [WIDTH] [LR] [STEPS]
"""
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from cinegen.data import read_captions
from cinegen.pipeline import to_video_tensor
from cinegen.train import load_autoencoder
from cinegen.world import parse_caption, render

BANDS = [0, 1, 2, 3, 4, 8, 1000]  # pixels from the nearest edge


def refiner(width: int) -> torch.nn.Sequential:
    """A residual correction per frame at full resolution (11 px receptive field), zero at the start."""
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, width, 3, padding=1), torch.nn.SiLU(),
        torch.nn.Conv2d(width, width, 3, padding=2, dilation=2), torch.nn.SiLU(),
        torch.nn.Conv2d(width, width, 3, padding=1), torch.nn.SiLU(),
        torch.nn.Conv2d(width, 3, 3, padding=1),
    )
    torch.nn.init.zeros_(net[-1].weight)
    torch.nn.init.zeros_(net[-1].bias)
    return net


def decoded_frames(vae, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(decoded, rendered) frames of the captions' clips, (N, 3, H, W) in [-1, 1]."""
    decoded, rendered = [], []
    gate, vae.gate = vae.gate, None
    for caption in captions:
        frames = render(parse_caption(caption), width=128, height=128, fps=8.0, num_frames=17, seed=1).frames
        video = to_video_tensor(frames)
        with torch.inference_mode():
            decoded.append(vae.decode(vae.encode(video)).clamp(-1, 1)[0].transpose(0, 1))
        rendered.append(video[0].transpose(0, 1))
    vae.gate = gate
    return torch.cat(decoded), torch.cat(rendered)


def error_by_edge_distance(decoded: torch.Tensor, rendered: torch.Tensor) -> list[float]:
    truth, out = ((rendered + 1) * 127.5).numpy(), ((decoded + 1) * 127.5).round().numpy()
    total, count = np.zeros(len(BANDS) - 1), np.zeros(len(BANDS) - 1)
    for t in range(len(truth)):
        edge = (np.abs(np.diff(truth[t], axis=1, prepend=truth[t][:, :1])).max(0) > 20) | (
            np.abs(np.diff(truth[t], axis=2, prepend=truth[t][:, :, :1])).max(0) > 20)
        distance = ndimage.distance_transform_edt(~edge)
        error = np.abs(out[t] - truth[t]).mean(0)
        for b in range(len(BANDS) - 1):
            band = (distance >= BANDS[b]) & (distance < BANDS[b + 1])
            total[b] += error[band].sum()
            count[b] += band.sum()
    return [round(float(x), 2) for x in total / count]


def main() -> None:
    width, lr, steps = (int(sys.argv[1]) if len(sys.argv) > 1 else 24, float(sys.argv[2]) if len(sys.argv) > 2 else 1e-3,
                        int(sys.argv[3]) if len(sys.argv) > 3 else 1500)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    vae = load_autoencoder("weights").eval()
    captions = read_captions("benchmarks/results/stop10/validation_captions_2.txt")
    train_x, train_y = decoded_frames(vae, captions[32:96])
    test_x, test_y = decoded_frames(vae, captions[:16])
    print("bands (px from an edge)", BANDS)
    print("no refiner", error_by_edge_distance(test_x, test_y), flush=True)
    net = refiner(width)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    start = time.time()
    for step in range(1, steps + 1):
        pick = torch.randint(len(train_x), (16,))
        i, j = torch.randint(0, 65, (2,))
        x, y = train_x[pick, :, i:i + 64, j:j + 64], train_y[pick, :, i:i + 64, j:j + 64]
        edges = torch.maximum(F.pad((y.diff(dim=2).abs().amax(1, keepdim=True) > 0.1).float(), (0, 0, 1, 0)),
                              F.pad((y.diff(dim=3).abs().amax(1, keepdim=True) > 0.1).float(), (1, 0)))
        weight = 1 + 8 * F.max_pool2d(edges, 7, 1, 3)
        loss = (weight * (x + net(x) - y).abs()).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 300 == 0:
            with torch.no_grad():
                refined = (test_x + net(test_x)).clamp(-1, 1)
            print(step, error_by_edge_distance(refined, test_y), f"{time.time() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
