"""Prototype (not kept): shot 2 of a storyboard starts from shot 1's last frame, edited to shot 2's
prompt (SDEdit at each given strength), then image→video. One JSON line per caption.

    python benchmarks/results/stop20/storyboard_from_last_frame_prototype.py CLIPS SEED STRENGTH...
"""

import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, "benchmarks")
from tasks import look_kept, second_shot  # noqa: E402

from cinegen.data import read_captions  # noqa: E402
from cinegen.evaluate import evaluate_clip  # noqa: E402
from cinegen.media import write_video  # noqa: E402
from cinegen.pipeline import GenerateRequest, Pipeline  # noqa: E402

FPS = 8.0


def main() -> None:
    clips, seed, strengths = int(sys.argv[1]), int(sys.argv[2]), [float(x) for x in sys.argv[3:]]
    torch.set_num_threads(1)
    pipe = Pipeline.load("weights", device="cpu")
    folder = Path(tempfile.mkdtemp())
    for i, caption in enumerate(read_captions("benchmarks/heldout_captions.txt")[:clips]):
        second = second_shot(caption, i)
        first_shot = pipe.run(GenerateRequest(caption, seconds=2, seed=seed)).frames
        row = {"caption": caption, "second": second, "adh_a": evaluate_clip(first_shot, FPS, caption)["adherence"]}
        # An edit needs one latent frame after the first: the shot's last 5 frames.
        tail = folder / "last.mp4"
        write_video(tail, first_shot[-5:], FPS)
        for strength in strengths:
            edited = pipe.run(GenerateRequest(second, task="edit", video=str(tail), strength=strength, seed=seed))
            start = folder / "start.png"
            write_video(start, edited.frames[-1], FPS)
            shot = pipe.run(GenerateRequest(second, image=str(start), seconds=2, seed=seed)).frames
            m = evaluate_clip(shot, FPS, second)
            row[f"s{strength}"] = {"adh_b": m["adherence"], "bg": m.get("background_right"),
                                   **look_kept(first_shot, shot, FPS)}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
