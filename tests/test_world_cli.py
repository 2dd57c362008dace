"""CLI: outputs on success; one-line errors, exit code 2 and no partial files on bad input."""

import json

import pytest

from cinegen.cli import main


def test_render_then_eval(tmp_path, capsys):
    out, truth = tmp_path / "clip.mp4", tmp_path / "truth.json"
    caption = "a big red ball moves right on a checkered white background"
    assert (
        main(
            [
                "world",
                "render",
                caption,
                "-o",
                str(out),
                "--truth",
                str(truth),
                "--seconds",
                "2",
                "--fps",
                "8",
            ]
        )
        == 0
    )
    record = json.loads(truth.read_text())
    assert len(record["frames"]) == 16 and record["frames"][0]["objects"][0]["color"] == "red"
    capsys.readouterr()
    assert main(["eval", str(out), "--prompt", caption, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["adherence"] == 1.0


def test_sample_then_eval_folder(tmp_path, capsys):
    folder = tmp_path / "set"
    assert (
        main(
            [
                "world",
                "sample",
                "-n",
                "2",
                "-o",
                str(folder),
                "--width",
                "64",
                "--height",
                "64",
                "--seconds",
                "1",
            ]
        )
        == 0
    )
    rows = [json.loads(x) for x in (folder / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all((folder / r["video"]).is_file() for r in rows)
    capsys.readouterr()
    assert main(["eval", str(folder), "--prompts", str(folder / "manifest.jsonl")]) == 0
    assert "mean of 2" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["world", "render", "a red ball zigzags", "-o", "{d}/x.mp4"],
        ["world", "render", "a red ball", "-o", "{d}/x.mp4", "--width", "0", "--height", "0"],
        ["world", "render", "a red ball", "-o", "{d}/x.mp4", "--fps", "100000"],
        ["world", "render", "a red ball", "-o", "{d}/x.mp4", "--seconds", "abc"],
        ["world", "sample", "-n", "2", "-o", "{d}/x", "--fps", "0"],
        ["eval", "{d}/missing.mp4", "--prompt", "a red ball"],
        ["eval", "{d}/not_video.mp4", "--prompt", "a red ball"],
        ["eval", "{d}/not_video.mp4", "--prompt", "a red ball that zigzags"],
        ["eval", "{d}", "--prompts", "{d}/numbered.jsonl"],
        ["eval", "{d}", "--prompts", "{d}/binary.jsonl"],
        ["eval", "{d}", "a red ball", "--prompts", "{d}/numbered.jsonl"],
        ["eval", "{d}/not_video.mp4"],
        ["eval", "{d}/not_video.mp4", "a red ball", "--prompt", "a blue ball"],
        ["eval", "{d}/not_video.mp4", " "],
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, argv):
    (tmp_path / "not_video.mp4").write_text("not a video")
    (tmp_path / "numbered.jsonl").write_text('{"video": 5, "prompt": "a red ball"}\n')
    (tmp_path / "binary.jsonl").write_bytes(b"\x8f\xff\x00")
    before = set(tmp_path.iterdir())
    code = main([a.format(d=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("cinegen: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert set(tmp_path.iterdir()) == before  # no partial output


def test_eval_takes_the_prompt_as_an_argument_or_from_what_cinegen_recorded(tmp_path, capsys):
    from cinegen.media import write_video
    from cinegen.world import parse_caption, render

    caption = "a big red ball moves right on a checkered white background"
    frames = render(parse_caption(caption), width=64, height=64, fps=8.0, num_frames=9, seed=0).frames
    recorded = write_video(tmp_path / "made.mp4", frames, 8.0, {"request": {"prompt": caption}})
    plain = write_video(tmp_path / "plain.mp4", frames, 8.0)
    scores = []
    for argv in (["eval", str(plain), "--prompt", caption], ["eval", str(plain), caption], ["eval", str(recorded)]):
        assert main([*argv, "--json"]) == 0
        out, err = capsys.readouterr()
        scores.append(json.loads(out))
        assert (caption in err) == (argv[-1] != caption)  # a note says which prompt was recorded
    assert scores[0] == scores[1] == scores[2] and scores[0]["prompt"] == caption
    assert main(["eval", str(plain)]) == 2
    assert "holds no prompt recorded by cinegen" in capsys.readouterr().err
    deep = tmp_path / "deep.mp4"  # another tool's comment, JSON nested too deep to parse: a traceback
    import av

    with av.open(str(plain)) as src, av.open(str(deep), "w") as dst:
        dst.metadata["comment"] = "[" * 100_000 + "]" * 100_000
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    assert main(["eval", str(deep)]) == 2
    assert "holds no prompt recorded by cinegen" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "missing.mp4")]) == 2
    err = capsys.readouterr().err
    assert "missing.mp4' does not exist" in err and "give the clip's prompt" not in err
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    assert main(["eval", str(tmp_path / "broken.mp4")]) == 2
    err = capsys.readouterr().err
    assert "broken.mp4' is not a readable video" in err and "give the clip's prompt" not in err


@pytest.mark.parametrize(("task", "message"), [("teleport", "unknown task 'teleport'; allowed: image2video"),
                                               ("extend", "task 'extend' needs --reference")])
def test_eval_checks_its_task_before_reading_any_clip(tmp_path, capsys, task, message):
    """A four-minute clip was decoded and detected before a wrong --task was named (here: no clip at all)."""
    assert main(["eval", str(tmp_path / "unread.mp4"), "--prompt", "a red ball", "--task", task]) == 2
    assert message in capsys.readouterr().err
