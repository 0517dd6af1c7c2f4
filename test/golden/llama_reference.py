"""Golden reference for ft's Llama forward pass, loss and greedy decoding.

An independent plain-torch re-implementation of Hugging Face transformers' modeling_llama / modeling_qwen2
(transformers itself is not installed): RMSNorm, rotate_half RoPE (with llama3 rope_scaling), repeat_kv GQA,
SwiGLU MLP, causal + padding mask, tied or untied lm_head. Computed in float64 from float32 weights.

Run once from the repo root with the system torch:  /usr/bin/python3 test/golden/llama_reference.py
Writes test/fixtures/golden/<name>/{config.json,model.safetensors} (a Hugging Face model folder) and
test/fixtures/golden/<name>.json (inputs and expected outputs). Tests read these files; they never run Python.
"""
import json
import math
import os
import struct

import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "golden")

MODELS = {
    # GQA (4 query heads over 2 KV heads), untied lm_head
    "llama-gqa": dict(
        architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=32, intermediate_size=40,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
        rope_theta=10000.0, rope_scaling=None, vocab_size=64, max_position_embeddings=128,
        tie_word_embeddings=False, attention_bias=False, bos_token_id=1, eos_token_id=2,
    ),
    # tied embeddings, Llama 3.1 rope scaling, explicit head_dim != hidden/heads, one KV head
    "llama3-tied": dict(
        architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=32, intermediate_size=40,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1, head_dim=16, rms_norm_eps=1e-5,
        rope_theta=500000.0,
        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                          original_max_position_embeddings=16),
        vocab_size=64, max_position_embeddings=128, tie_word_embeddings=True, attention_bias=False,
        bos_token_id=1, eos_token_id=[2, 3],
    ),
    # Qwen2: q/k/v biases, GQA, untied head
    "qwen2-bias": dict(
        architectures=["Qwen2ForCausalLM"], model_type="qwen2", hidden_size=32, intermediate_size=40,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6,
        rope_theta=1000000.0, vocab_size=64, max_position_embeddings=128, tie_word_embeddings=False,
        use_sliding_window=False, bos_token_id=1, eos_token_id=2,
    ),
}

# Three rows of T = 10: full; 6 real tokens then right padding (segment 0); two packed examples (4 + 6)
IDS = [
    [1, 17, 5, 42, 9, 33, 60, 2, 11, 28],
    [1, 8, 50, 23, 7, 14, 0, 0, 0, 0],
    [1, 30, 31, 2, 1, 45, 12, 63, 4, 19],
]
SEGMENTS = [
    [1] * 10,
    [1] * 6 + [0] * 4,
    [1] * 4 + [2] * 6,
]
POSITIONS = [
    list(range(10)),
    list(range(6)) + [0] * 4,
    list(range(4)) + list(range(6)),
]
GREEDY_PROMPT = [1, 17, 5, 42]
GREEDY_NEW_TOKENS = 8


def head_dim(c):
    return c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]


def make_weights(c, seed):
    """Deterministic float32 tensors named as in Hugging Face checkpoints."""
    g = torch.Generator().manual_seed(seed)
    h, m, V = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    H, KV, d = c["num_attention_heads"], c["num_key_value_heads"], head_dim(c)
    bias = c["model_type"] == "qwen2" or c.get("attention_bias", False)

    def randn(*shape, std):
        return (torch.randn(*shape, generator=g) * std).float()

    def linear(out, inp):
        return randn(out, inp, std=1 / math.sqrt(inp))

    w = {"model.embed_tokens.weight": randn(V, h, std=2 / math.sqrt(h))}
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}"
        w[f"{p}.input_layernorm.weight"] = 1 + randn(h, std=0.1)
        w[f"{p}.post_attention_layernorm.weight"] = 1 + randn(h, std=0.1)
        for name, out, inp in [("q_proj", H * d, h), ("k_proj", KV * d, h), ("v_proj", KV * d, h), ("o_proj", h, H * d)]:
            w[f"{p}.self_attn.{name}.weight"] = linear(out, inp)
            if bias and name != "o_proj":
                w[f"{p}.self_attn.{name}.bias"] = randn(out, std=0.1)
        for name, out, inp in [("gate_proj", m, h), ("up_proj", m, h), ("down_proj", h, m)]:
            w[f"{p}.mlp.{name}.weight"] = linear(out, inp)
    w["model.norm.weight"] = 1 + randn(h, std=0.1)
    if not c["tie_word_embeddings"]:
        w["lm_head.weight"] = linear(V, h)
    return w


def write_safetensors(path, tensors):
    """safetensors: u64 little-endian header length, JSON header (space-padded to 8 bytes), raw little-endian data."""
    header, chunks, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in tensors.items():
        data = t.contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    hjson = json.dumps(header, separators=(",", ":")).encode()
    hjson += b" " * ((8 - len(hjson) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for chunk in chunks:
            f.write(chunk)


# ---- the model, after transformers' modeling_llama ----

def rms_norm(x, weight, eps):
    variance = x.pow(2).mean(-1, keepdim=True)
    return weight * (x * torch.rsqrt(variance + eps))


def inv_freq(c):
    d = head_dim(c)
    base = c["rope_theta"]
    f = 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))  # float32 as in HF
    s = c.get("rope_scaling")
    if not s:
        return f.double()
    factor, low, high, old = s["factor"], s["low_freq_factor"], s["high_freq_factor"], s["original_max_position_embeddings"]
    low_freq_wavelen, high_freq_wavelen = old / low, old / high
    wavelen = 2 * math.pi / f
    f_llama = torch.where(wavelen > low_freq_wavelen, f / factor, f)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * f_llama / factor + smooth * f_llama
    is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium, smoothed, f_llama).double()


