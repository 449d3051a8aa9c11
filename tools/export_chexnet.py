#!/usr/bin/python3
"""Writes a CheXNet-class image model (contract hpcscreen.image/1) as TorchScript for hpcscreen:
torchvision's DenseNet-121 with CheXNet's classifier Sequential(Linear(1024, 14), Sigmoid()),
forward(x float32 [B, 3, 224, 224]) -> float32 [B, 14] probabilities, its hpcscreen.json inside.

  /usr/bin/python3 tools/export_chexnet.py --checkpoint model.pth.tar --out chexnet.pt
  /usr/bin/python3 tools/export_chexnet.py --seed 0 --out random.pt         (random weights)
  /usr/bin/python3 tools/export_chexnet.py --seed 0 --small --out tiny.pt   (tiny CNN, tests)

--checkpoint takes the layout of arnoweng/CheXNet's model.pth.tar: {"state_dict":
DataParallel(DenseNet121).state_dict(), ...}, keys module.densenet121.features...; PyTorch
< 0.4's norm.1 / relu.1 / conv.1 / norm.2 / conv.2 and today's norm1 / ... are both read. The file
is read without running pickled code. The written model is reloaded and checked against the
model in memory before it replaces --out.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402
import torchvision  # noqa: E402

from hpcscreen_py import chexnet  # noqa: E402

CHECK_TOLERANCE = 1e-6


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    chexnet.add_model_arguments(p)
    args = p.parse_args()

    tmp = None
    try:
        chexnet.check_out_path(args.out, args.force)
        model, meta = chexnet.model_from_args(args)
        example = chexnet.example_batch(meta, batch=2)
        module, how = chexnet.to_torchscript(model, example)
        meta["torchscript"] = how
        meta["exported_with"] = {"torch": torch.__version__,
                                 "torchvision": torchvision.__version__}
        tmp = chexnet.save(module, args.out, meta, args.force)
        inputs = [example, chexnet.example_batch(meta, batch=3, seed=1)]
        if args.small:  # any H x W
            inputs.append(torch.randn(2, 3, 40, 52, generator=torch.Generator().manual_seed(2)))
        worst = chexnet.verify_saved(tmp, meta, model, inputs, CHECK_TOLERANCE)
        chexnet.publish(tmp, args.out, args.force)
        tmp = None
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    w = meta["weights"]
    source = (f"weights of {w['file']}" if w["source"] == "checkpoint"
              else f"random weights (seed {w['seed']})")
    labels = meta["labels"]
    print(f"wrote {args.out}: {meta['name']} ({meta['architecture']}, torch.jit.{how}), "
          f"{source}, {len(labels)} labels ({', '.join(labels[:4])}"
          f"{', ...' if len(labels) > 4 else ''}), rank by {meta['rank_by']}, crop "
          f"{meta['preprocess']['crop']}; reloaded: max |diff| vs eager {worst:.2g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
