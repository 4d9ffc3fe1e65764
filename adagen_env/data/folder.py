"""A folder of images, one sub-folder per class, for users who bring their own data.

Layout: `root/<class_name>/<image>.{png,jpg,jpeg}`. Classes are the sorted sub-folder names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from adagen_env.errors import DatasetError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class ImageFolderDataset:
    """Class-conditional images read from disk with Pillow, resized to a square resolution.

    Args:
        root: folder holding one sub-folder per class.
        resolution: side in pixels of the returned images.

    Raises:
        DatasetError: the folder is missing, has no class folders, or a class has no image.
    """

    def __init__(self, root: str | Path, resolution: int) -> None:
        self.root = Path(root)
        self.resolution = int(resolution)
        if not self.root.is_dir():
            raise DatasetError(f"image folder {str(self.root)!r} does not exist or is not a folder")
        class_dirs = sorted(p for p in self.root.iterdir() if p.is_dir())
        if not class_dirs:
            raise DatasetError(f"image folder {str(self.root)!r} has no class sub-folders")
        self.class_names = tuple(p.name for p in class_dirs)
        self.num_classes = len(class_dirs)
        self.files: list[tuple[Path, int]] = []
        for label, folder in enumerate(class_dirs):
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise DatasetError(f"class folder {str(folder)!r} has no {'/'.join(IMAGE_SUFFIXES)} image")
            self.files += [(f, label) for f in files]

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> tuple[torch.Tensor, int]:
        """Image `index` as (3, R, R) float32 in [0, 1], and its label."""
        from PIL import Image, UnidentifiedImageError

        path, label = self.files[index]
        try:
            with Image.open(path) as im:
                im = im.convert("RGB").resize((self.resolution, self.resolution), Image.BICUBIC)
                array = np.asarray(im, dtype=np.float32) / 255.0
        except (OSError, UnidentifiedImageError) as exc:
            raise DatasetError(f"cannot read image {str(path)!r}: {exc}") from exc
        return torch.from_numpy(array).permute(2, 0, 1).contiguous(), label

    def sample(
        self,
        n: int,
        seed: int | None = None,
        labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw `n` images at random (of the given labels, when given); same signature as `ShapesDataset`."""
        if generator is None:
            generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
        all_labels = torch.tensor([label for _, label in self.files])
        if labels is None:
            picks = torch.randint(len(self.files), (n,), generator=generator)
        else:
            labels = torch.as_tensor(labels, dtype=torch.long).cpu()
            picks = torch.empty(n, dtype=torch.long)
            for k in labels.unique().tolist():
                pool = (all_labels == k).nonzero(as_tuple=True)[0]
                if pool.numel() == 0:
                    raise DatasetError(f"label {k} is not a class of {str(self.root)!r} ({self.num_classes} classes)")
                where = (labels == k).nonzero(as_tuple=True)[0]
                picks[where] = pool[torch.randint(pool.numel(), (where.numel(),), generator=generator)]
        items = [self.load(int(i)) for i in picks]
        images = torch.stack([im for im, _ in items])
        out_labels = torch.tensor([label for _, label in items])
        return images.to(device), out_labels.to(device)