def rope_cos_sin(c, positions):  # positions [B, T] -> cos, sin [B, 1, T, d]
    freqs = positions.double()[..., None] * inv_freq(c)[None, None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos()[:, None], emb.sin()[:, None]


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def repeat_kv(x, n_rep):  # [B, KV, T, d] -> [B, KV * n_rep, T, d]
    B, KV, T, d = x.shape
    return x[:, :, None].expand(B, KV, n_rep, T, d).reshape(B, KV * n_rep, T, d)


def attention_mask(segments):
    """[B, 1, T, T] additive mask: causal, and a query sees only keys of its own segment (0 = padding,
    which sees nothing but itself: its output is ignored). For plain right padding this is HF's causal +
    padding mask; for packed rows it is the block-diagonal mask of packed training."""
    B, T = segments.shape
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    same = segments[:, :, None] == segments[:, None, :]
    real = (segments != 0)[:, :, None]
    allowed = (causal & same & real) | torch.eye(T, dtype=torch.bool)
    mask = torch.zeros(B, 1, T, T, dtype=torch.float64)
    return mask.masked_fill(~allowed[:, None], torch.finfo(torch.float64).min)


def forward(c, w, ids, segments, positions):
    w = {k: v.double() for k, v in w.items()}
    B, T = ids.shape
    H, KV, d = c["num_attention_heads"], c["num_key_value_heads"], head_dim(c)
    eps = c["rms_norm_eps"]

    def lin(x, name):
        y = x @ w[name + ".weight"].T
        return y + w[name + ".bias"] if name + ".bias" in w else y

    cos, sin = rope_cos_sin(c, positions)
    mask = attention_mask(segments)
    x = w["model.embed_tokens.weight"][ids]
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}"
        hs = rms_norm(x, w[f"{p}.input_layernorm.weight"], eps)
        q = lin(hs, f"{p}.self_attn.q_proj").view(B, T, H, d).transpose(1, 2)
        k = lin(hs, f"{p}.self_attn.k_proj").view(B, T, KV, d).transpose(1, 2)
        v = lin(hs, f"{p}.self_attn.v_proj").view(B, T, KV, d).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k, v = repeat_kv(k, H // KV), repeat_kv(v, H // KV)
        scores = q @ k.transpose(2, 3) / math.sqrt(d) + mask
        attn = torch.softmax(scores, dim=-1) @ v
        x = x + lin(attn.transpose(1, 2).reshape(B, T, H * d), f"{p}.self_attn.o_proj")
        hs = rms_norm(x, w[f"{p}.post_attention_layernorm.weight"], eps)
        x = x + lin(F.silu(lin(hs, f"{p}.mlp.gate_proj")) * lin(hs, f"{p}.mlp.up_proj"), f"{p}.mlp.down_proj")
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    return x @ head.T  # [B, T, V]


def shifted_labels(ids, segments):
    """labels[t] = ids[t + 1] when t + 1 is in the same (real) segment, else -100."""
    labels = torch.full_like(ids, -100)
    same = (segments[:, 1:] == segments[:, :-1]) & (segments[:, :-1] != 0)
    labels[:, :-1] = torch.where(same, ids[:, 1:], torch.full_like(ids[:, 1:], -100))
    return labels


def greedy(c, w, prompt, n):
    seq = list(prompt)
    for _ in range(n):
        t = torch.tensor([seq])
        logits = forward(c, w, t, torch.ones_like(t), torch.arange(len(seq))[None])
        seq.append(int(logits[0, -1].argmax()))
    return seq[len(prompt):]


def main():
    for seed, (name, c) in enumerate(MODELS.items()):
        folder = os.path.join(OUT, name)
        os.makedirs(folder, exist_ok=True)
        w = make_weights(c, seed=1000 + seed)
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump({**c, "hidden_act": "silu", "torch_dtype": "float32"}, f, indent=2)
        write_safetensors(os.path.join(folder, "model.safetensors"), w)

        ids, segments, positions = torch.tensor(IDS), torch.tensor(SEGMENTS), torch.tensor(POSITIONS)
        logits = forward(c, w, ids, segments, positions)
        labels = shifted_labels(ids, segments)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
        expected = {
            "model": name,
            "B": len(IDS), "T": len(IDS[0]),
            "ids": IDS, "segments": SEGMENTS, "positions": POSITIONS,
            "logits": [[[float(f"{v:.7g}") for v in row] for row in b] for b in logits.tolist()],
            "labels": labels.tolist(),
            "loss": float(loss),
            "greedy": {"prompt": GREEDY_PROMPT, "tokens": greedy(c, w, GREEDY_PROMPT, GREEDY_NEW_TOKENS)},
            "torch": torch.__version__,
        }
        with open(os.path.join(OUT, f"{name}.json"), "w") as f:
            json.dump(expected, f, separators=(",", ":"))
        print(f"{name}: loss {float(loss):.6f}, greedy {expected['greedy']['tokens']}, logits range "
              f"[{logits.min():.3f}, {logits.max():.3f}]")


if __name__ == "__main__":
    main()
