#!/bin/bash
# Stop 36's held-out battery for a decoder candidate (model directory M), rows into DIR, in two
# lanes of one thread each, in two parts:
#   decide: what stop 35's denoised decoder broke (extend, connect and loop seams), and text->video
#           on the 128 validation latents and stop 34's 256 held-out 1:1 latents;
#   rest:   the rest of stop 35's battery.sh, for a candidate that passed (not the events, which no
#           decoder change can teach).
#   bash benchmarks/results/stop36/battery.sh decide runs/cand36B300 runs/dec36B300
set -u
PART=$1; M=$2; DIR=$3; mkdir -p $DIR
export OMP_NUM_THREADS=1
R=benchmarks/results
decide_a() {
  python $R/stop34/decoder_on_latents.py runs/hold/val.npz $M > $DIR/t2v_val.jsonl
  python benchmarks/tasks.py --model $M --clips 64 --seed 0 --tasks loop,loop_video > $DIR/loops.jsonl
  python $R/stop34/decoder_on_latents.py runs/held34/a11.npz $M > $DIR/t2v_1x1.jsonl
}
decide_b() {
  python benchmarks/tasks.py --model $M --clips 64 --seed 0 --tasks extend,extend_backward,connect > $DIR/extend.jsonl
}
rest_a() {
  python $R/stop34/decoder_on_latents.py runs/held34/a169.npz $M > $DIR/t2v_16x9.jsonl
  python $R/stop34/decoder_on_latents.py runs/held34/a916.npz $M > $DIR/t2v_9x16.jsonl
  python benchmarks/tasks.py --model $M --tasks '' --clips 0 --long 60 --long-clips 25 --seed 0 > $DIR/long_s0.jsonl
  python benchmarks/tasks.py --model $M --clips 64 --seed 0 --tasks mask_edit > $DIR/mask_edit.jsonl
  python benchmarks/tasks.py --model $M --tasks image2video --clips 64 --seed 0 > $DIR/i2v_s0.jsonl
  python benchmarks/tasks.py --model $M --tasks image2video --clips 64 --seed 1 > $DIR/i2v_s1.jsonl
  python benchmarks/vae_psnr.py --model $M > $DIR/vae_psnr.jsonl
}
rest_b() {
  python benchmarks/tasks.py --model $M --tasks '' --clips 0 --long 60 --long-clips 25 --seed 1 > $DIR/long_s1.jsonl
  python benchmarks/tasks.py --model $M --tasks image2video --clips 64 --seed 2 > $DIR/i2v_s2.jsonl
  python benchmarks/tasks.py --model $M --tasks image2video --clips 64 --seed 3 > $DIR/i2v_s3.jsonl
  python benchmarks/draft_final.py --model $M --clips 24 --adherence > $DIR/draft.jsonl
  python benchmarks/tasks.py --model $M --tasks storyboard --clips 64 --seed 0 > $DIR/story.jsonl
}
${PART}_a > $DIR/${PART}_a.log 2>&1 &
${PART}_b > $DIR/${PART}_b.log 2>&1 &
wait
