#!/usr/bin/env python3
"""PyTorch NCCL baseline for `wideep bench nccl --torch`.

Run under torchrun:
    python3 -m torch.distributed.run --standalone --nproc_per_node N \
        scripts/bench/torch_nccl.py --cases '<json>' [--out result.json]

--cases is the JSON list of cases that wideep planned (src/cli/bench/nccl-metrics.ts):
    {"id", "op": "all-reduce" | "all-to-all", "label", "bytes"?, "rowsPerPeer"?,
     "hidden"?, "warmup", "iters", "scaleLog2"}
Without --cases, the default plan is used (all-reduce 8/64/512 MiB,
all-to-all 128/4096/8192 rows of 7168 per peer, 20 warm-up, 50 timed).

Every op is timed the way wideep's worker times it: in-place bf16 all_reduce
(sum) or all_to_all_single, torch.cuda.Event around each op, warm-up first,
the timed ops enqueued behind a GPU sleep (so the host's enqueue rate does not
show), the median of the timed iterations per rank. Rank 0 gathers every rank's
medians, prints one JSON line on stdout and writes it to --out.
"""
import argparse
import datetime
import json
import math
import os
import statistics
import sys

import torch
import torch.distributed as dist

MIB = 1 << 20


def default_cases(world, warmup, iters):
    growth = math.ceil(math.log2(max(2, world)))
    scale = max(-100, min(0, 120 - growth * (warmup + iters)))
    cases = []
    for mib in (8, 64, 512):
        cases.append({"id": f"all_reduce_{mib}MiB", "op": "all-reduce", "label": f"all-reduce {mib} MiB",
                      "bytes": mib * MIB, "warmup": warmup, "iters": iters, "scaleLog2": scale})
    for rows in (128, 4096, 8192):
        cases.append({"id": f"all_to_all_{rows}", "op": "all-to-all", "label": f"all-to-all {rows} rows/peer",
                      "rowsPerPeer": rows, "hidden": 7168, "warmup": warmup, "iters": iters, "scaleLog2": 0})
    return cases


def nccl_version():
    v = torch.cuda.nccl.version()
    if isinstance(v, int):  # older torch: 22809
        return f"{v // 10000}.{v // 100 % 100}.{v % 100}" if v >= 10000 else f"{v // 1000}.{v // 100 % 10}.{v % 100}"
    return ".".join(str(x) for x in v)


def log(rank, text):
    if rank == 0:
        print(f"[bench nccl torch] {text}", file=sys.stderr, flush=True)


def random_bf16(shape, scale_log2, device):
    # Uniform in (-2^scale, 2^scale): never all zeros, no NaN.
    t = torch.empty(shape, dtype=torch.bfloat16, device=device)
    t.uniform_(-1.0, 1.0)
    t.mul_(2.0 ** scale_log2)
    return t


# About 20 ms of GPU sleep at H200 clocks: long enough to enqueue a case's
# timed ops behind it (wideep's worker covers them the same way).
COVER_CYCLES = 40_000_000


def time_op(fn, warmup, iters):
    """Per-op CUDA-event times in microseconds, of the GPU work alone."""
    dist.barrier()
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    # Line the ranks up on the GPU, then keep the stream busy while the ops are enqueued.
    one = torch.zeros(1, device=torch.cuda.current_device())
    dist.all_reduce(one)
    torch.cuda._sleep(COVER_CYCLES)
    for i in range(iters):
        starts[i].record()
        fn()  # synchronous op: the current stream waits for NCCL's stream before ends[i]
        ends[i].record()
    torch.cuda.synchronize()
    return [s.elapsed_time(e) * 1000.0 for s, e in zip(starts, ends)]


def run_case(case, world, device):
    warmup, iters = int(case["warmup"]), int(case["iters"])
    if case["op"] == "all-reduce":
        x = random_bf16((int(case["bytes"]) // 2,), case["scaleLog2"], device)
        times = time_op(lambda: dist.all_reduce(x, op=dist.ReduceOp.SUM), warmup, iters)
        del x
    elif case["op"] == "all-to-all":
        rows = int(case["rowsPerPeer"]) * world
        x = random_bf16((rows, int(case["hidden"])), case["scaleLog2"], device)
        y = torch.zeros_like(x)
        times = time_op(lambda: dist.all_to_all_single(y, x), warmup, iters)
        del x, y
    else:
        raise ValueError(f"unknown op {case['op']!r}")
    return {"id": case["id"], "medianUs": statistics.median(times), "minUs": min(times)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", help="JSON list of cases (default: the standard plan)")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--out", help="file rank 0 writes the JSON result to")
    ap.add_argument("--timeout-s", type=int, default=300, help="NCCL process-group timeout")
    args = ap.parse_args()

    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    torch.cuda.set_device(local_rank)
    device = torch.device("cuda", local_rank)
    dist.init_process_group("nccl", device_id=device, timeout=datetime.timedelta(seconds=args.timeout_s))
    try:
        cases = json.loads(args.cases) if args.cases else default_cases(world, args.warmup, args.iters)
        mine = []
        for case in cases:
            log(rank, f"{case['label']} ({case['warmup']} warm-up, {case['iters']} timed) ...")
            r = run_case(case, world, device)
            mine.append(r)
            log(rank, f"{case['label']}: {r['medianUs']:.1f} us median on rank 0")
            torch.cuda.empty_cache()
        gathered = [None] * world
        dist.all_gather_object(gathered, mine)
        if rank == 0:
            result = {
                "suite": "torch-nccl",
                "torchVersion": torch.__version__,
                "ncclVersion": nccl_version(),
                "worldSize": world,
                "cases": [
                    {
                        "id": case["id"],
                        "perRankMedianUs": [next(c["medianUs"] for c in g if c["id"] == case["id"]) for g in gathered],
                        "perRankMinUs": [next(c["minUs"] for c in g if c["id"] == case["id"]) for g in gathered],
                    }
                    for case in cases
                ],
            }
            line = json.dumps(result)
            if args.out:
                with open(args.out, "w") as f:
                    f.write(line + "\n")
            print(line, flush=True)
        dist.barrier()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
