"""PyTorch baseline of `wideep bench experts`, run in the same job on the same GPU.

Reads one JSON config on stdin, prints one JSON object on stdout: for each
grouped case torch._grouped_mm (bf16) and torch._scaled_grouped_mm (fp8,
rowwise scales), and DeepSeek-V3's grouped top-k routing written in PyTorch
ops. Times are CUDA-event medians after warm-up, with L2 flushed before each
run, the same method as the wideep side.
"""
import json
import sys

import torch


def timed(fn, iters, warmup, flush):
    out = []
    for i in range(warmup + iters):
        flush.fill_(i & 0xFF)
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        if i >= warmup:
            out.append(start.elapsed_time(end) * 1e3)
    out.sort()
    n = len(out)
    return out[n // 2] if n % 2 else (out[n // 2 - 1] + out[n // 2]) / 2


def grouped(case, iters, warmup, flush):
    E, M, N, K = case["E"], case["M"], case["N"], case["K"]
    dev = "cuda"
    a = torch.randn(E * M, K, device=dev, dtype=torch.bfloat16)
    b = (torch.randn(E, N, K, device=dev, dtype=torch.bfloat16) * 0.05).transpose(-2, -1)
    offs = torch.arange(1, E + 1, device=dev, dtype=torch.int32) * M
    res = {}
    try:
        res["bf16Us"] = timed(lambda: torch._grouped_mm(a, b, offs=offs), iters, warmup, flush)
    except Exception as e:  # noqa: BLE001 - reported, not hidden
        res["bf16Error"] = str(e).splitlines()[0]
    try:
        a8 = a.to(torch.float8_e4m3fn)
        b8 = b.transpose(-2, -1).contiguous().to(torch.float8_e4m3fn).transpose(-2, -1)
        sa = torch.ones(E * M, device=dev, dtype=torch.float32)
        sb = torch.ones(E, N, device=dev, dtype=torch.float32)
        res["fp8RowwiseUs"] = timed(
            lambda: torch._scaled_grouped_mm(a8, b8, sa, sb, offs=offs, out_dtype=torch.bfloat16), iters, warmup, flush
        )
    except Exception as e:  # noqa: BLE001
        res["fp8Error"] = str(e).splitlines()[0]
    del a, b
    return res


def router(cfg, iters, warmup, flush):
    T, E, G, TG, K = cfg["tokens"], cfg["experts"], cfg["groups"], cfg["topkGroup"], cfg["topk"]
    logits = torch.randn(T, E, device="cuda", dtype=torch.float32)
    bias = torch.randn(E, device="cuda", dtype=torch.float32) * 0.1

    def run():
        scores = logits.sigmoid()
        s = scores + bias
        gs = s.view(T, G, -1).topk(2, dim=-1)[0].sum(-1)
        gi = gs.topk(TG, dim=-1, sorted=False)[1]
        mask = torch.zeros(T, G, device="cuda").scatter_(1, gi, 1)
        keep = mask.unsqueeze(-1).expand(T, G, E // G).reshape(T, E).bool()
        idx = s.masked_fill(~keep, float("-inf")).topk(K, dim=-1, sorted=False)[1]
        w = scores.gather(1, idx)
        return idx, w / (w.sum(-1, keepdim=True) + 1e-20) * 2.5

    return {"topkUs": timed(run, iters, warmup, flush)}


def main():
    cfg = json.load(sys.stdin)
    flush = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
    iters, warmup = cfg["iters"], cfg["warmup"]
    out = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0),
        "grouped": [dict(case, **grouped(case, iters, warmup, flush)) for case in cfg["grouped"]],
        "router": router(cfg["router"], iters, warmup, flush),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
