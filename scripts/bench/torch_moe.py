"""PyTorch baseline of `wideep bench moe`, run in the same job on the same GPU.

The DeepSeek-V3 MoE layer as a plain PyTorch MoE writes it, bf16, eager: the
gate GEMM, sigmoid scores and grouped top-k; tokens sorted by expert and
gathered with index_select; torch._grouped_mm for gate+up, SwiGLU,
torch._grouped_mm for down; the outputs weighted and added back per token with
index_add_; the shared expert on every token. Reads {iters, warmup, shape} on
stdin and prints one JSON object: the prefill and decode steps' median GPU
time (CUDA events, L2 flushed and the stream kept busy while the host
enqueues, as wideep's side is timed) and median host time per step.

When wideep's experts are fp8 (shape.dtype "fp8e4m3") it also times the same
layer with fp8 experts as PyTorch writes them: torch._scaled_grouped_mm with
rowwise scales (per token row, per weight output channel; PyTorch's grouped
fp8 GEMM has no 128x128 block scales), tokens and the SwiGLU output cast to
fp8 per row. Where that fails, "fp8Error" says why and the bf16 figures stand.
"""
import json
import math
import sys
import time

import torch
import torch.nn.functional as F

# About 5 ms of GPU sleep at H100/H200 clocks: the host enqueues a whole step behind it.
COVER_CYCLES = 10_000_000


def median(values):
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def timed(fn, iters, warmup, flush):
    gpu, host = [], []
    for i in range(warmup + iters):
        flush.fill_(i & 0xFF)
        torch.cuda._sleep(COVER_CYCLES)
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        t0 = time.perf_counter()
        fn()
        t1 = time.perf_counter()
        end.record()
        end.synchronize()
        if i >= warmup:
            gpu.append(start.elapsed_time(end) * 1e3)
            host.append((t1 - t0) * 1e6)
    return {"gpuUs": round(median(gpu), 1), "hostUs": round(median(host), 2)}


