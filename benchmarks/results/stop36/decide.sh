#!/bin/bash
# The rows a decoder candidate (model directory M) is first judged on, into DIR, in two lanes of
# one thread each: what stop 35's denoised decoder broke (extend, connect and loop seams), and
# text->video on the 128 validation latents and stop 34's 256 held-out 1:1 latents. The rest of
# stop 35's battery.sh runs only for a candidate that passes these.
#   bash benchmarks/results/stop36/decide.sh runs/candA runs/decA
set -u
M=$1; DIR=$2; mkdir -p $DIR
export OMP_NUM_THREADS=1
R=benchmarks/results
lane_a() {
  python $R/stop34/decoder_on_latents.py runs/hold/val.npz $M > $DIR/t2v_val.jsonl
  python benchmarks/tasks.py --model $M --clips 64 --seed 0 --tasks loop,loop_video > $DIR/loops.jsonl
  python $R/stop34/decoder_on_latents.py runs/held34/a11.npz $M > $DIR/t2v_1x1.jsonl
}
lane_b() {
  python benchmarks/tasks.py --model $M --clips 64 --seed 0 --tasks extend,extend_backward,connect > $DIR/extend.jsonl
}
lane_a > $DIR/lane_a.log 2>&1 &
lane_b > $DIR/lane_b.log 2>&1 &
wait
