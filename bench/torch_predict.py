"""A PyTorch eval loop to set beside `predict` (docs/benchmarks.md): torchvision's MobileNetV2
(random weights: the speed is the same) over every image of a folder, each image resized
(short side 110 = 96·8/7), centre-cropped to 96 and normalised with ImageNet's statistics,
batches of 32 through DataLoader(num_workers=2), under torch.inference_mode().

    OMP_NUM_THREADS=2 PEER/bin/python bench/torch_predict.py DIR
"""
import sys
import time

import torch
import torchvision
from torchvision import transforms as T


def main():
    t0 = time.perf_counter()
    torch.set_num_threads(2)
    tf = T.Compose([T.Grayscale(3), T.Resize(110), T.CenterCrop(96), T.ToTensor(),
                    T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    ds = torchvision.datasets.ImageFolder(sys.argv[1], transform=tf)
    dl = torch.utils.data.DataLoader(ds, batch_size=32, num_workers=2)
    net = torchvision.models.mobilenet_v2(num_classes=10).eval()
    n = 0
    with torch.inference_mode():
        for x, _ in dl:
            net(x).argmax(1)
            n += x.shape[0]
    wall = time.perf_counter() - t0
    print(f"torch-predict images={n} wall_s={wall:.2f} images_per_s={n / wall:.1f}")


if __name__ == "__main__":
    main()
