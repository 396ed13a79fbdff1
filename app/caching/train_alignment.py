"""Train the alignment networks of the verifier (torch, CPU) and export them for ``AlignmentNet``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from app.caching.alignment_net import INPUT_DIM, piece_inputs
from app.caching.token_features import Idf, TokenView

HIDDEN = 128


def _padded(rows: Sequence[np.ndarray]):
    """A batch padded to its longest question: (x, mask)."""
    import torch

    width = max(1, max(len(r) for r in rows))
    x = np.zeros((len(rows), width, INPUT_DIM), dtype=np.float32)
    mask = np.zeros((len(rows), width), dtype=bool)
    for i, r in enumerate(rows):
        x[i, :len(r)], mask[i, :len(r)] = r, True
    return torch.from_numpy(x), torch.from_numpy(mask)


def _network(hidden: int, dropout: float):
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.f = nn.Linear(INPUT_DIM, hidden)
            self.g = nn.Linear(4 * hidden, hidden)
            self.h = nn.Linear(4 * hidden + 1, hidden)
            self.o = nn.Linear(hidden, 1)
            self.drop = nn.Dropout(dropout)

        def side(self, ha, hb, ma, mb):
            e = (ha @ hb.transpose(1, 2)).masked_fill(~mb[:, None, :], -1e4)
            beta = torch.softmax(e, dim=2) @ hb
            c = self.drop(torch.relu(self.g(torch.cat([ha, beta, ha - beta, ha * beta], -1)))) * ma[..., None]
            mean = c.sum(1) / ma.sum(1, keepdim=True).clamp(min=1)
            return torch.cat([mean, c.masked_fill(~ma[..., None], -1e4).max(1).values], -1)

        def forward(self, xa, ma, xb, mb, cos):
            ha, hb = self.drop(torch.relu(self.f(xa))), self.drop(torch.relu(self.f(xb)))
            va, vb = self.side(ha, hb, ma, mb), self.side(hb, ha, mb, ma)
            z = torch.cat([va + vb, (va - vb).abs(), cos[:, None]], -1)
            return self.o(self.drop(torch.relu(self.h(z)))).squeeze(-1)

    return Net()


def train_alignment(vq: Sequence[TokenView], vc: Sequence[TokenView], cosine: np.ndarray, same: np.ndarray,
                    idf: Idf, seed: int, epochs: int = 8) -> dict[str, np.ndarray]:
    """Fit one network on (query, cached) pairs; returns its arrays for ``AlignmentNet``."""
    return export(fit_network(vq, vc, cosine, same, idf, seed, epochs))


def export(net) -> dict[str, np.ndarray]:
    """The torch network's layers as numpy arrays (``f_w`` as (in, out), ``f_b``, ...)."""
    return {f"{name}_{kind}": (p.detach().numpy().T if kind == "w" else p.detach().numpy()).astype(np.float32)
            for name in ("f", "g", "h", "o") for kind, p in (("w", getattr(net, name).weight),
                                                             ("b", getattr(net, name).bias))}


def fit_network(vq: Sequence[TokenView], vc: Sequence[TokenView], cosine: np.ndarray, same: np.ndarray, idf: Idf,
                seed: int, epochs: int = 8, batch: int = 64, hidden: int = HIDDEN, dropout: float = 0.2):
    """The trained torch network (eval mode)."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    rows_a = [piece_inputs(q, c, idf) for q, c in zip(vq, vc, strict=True)]
    rows_b = [piece_inputs(c, q, idf) for q, c in zip(vq, vc, strict=True)]
    cos = torch.tensor(np.asarray(cosine, dtype=np.float32))
    y = torch.tensor(np.asarray(same, dtype=np.float32))
    net = _network(hidden, dropout)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-2)
    gen = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(order), batch):
            b = order[i:i + batch]
            left, right = _padded([rows_a[j] for j in b.tolist()]), _padded([rows_b[j] for j in b.tolist()])
            if torch.rand(1, generator=gen).item() < 0.5:  # both orders: the network is symmetric in use
                left, right = right, left
            loss = F.binary_cross_entropy_with_logits(net(*left, *right, cos[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()
