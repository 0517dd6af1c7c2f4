"""The PyTorch peer of bench/train.ts: the same Llama shape and LoRA step, timed in PyTorch on the CPU.

A small Llama written out (RMSNorm, RoPE rotate_half, GQA, SwiGLU, tied or untied lm_head) with a frozen
random base (normal std 0.02, as transformers' initializer_range), LoRA r/alpha on q,k,v,o,gate,up,down of every
block as PEFT's Linear does it (base(x) + B(A(x)) * alpha/r, A kaiming-uniform, B zero), AdamW on the LoRA
factors only, clip_grad_norm_ 1.0. One step = forward + cross-entropy + backward + clip + AdamW.step, the same
work as ft's step. Prints one line `@result {json}` with the step times and which BLAS / threads torch used.

Run by bench/train.ts (see there); by hand:
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 bench/peer/torch_lora.py '<json spec>'
spec: {"model": {hiddenSize, intermediateSize, numHiddenLayers, numAttentionHeads, numKeyValueHeads, headDim,
        vocabSize, rmsNormEps, ropeTheta, tieWordEmbeddings}, "batch", "seq", "warmupSteps", "timedSteps",
        "threads", "lora": {"r", "alpha"}, "optim": {"lr", "beta1", "beta2", "eps", "weightDecay", "maxGradNorm"}}
"""
import json
import math
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn


class LoraLinear(nn.Module):
    """y = x W^T + (x A^T B^T) * alpha/r with W frozen (PEFT's lora.Linear without dropout)."""

    def __init__(self, inp, out, r, alpha):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out, inp) * 0.02, requires_grad=False)
        self.lora_A = nn.Parameter(torch.empty(r, inp))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.lora_B = nn.Parameter(torch.zeros(out, r))
        self.scaling = alpha / r

    def forward(self, x):
        return F.linear(x, self.weight) + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scaling


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim), requires_grad=False)
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Block(nn.Module):
    def __init__(self, c, r, alpha):
        super().__init__()
        h, m, H, KV, d = c["hiddenSize"], c["intermediateSize"], c["numAttentionHeads"], c["numKeyValueHeads"], c["headDim"]
        self.H, self.KV, self.d = H, KV, d
        self.input_layernorm = RMSNorm(h, c["rmsNormEps"])
        self.post_attention_layernorm = RMSNorm(h, c["rmsNormEps"])
        self.q_proj = LoraLinear(h, H * d, r, alpha)
        self.k_proj = LoraLinear(h, KV * d, r, alpha)
        self.v_proj = LoraLinear(h, KV * d, r, alpha)
        self.o_proj = LoraLinear(H * d, h, r, alpha)
        self.gate_proj = LoraLinear(h, m, r, alpha)
        self.up_proj = LoraLinear(h, m, r, alpha)
        self.down_proj = LoraLinear(m, h, r, alpha)

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        a = self.input_layernorm(x)
        q = self.q_proj(a).view(B, T, self.H, self.d).transpose(1, 2)  # [B, H, T, d]
        k = self.k_proj(a).view(B, T, self.KV, self.d).transpose(1, 2)
        v = self.v_proj(a).view(B, T, self.KV, self.d).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(self.H // self.KV, dim=1)
        v = v.repeat_interleave(self.H // self.KV, dim=1)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.d) + mask  # [B, H, T, T]
        o = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, self.H * self.d)
        x = x + self.o_proj(o)
        b = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(b)) * self.up_proj(b))


class Llama(nn.Module):
    def __init__(self, c, r, alpha):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Parameter(torch.randn(c["vocabSize"], c["hiddenSize"]) * 0.02, requires_grad=False)
        self.layers = nn.ModuleList(Block(c, r, alpha) for _ in range(c["numHiddenLayers"]))
        self.norm = RMSNorm(c["hiddenSize"], c["rmsNormEps"])
        self.lm_head = None if c["tieWordEmbeddings"] else nn.Parameter(torch.randn(c["vocabSize"], c["hiddenSize"]) * 0.02, requires_grad=False)

    def forward(self, ids):
        T = ids.shape[1]
        d = self.c["headDim"]
        inv_freq = 1.0 / (self.c["ropeTheta"] ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
        freqs = torch.outer(torch.arange(T, dtype=torch.float32), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()  # [T, d]
        mask = torch.full((T, T), float("-inf")).triu(1)
        x = F.embedding(ids, self.embed_tokens)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        x = self.norm(x)
        return F.linear(x, self.embed_tokens if self.lm_head is None else self.lm_head)


def blas_library():
    """The BLAS shared libraries mapped into this process (what torch's sgemm calls)."""
    with open("/proc/self/maps") as f:
        libs = {line.split()[-1] for line in f if "blas" in line.lower() and ".so" in line and "lapack" not in line}
    return sorted(libs)


def sgemm_gflops(n=1024, reps=5):
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 / ((time.perf_counter() - t) / reps) / 1e9


def main():
    spec = json.loads(sys.argv[1])
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    c, lora, opt = spec["model"], spec["lora"], spec["optim"]
    model = Llama(c, lora["r"], lora["alpha"])
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=opt["lr"], betas=(opt["beta1"], opt["beta2"]), eps=opt["eps"], weight_decay=opt["weightDecay"])
    B, T = spec["batch"], spec["seq"]
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, c["vocabSize"], (B, T), generator=g)
    labels = torch.cat((ids[:, 1:], torch.full((B, 1), -100)), dim=1)

    def step():
        logits = model(ids)
        loss = F.cross_entropy(logits.view(B * T, -1), labels.view(-1), ignore_index=-100)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, opt["maxGradNorm"])
        optimizer.step()
        return loss.item()

    seconds = []
    for s in range(spec["warmupSteps"] + spec["timedSteps"]):
        t = time.perf_counter()
        step()
        if s >= spec["warmupSteps"]:
            seconds.append(time.perf_counter() - t)
    config = torch.__config__.show()
    blas_info = next((kv.split("=")[1] for kv in config.replace(",", " ").split() if kv.startswith("BLAS_INFO=")), "unknown")
    print("@result " + json.dumps({
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "blasInfo": blas_info,
        "blasLibrary": blas_library(),
        "sgemmGflops1024": sgemm_gflops(),
        "trainableParams": sum(p.numel() for p in params),
        "stepSeconds": seconds,
        "tokensPerSecond": B * T / statistics.median(seconds),
        "maxRssBytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }))


if __name__ == "__main__":
    main()
