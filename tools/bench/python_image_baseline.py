#!/usr/bin/python3
"""The Python script a user would write to run a CheXNet-class TorchScript model over a folder
of images: torchvision's DataLoader with PIL decoding, the model's own transforms (Resize,
CenterCrop or TenCrop, ToTensor, Normalize, from its hpcscreen.json), the same TorchScript file,
batches, probabilities out. The baseline of bench.py's images section.

  python_image_baseline.py FOLDER MODEL.pt [--workers 2] [--batch 16] [--threads N]

Prints JSON: images, seconds (from loading the model to the last batch), images_per_s."""
import argparse
import json
import os
import time

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T


class Folder(Dataset):
    def __init__(self, root, transform):
        self.files = sorted(os.path.join(root, f) for f in os.listdir(root))
        self.transform = transform

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        return self.transform(Image.open(self.files[i]).convert("RGB"))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("folder")
    p.add_argument("model")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.time()  # from loading the model on, as hpcscreen's run.json wall_time_s
    extra = {"hpcscreen.json": ""}
    model = torch.jit.load(a.model, _extra_files=extra).eval()
    pre = json.loads(extra["hpcscreen.json"])["preprocess"]
    norm = T.Compose([T.ToTensor(), T.Normalize(pre["mean"], pre["std"])])
    if pre["crop"] == "ten":
        crop = [T.TenCrop(pre["crop_size"]), T.Lambda(lambda cs: torch.stack([norm(c) for c in cs]))]
    else:
        crop = [T.CenterCrop(pre["crop_size"]), norm]
    transform = T.Compose([T.Resize(pre["resize"]), *crop])
    loader = DataLoader(Folder(a.folder, transform), batch_size=a.batch, num_workers=a.workers)
    n = 0
    with torch.no_grad():
        for x in loader:
            if x.dim() == 5:  # ten crops: [B, 10, 3, h, w] → mean over crops
                b = x.size(0)
                out = model(x.view(-1, *x.shape[2:])).view(b, 10, -1).mean(1)
            else:
                out = model(x)
            n += out.size(0)
    s = time.time() - t0
    print(json.dumps({"images": n, "seconds": s, "images_per_s": n / s, "workers": a.workers,
                      "batch": a.batch, "threads": a.threads}))


if __name__ == "__main__":
    main()
