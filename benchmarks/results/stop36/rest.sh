#!/bin/bash
# The rest of stop 35's battery.sh for a candidate that passed decide.sh (everything but the
# events, which no decoder change can teach), rows into the same DIR, in two lanes of one thread.
#   bash benchmarks/results/stop36/rest.sh runs/cand36B300 runs/dec36B300
set -u
M=$1; DIR=$2; mkdir -p $DIR
export OMP_NUM_THREADS=1
R=benchmarks/results
lane_a() {
  python $R/stop34/decoder_on_latents.py runs/held34/a169.npz $M > $DIR/t2v_16x9.jsonl
  python $R/stop34/decoder_on_latents.py runs/held34/a916.npz $M > $DIR/t2v_9x16.jsonl
  python benchmarks/tasks.py --model $M --tasks '' --clips 0 --long 60 --long-clips 25 --seed 0 > $DIR/long_s0.jsonl
  python benchmarks/tasks.py --model $M --clips 64 --seed 0 --tasks mask_edit > $DIR/mask_edit.jsonl
  python benchmarks/tasks.py --model $M --tasks image2video --clips 64 --seed 0 > $DIR/i2v_s0.jsonl
  python benchmarks/tasks.py --model $M --tasks image2video --clips 64 --seed 1 > $DIR/i2v_s1.jsonl
  python benchmarks/vae_psnr.py --model $M > $DIR/vae_psnr.jsonl
}
lane_b() {
  python benchmarks/tasks.py --model $M --tasks '' --clips 0 --long 60 --long-clips 25 --seed 1 > $DIR/long_s1.jsonl
  python benchmarks/tasks.py --model $M --tasks image2video --clips 64 --seed 2 > $DIR/i2v_s2.jsonl
  python benchmarks/tasks.py --model $M --tasks image2video --clips 64 --seed 3 > $DIR/i2v_s3.jsonl
  python benchmarks/draft_final.py --model $M --clips 24 --adherence > $DIR/draft.jsonl
  python benchmarks/tasks.py --model $M --tasks storyboard --clips 64 --seed 0 > $DIR/story.jsonl
}
lane_a > $DIR/rest_a.log 2>&1 &
lane_b > $DIR/rest_b.log 2>&1 &
wait