class MoeLayer:
    """Random weights with std 1/sqrt(fan-in), as wideep's randomLayerWeights makes them."""

    def __init__(self, s):
        self.H, self.I, self.E = s["hidden"], s["moeIntermediate"], s["experts"]
        self.K, self.G, self.TG = s["topk"], s["groups"], s["topkGroup"]
        self.scale = s["routedScalingFactor"]
        self.Is = s["sharedExperts"] * self.I
        H, I, E, Is = self.H, self.I, self.E, self.Is

        def normal(*shape, fan_in):
            return torch.randn(*shape, device="cuda", dtype=torch.bfloat16).mul_(1 / math.sqrt(fan_in))

        self.gate = normal(E, H, fan_in=H)
        self.bias = torch.randn(E, device="cuda", dtype=torch.float32) * s["routerBiasStd"]
        # nn.Linear's layout [out, in] per expert; _grouped_mm takes [E, in, out], a transposed view.
        self.w13 = normal(E, 2 * I, H, fan_in=H)
        self.w2 = normal(E, H, I, fan_in=I)
        self.s13 = normal(2 * Is, H, fan_in=H)
        self.s2 = normal(H, Is, fan_in=Is)

    def route(self, x):
        T, E, G = x.shape[0], self.E, self.G
        scores = F.linear(x, self.gate).float().sigmoid()
        s = scores + self.bias
        group_scores = s.view(T, G, -1).topk(2, dim=-1)[0].sum(-1)
        groups = group_scores.topk(self.TG, dim=-1, sorted=False)[1]
        mask = torch.zeros_like(group_scores).scatter_(1, groups, 1)
        keep = mask.unsqueeze(-1).expand(T, G, E // G).reshape(T, E).bool()
        idx = s.masked_fill(~keep, float("-inf")).topk(self.K, dim=-1, sorted=False)[1]
        w = scores.gather(1, idx)
        return idx, w / (w.sum(-1, keepdim=True) + 1e-20) * self.scale

    def shared(self, x):
        h = F.linear(x, self.s13)
        return F.linear(F.silu(h[:, : self.Is]) * h[:, self.Is :], self.s2)

    def sort_by_expert(self, x):
        """Routes x: each (token, choice) in expert order, its token, its weight, and the groups' end offsets."""
        idx, w = self.route(x)
        flat = idx.view(-1)
        order = flat.argsort()
        # Counts without a host sync (bincount reads its maximum back).
        counts = torch.zeros(self.E, device="cuda", dtype=torch.int64).scatter_add_(0, flat, torch.ones_like(flat))
        return order // self.K, w.view(-1)[order], counts.cumsum(0).to(torch.int32)

    def combine(self, x, token, weight, y):
        """The routed outputs weighted and added back per token, onto the shared expert's."""
        return self.shared(x).index_add_(0, token, y * weight.unsqueeze(-1).to(y.dtype))

    def forward(self, x):
        token, weight, offs = self.sort_by_expert(x)
        h = torch._grouped_mm(x.index_select(0, token), self.w13.transpose(-2, -1), offs=offs)
        a = F.silu(h[:, : self.I]) * h[:, self.I :]
        y = torch._grouped_mm(a, self.w2.transpose(-2, -1), offs=offs)
        return self.combine(x, token, weight, y)


def rowwise_fp8(t):
    """t [..., K] cast to float8_e4m3fn with one float32 scale per row (t = q * scale)."""
    scale = t.abs().amax(-1, keepdim=True).float().clamp(min=1e-4) / 448.0
    return (t.float() / scale).to(torch.float8_e4m3fn), scale.squeeze(-1)


class Fp8Experts:
    """The layer's routed experts in fp8, rowwise-scaled, as torch._scaled_grouped_mm takes them."""

    def __init__(self, layer):
        self.layer = layer
        # [E, N, K] row-major, cast per output channel; the GEMM takes [E, K, N] column-major: a transposed view.
        self.w13, self.s13 = self.cast(layer.w13)
        self.w2, self.s2 = self.cast(layer.w2)

    @staticmethod
    def cast(w):
        """One expert at a time: a float32 copy of all 256 at once would not fit beside them."""
        q = torch.empty(w.shape, device="cuda", dtype=torch.float8_e4m3fn)
        scale = torch.empty(w.shape[:-1], device="cuda", dtype=torch.float32)
        for e in range(w.shape[0]):
            q[e], scale[e] = rowwise_fp8(w[e])
        return q, scale

    def forward(self, x):
        L = self.layer
        token, weight, offs = L.sort_by_expert(x)
        # Cast once per token, then gather the fp8 rows (as bytes: index_select need not know fp8) and their scales.
        x8, sx = rowwise_fp8(x)
        x8 = x8.view(torch.uint8).index_select(0, token).view(x8.dtype)
        h = torch._scaled_grouped_mm(x8, self.w13.transpose(-2, -1), sx.index_select(0, token), self.s13, offs=offs, out_dtype=torch.bfloat16)
        a8, sa = rowwise_fp8(F.silu(h[:, : L.I]) * h[:, L.I :])
        y = torch._scaled_grouped_mm(a8, self.w2.transpose(-2, -1), sa, self.s2, offs=offs, out_dtype=torch.bfloat16)
        return L.combine(x, token, weight, y)


def main():
    cfg = json.load(sys.stdin)
    s, iters, warmup = cfg["shape"], cfg["iters"], cfg["warmup"]
    torch.manual_seed(1)
    layer = MoeLayer(s)
    flush = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
    out = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0)}
    with torch.inference_mode():
        fp8 = None
        if s.get("dtype") == "fp8e4m3":
            try:
                fp8 = Fp8Experts(layer)
            except Exception as e:  # noqa: BLE001
                out["fp8Error"] = str(e).splitlines()[0]
        for phase, tokens in (("prefill", s["prefillTokens"]), ("decode", s["decodeTokens"])):
            x = torch.randn(tokens, s["hidden"], device="cuda", dtype=torch.bfloat16)
            y = layer.forward(x)
            if not torch.isfinite(y).all():
                raise RuntimeError(f"{phase}: the layer's output is not finite")
            out[phase] = timed(lambda: layer.forward(x), iters, warmup, flush)
            if fp8 is None:
                continue
            try:
                y8 = fp8.forward(x)
                # Rowwise fp8 against the same layer in bf16: a cast error of a few percent, not a wrong layer.
                err = ((y8.float() - y.float()).norm() / y.float().norm()).item()
                if not err < 0.1:
                    raise RuntimeError(f"{phase}: the fp8 layer is {err:.3f} away from the bf16 one (relative norm)")
                out[phase + "Fp8"] = timed(lambda: fp8.forward(x), iters, warmup, flush)
            except Exception as e:  # noqa: BLE001
                out["fp8Error"] = f"{phase}: {str(e).splitlines()[0]}"
                fp8 = None
    print(json.dumps(out))


if __name__ == "__main__":
    main()
