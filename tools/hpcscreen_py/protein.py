"""Protein side of the Python tools: the ProtBert vocabulary, a tokenizer that follows the
rules of data_schemas/bert_contract.md (written independently of the C++ one), and a small
BERT-style encoder for the hpcscreen.bert/1 contract that traces like a Hugging Face BERT."""
import json
import math

import torch
from torch import nn

CONTRACT = "hpcscreen.bert/1"
# ProtBert (Rostlab/prot_bert) vocabulary order: 5 special tokens, then 25 residue letters.
PROTBERT_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
                   "L", "A", "G", "V", "E", "S", "I", "K", "R", "D", "T", "P", "N", "Q", "F", "Y", "M", "H", "C",
                   "W", "X", "U", "B", "Z", "O"]
PROTBERT_MAP = {"U": "X", "Z": "X", "O": "X", "B": "X"}


def tokenizer_config(max_length, tokens=PROTBERT_TOKENS, mapping=PROTBERT_MAP, unknown="unk"):
    return {"tokens": tokens, "pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]",
            "sep_token": "[SEP]", "add_special_tokens": True, "max_length": max_length,
            "uppercase": True, "map": mapping, "unknown": unknown}


def metadata(labels, output_level, max_length, name="", rank_by=None, higher_is_better=True, **extra):
    meta = {"contract": CONTRACT, "kind": "bert", "name": name, "output_level": output_level,
            "labels": list(labels), "rank_by": rank_by or labels[0], "higher_is_better": higher_is_better,
            "tokenizer": tokenizer_config(max_length)}
    meta.update(extra)
    return meta


def encode(sequence, cfg):
    """Residue token ids (no special tokens), or (None, reason) as the contract describes."""
    index = {t: i for i, t in enumerate(cfg["tokens"])}
    if sequence.endswith("*"):
        sequence = sequence[:-1]
    if not sequence:
        return None, "empty_sequence"
    ids, unknown = [], 0
    for ch in sequence:
        if not ("A" <= ch <= "Z" or "a" <= ch <= "z"):
            return None, "invalid_character"
        if cfg.get("uppercase", True):
            ch = ch.upper()
        ch = cfg.get("map", {}).get(ch, ch)
        if ch in index:
            ids.append(index[ch])
        elif cfg.get("unknown", "unk") == "reject":
            return None, "unknown_residue"
        else:
            ids.append(index[cfg["unk_token"]])
            unknown += 1
    if unknown == len(ids):
        return None, "all_unknown"
    return ids, None


def plan_windows(n, size, overlap):
    """The contract's windows for a sequence of n residues: [(begin, end, keep_begin, keep_end)].
    Windows start every size - overlap residues, the last aligned to the end; an overlap [b, e)
    is split at b + (e - b) // 2 between the earlier and the later window."""
    if n <= size:
        return [(0, n, 0, n)]
    starts, b = [], 0
    while b + size < n:
        starts.append(b)
        b += size - overlap
    starts.append(n - size)
    w = [[s, s + size, 0, 0] for s in starts]
    for k in range(len(w) - 1):
        w[k][3] = w[k + 1][2] = w[k + 1][0] + (w[k][1] - w[k + 1][0]) // 2
    w[-1][3] = n
    return [tuple(x) for x in w]


def batch(id_lists, cfg):
    """[CLS] ids [SEP] padded with [PAD]: (input_ids, attention_mask) as int64 tensors."""
    index = {t: i for i, t in enumerate(cfg["tokens"])}
    rows = [[index[cfg["cls_token"]]] + ids + [index[cfg["sep_token"]]] for ids in id_lists]
    length = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), length), index[cfg["pad_token"]], dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, r in enumerate(rows):
        input_ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = 1
    return input_ids, mask


