#!/usr/bin/python3
"""Writes a checkpoint in the layout of arnoweng/CheXNet's model.pth.tar from torchvision's
densenet121 with CheXNet's classifier and seeded random weights: torch.save({"epoch": 1,
"state_dict": sd, "best_loss": 0.1, "optimizer": {}}), sd a DataParallel-wrapped model's
weights, keys module.densenet121.features...denselayer1.norm.1.weight (PyTorch < 0.4's
spelling), classifier module.densenet121.classifier.0.weight / .bias.

  /usr/bin/python3 tests/make_chexnet_checkpoint.py OUT.pth.tar [--seed N] [--labels-count N]
      [--modern-keys] [--legacy]

--modern-keys keeps today's spelling (norm1, conv1, ...); --legacy writes torch's pre-1.6
(non-zip) format without BatchNorm's num_batches_tracked, as a PyTorch 0.3 file has.

Random BatchNorm statistics and affine parameters (not torchvision's 1 / 0 initial values), so
that every tensor differs from every other and a key loaded into the wrong place shows in the
outputs. Independent of tools/hpcscreen_py/chexnet.py (the code it tests).
"""
import argparse
import collections

import torch
import torchvision

# today's torchvision name of a dense layer's module -> PyTorch < 0.4's
OLD_SPELLING = {"norm1": "norm.1", "relu1": "relu.1", "conv1": "conv.1",
                "norm2": "norm.2", "relu2": "relu.2", "conv2": "conv.2"}


def reference_model(seed, n_labels=14):
    """torchvision densenet121, classifier Sequential(Linear(1024, n), Sigmoid()), random
    weights and BatchNorm statistics from `seed`, eval mode."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = torchvision.models.densenet121(weights=None)
    model.classifier = torch.nn.Sequential(torch.nn.Linear(1024, n_labels), torch.nn.Sigmoid())
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.1 * torch.randn(n, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=g))
                m.num_batches_tracked.fill_(int(torch.randint(1, 10000, (1,), generator=g)))
        linear = model.classifier[0]
        linear.bias.copy_(0.5 * torch.randn(n_labels, generator=g))
    return model.eval()


def old_key(key):
    """features.denseblock1.denselayer1.norm1.weight -> ...denselayer1.norm.1.weight."""
    parts = key.split(".")
    if (len(parts) > 4 and parts[0] == "features" and parts[1].startswith("denseblock")
            and parts[2].startswith("denselayer") and parts[3] in OLD_SPELLING):
        parts[3] = OLD_SPELLING[parts[3]]
    return ".".join(parts)


def checkpoint_state_dict(model, modern_keys=False, legacy=False):
    sd = collections.OrderedDict()
    for key, value in model.state_dict().items():
        if legacy and key.endswith(".num_batches_tracked"):
            continue
        sd["module.densenet121." + (key if modern_keys else old_key(key))] = value.clone()
    return sd


def write(path, seed=0, n_labels=14, modern_keys=False, legacy=False):
    """Writes the checkpoint; returns the model its weights came from."""
    model = reference_model(seed, n_labels)
    data = {"epoch": 1, "state_dict": checkpoint_state_dict(model, modern_keys, legacy),
            "best_loss": 0.1, "optimizer": {}}
    torch.save(data, path, _use_new_zipfile_serialization=not legacy)
    return model


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--labels-count", type=int, default=14)
    p.add_argument("--modern-keys", action="store_true")
    p.add_argument("--legacy", action="store_true")
    args = p.parse_args()
    write(args.out, args.seed, args.labels_count, args.modern_keys, args.legacy)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
