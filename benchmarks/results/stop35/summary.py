"""Issue 5's bars from the rows `battery.sh` writes, for a battery folder or for the shipped model's
rows of stops 31-32 ("shipped"): one JSON line per bar.

    python benchmarks/results/stop35/summary.py runs/bat35
    python benchmarks/results/stop35/summary.py shipped
"""
import json
import sys
from pathlib import Path

import numpy as np

R = Path("benchmarks/results")
SHIPPED = {  # the stop 31 gate rows (the weights shipped before stop 35), its long rows finished in stop 32
    "tasks": [R / "stop31/gate_tasks0.jsonl", R / "stop31/gate_tasks1.jsonl"],
    "i2v": [R / f"stop31/gate_i2v_s{s}.jsonl" for s in range(4)],
    "long": [R / "stop31/gate_long_s0.jsonl", R / "stop32/gate_long_s0_rest.jsonl",
             R / "stop31/gate_long_s1.jsonl", R / "stop32/gate_long_s1_rest.jsonl"],
    "draft": [R / "stop31/gate_draft.jsonl"],
    "story": [R / "stop31/gate_story.jsonl"],
    "events": [R / "stop31/gate_events.jsonl"],
}


def battery(folder: Path) -> dict:
    return {"tasks": [folder / "extend.jsonl", folder / "loops.jsonl", folder / "mask_edit.jsonl"],  # stop 36 ran mask_edit alone
            "i2v": [folder / f"i2v_s{s}.jsonl" for s in range(4)],
            "long": [folder / "long_s0.jsonl", folder / "long_s1.jsonl"],
            "draft": [folder / "draft.jsonl"], "story": [folder / "story.jsonl"], "events": [folder / "events.jsonl"]}


def rows(paths) -> list[dict]:
    out = []
    for path in paths:
        if path.is_file():
            out += [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]
    return out


def over(values, bar) -> dict:
    values = [v for v in values if v is not None]
    return {"n": len(values), "over": int(sum(v > bar for v in values)), "max": round(max(values), 3) if values else None}


def main() -> None:
    files = SHIPPED if sys.argv[1] == "shipped" else battery(Path(sys.argv[1]))
    tasks = rows(files["tasks"])
    by_task = {t: [r for r in tasks if r.get("task") == t] for t in
               ("extend", "extend_backward", "connect", "connect_independent", "loop", "loop_video", "mask_edit")}
    i2v = [r for r in rows(files["i2v"]) if r.get("task") == "image2video"]
    long = [r for r in rows(files["long"]) if r.get("task") == "long"]
    draft = [r for r in rows(files["draft"]) if r.get("benchmark") == "draft_final"]
    story = [r for r in rows(files["story"]) if r.get("task") == "storyboard_summary"]
    events = [r for r in rows(files["events"]) if r.get("task") == "events_summary"]
    summary = {
        "image2video": {"clips": len(i2v), "adherence": round(float(np.mean([r["adherence"] for r in i2v])), 4) if i2v else None,
                        "first_frame_30dB": sum(r["first_frame_psnr"] >= 30 for r in i2v)},
        "extend_joint": over([r["joint_discontinuity"] for r in by_task["extend"]], 2.0),
        "extend_objects_kept": round(float(np.mean([r["objects_kept"] for r in by_task["extend"]])), 4) if by_task["extend"] else None,
        "extend_backward_joint": over([r["joint_discontinuity"] for r in by_task["extend_backward"]], 2.0),
        "connect_joint": over([r["joint_discontinuity"] for r in by_task["connect"] + by_task["connect_independent"]], 2.0),
        "text_loop_seam": over([r["seam_ratio"] for r in by_task["loop"]], 1.5),
        "video_loop_seam": over([r["seam_ratio"] for r in by_task["loop_video"]], 1.5),
        "mask_edit": {"clips": len(by_task["mask_edit"]),
                      "outside_30dB": sum(r["outside_psnr"] >= 30 for r in by_task["mask_edit"]),
                      "tone_right": sum(r["tone_right"] == 1.0 for r in by_task["mask_edit"])},
        "one_minute": {"clips": len(long), "first10s_right": sum(r["adherence_first10s"] for r in long),
                       "last10s_right": sum(r["adherence_last10s"] for r in long)},
        "draft": {"clips": len(draft), "psnr_mean": round(float(np.mean([r["draft_psnr"] for r in draft])), 2) if draft else None,
                  "psnr_min": round(float(np.min([r["draft_psnr"] for r in draft])), 2) if draft else None},
        "storyboard_look_kept": story[-1]["storyboard_look_kept"] if story else None,
        "events_right": events[-1]["events_right"] if events else None,
    }
    if long:
        m = summary["one_minute"]
        m["ratio"] = round(m["last10s_right"] / max(1, m["first10s_right"]), 3)
    for key, value in summary.items():
        print(json.dumps({key: value}))


if __name__ == "__main__":
    main()