class _Layer(nn.Module):
    def __init__(self, hidden, heads, dropout):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.norm1 = nn.LayerNorm(hidden)
        self.ff = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.GELU(), nn.Linear(4 * hidden, hidden))
        self.norm2 = nn.LayerNorm(hidden)
        self.drop = nn.Dropout(dropout)

    def forward(self, h, bias):
        b, l, d = h.shape
        q, k, v = self.qkv(h).view(b, l, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // self.heads) + bias, dim=-1)
        ctx = (att @ v).transpose(1, 2).reshape(b, l, d)
        h = self.norm1(h + self.drop(self.out(ctx)))
        return self.norm2(h + self.drop(self.ff(h)))


class TinyBert(nn.Module):
    """Token + position embeddings, an optional convolution for local context, post-norm
    transformer layers; a per-residue head or a masked mean and a per-sequence head."""

    def __init__(self, vocab, max_length, hidden, layers, heads, n_labels, per_residue, conv=0, dropout=0.0):
        super().__init__()
        self.tok = nn.Embedding(vocab, hidden)
        self.pos = nn.Embedding(max_length, hidden)
        self.conv = nn.Conv1d(hidden, hidden, conv, padding=conv // 2) if conv else None
        self.layers = nn.ModuleList([_Layer(hidden, heads, dropout) for _ in range(layers)])
        self.head = nn.Linear(hidden, n_labels)
        self.per_residue = per_residue

    def encode(self, input_ids, attention_mask):
        """The last hidden states [B, L, hidden], before any head."""
        positions = torch.arange(input_ids.size(1), device=input_ids.device).unsqueeze(0)
        h = self.tok(input_ids) + self.pos(positions)
        maskf = attention_mask.unsqueeze(-1).to(h.dtype)
        if self.conv is not None:
            h = h + torch.relu(self.conv((h * maskf).transpose(1, 2))).transpose(1, 2)
        bias = (1.0 - attention_mask[:, None, None, :].to(h.dtype)) * -1e9
        for layer in self.layers:
            h = layer(h, bias)
        return h

    def forward(self, input_ids, attention_mask):
        h = self.encode(input_ids, attention_mask)
        maskf = attention_mask.unsqueeze(-1).to(h.dtype)
        if self.per_residue:
            return self.head(h)
        pooled = (h * maskf).sum(1) / maskf.sum(1).clamp(min=1.0)
        return self.head(pooled)


class Encoder(nn.Module):
    """A TinyBert without its head, for "output_level": "embedding": forward returns the last
    hidden states [B, L, hidden], or (hidden states, mean over real tokens) with hf_tuple, the
    way a Hugging Face BertModel traced with torchscript=True returns (last_hidden_state, pooled)."""

    def __init__(self, bert, hf_tuple=False):
        super().__init__()
        self.bert = bert
        self.hf_tuple = hf_tuple

    def forward(self, input_ids, attention_mask):
        h = self.bert.encode(input_ids, attention_mask)
        if self.hf_tuple:
            maskf = attention_mask.unsqueeze(-1).to(h.dtype)
            return h, (h * maskf).sum(1) / maskf.sum(1).clamp(min=1.0)
        return h


def encoder_metadata(max_length, name="", tokenizer=None, **extra):
    """hpcscreen.json of an encoder: no labels, no ranking."""
    meta = {"contract": CONTRACT, "kind": "bert", "name": name, "output_level": "embedding",
            "tokenizer": tokenizer or tokenizer_config(max_length)}
    meta.update(extra)
    return meta


def save_traced(model, path, meta, example_lengths=(7, 12)):
    """Exports the way a Hugging Face BERT is exported: torch.jit.trace over
    (input_ids, attention_mask), here on a batch of two lengths so no shape is baked in."""
    model.eval()
    cfg = meta["tokenizer"]
    ids = [[5 + (i % 20) for i in range(n)] for n in example_lengths]
    inputs = batch(ids, cfg)
    with torch.no_grad():
        traced = torch.jit.trace(model, inputs)
    torch.jit.save(traced, path, _extra_files={"hpcscreen.json": json.dumps(meta, indent=2)})
