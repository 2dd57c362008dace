#!/bin/bash
# Issue 4's and 5's held-out battery for model directory M, rows into DIR, in two lanes of one
# thread each (as stops 29 and 31 ran it). Text->video is scored on the stop 34 held-out latents
# (runs/held34/a*.npz, `../stop34/heldout_latents.py`), since only the decoder differs.
#   bash benchmarks/results/stop35/battery.sh runs/cand runs/bat35
set -u
M=$1; DIR=$2; mkdir -p $DIR
export OMP_NUM_THREADS=1
R=benchmarks/results
lane_a() {
  for a in a169 a916; do  # the shipped decoder on the same latents, once
    [ -s runs/held34/${a}_weights.jsonl ] || python $R/stop34/decoder_on_latents.py runs/held34/$a.npz weights > runs/held34/${a}_weights.jsonl
  done
  python $R/stop34/decoder_on_latents.py runs/held34/a11.npz $M > $DIR/t2v_1x1.jsonl
  python $R/stop34/decoder_on_latents.py runs/held34/a169.npz $M > $DIR/t2v_16x9.jsonl
  python $R/stop34/decoder_on_latents.py runs/held34/a916.npz $M > $DIR/t2v_9x16.jsonl
  python benchmarks/tasks.py --model $M --tasks '' --clips 0 --long 60 --long-clips 25 --seed 0 > $DIR/long_s0.jsonl
  python benchmarks/tasks.py --model $M --clips 64 --seed 0 --tasks loop,loop_video,mask_edit > $DIR/loops.jsonl
  python benchmarks/tasks.py --model $M --tasks image2video --clips 64 --seed 0 > $DIR/i2v_s0.jsonl
  python benchmarks/tasks.py --model $M --tasks image2video --clips 64 --seed 1 > $DIR/i2v_s1.jsonl
  python benchmarks/vae_psnr.py --model $M > $DIR/vae_psnr.jsonl
}
lane_b() {
  python benchmarks/tasks.py --model $M --tasks '' --clips 0 --long 60 --long-clips 25 --seed 1 > $DIR/long_s1.jsonl
  python benchmarks/tasks.py --model $M --clips 64 --seed 0 --tasks extend,extend_backward,connect > $DIR/extend.jsonl
  python benchmarks/tasks.py --model $M --tasks image2video --clips 64 --seed 2 > $DIR/i2v_s2.jsonl
  python benchmarks/tasks.py --model $M --tasks image2video --clips 64 --seed 3 > $DIR/i2v_s3.jsonl
  python benchmarks/draft_final.py --model $M --clips 24 --adherence > $DIR/draft.jsonl
  python benchmarks/tasks.py --model $M --tasks storyboard --clips 64 --seed 0 > $DIR/story.jsonl
  python benchmarks/tasks.py --model $M --tasks '' --clips 0 --events > $DIR/events.jsonl
}
lane_a > $DIR/lane_a.log 2>&1 &
lane_b > $DIR/lane_b.log 2>&1 &
wait
