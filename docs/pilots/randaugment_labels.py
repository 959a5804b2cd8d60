"""Pilots (issue 16): does RandAugment keep the upstream label (hue bin x fill)? The Noisy Student teacher's
val top-1 on the 32 px val images, clean and after each of RandAugment's ops alone (torchvision v2 at
magnitude 9, the pipeline's setting; a signed op's sign drawn per image), 1,000 images: an op that keeps
the label keeps the teacher's accuracy. Run from the repository root after `make run` has trained the
teacher:  .venv/bin/python docs/pilots/randaugment_labels.py"""
import torch
from torchvision.transforms import v2

from vit import data, models
from vit.evaluate.classify import evaluate

torch.set_num_threads(1)
ck = torch.load("results/pretrain/bit/contours_l/checkpoint.pt", map_location="cpu", weights_only=False)
model = models.create(ck["model_args"], ck["num_classes"], ck["img_size"])
model.load_state_dict(ck["model"])
xs, ys, _ = data.load_split("results/data/contours_l", "val")
x, y = data.to_tensor(xs, 32), torch.from_numpy(ys)
print("clean", round(evaluate(model, x, y)["top1"], 1))
ra = v2.RandAugment(num_ops=1, magnitude=9)
for name, (mags_fn, signed) in ra._AUGMENTATION_SPACE.items():
    torch.manual_seed(0)
    mags = mags_fn(ra.num_magnitude_bins, 32, 32)
    mag = float(mags[9]) if mags is not None and mags.ndim and len(mags) > 1 else 0.0
    out = torch.stack([ra._apply_image_or_video_transform(img, name, mag * (1 if torch.rand(()) < 0.5 or not signed else -1),
                                                         interpolation=ra.interpolation, fill=ra._fill) for img in x])
    print(name, round(evaluate(model, out, y)["top1"], 1))
