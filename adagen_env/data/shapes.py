"""Procedural, class-conditional shapes: the embedded default dataset.

Every image is one anti-aliased shape of a saturated colour on a two-colour gradient background with
a little grain. Shapes are drawn from signed distance functions evaluated on the pixel grid of the
whole batch at once, so tens of thousands of images take seconds and any resolution works.

Letters: B images, H x W pixels.
"""

from __future__ import annotations

import math

import torch

from adagen_env.errors import InvalidArgument

SHAPE_CLASSES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "ring",
    "cross",
    "star",
    "crescent",
    "bar",
)


def _sdf(name: str, px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """Signed distance (negative inside) of a unit-size shape centred at the origin.

    Args:
        name: one of `SHAPE_CLASSES`.
        px, py: (B, H, W) coordinates in the shape's own frame, the shape spanning about [-1, 1].
    """
    r = torch.sqrt(px**2 + py**2)
    if name == "circle":
        return r - 0.9
    if name == "square":
        return torch.maximum(px.abs(), py.abs()) - 0.75
    if name == "triangle":
        # Equilateral triangle (circumradius 1): max over the three edges' outward normals.
        d = -py - 0.5
        for angle in (math.pi / 6, 5 * math.pi / 6):
            d = torch.maximum(d, px * math.cos(angle) + py * math.sin(angle) - 0.5)
        return d
    if name == "ring":
        return (r - 0.7).abs() - 0.22
    if name == "cross":
        arm_x = torch.maximum(px.abs() - 0.9, py.abs() - 0.28)
        arm_y = torch.maximum(py.abs() - 0.9, px.abs() - 0.28)
        return torch.minimum(arm_x, arm_y)
    if name == "star":
        theta = torch.atan2(py, px)
        # Radius oscillates between inner and outer over five points.
        wave = 0.5 + 0.5 * torch.cos(5 * theta)
        return r - (0.42 + 0.53 * wave)
    if name == "crescent":
        return torch.maximum(r - 0.9, -(torch.sqrt((px - 0.45) ** 2 + py**2) - 0.7))
    if name == "bar":
        return torch.maximum(px.abs() - 0.95, py.abs() - 0.2)
    raise KeyError(name)


class ShapesDataset:
    """Unlimited, deterministic, class-conditional shapes at any resolution.

    Args:
        resolution: image side in pixels (>= 8).
        num_classes: how many of `SHAPE_CLASSES` to use (2..8).

    Example:
        >>> data = ShapesDataset(resolution=16)
        >>> images, labels = data.sample(4, seed=0)
        >>> tuple(images.shape), tuple(labels.shape)
        ((4, 3, 16, 16), (4,))
    """

    def __init__(self, resolution: int = 16, num_classes: int = len(SHAPE_CLASSES)) -> None:
        if not isinstance(resolution, int) or resolution < 8:
            raise InvalidArgument(f"resolution must be an int >= 8, got {resolution!r}")
        if not 2 <= num_classes <= len(SHAPE_CLASSES):
            raise InvalidArgument(f"num_classes must be in [2, {len(SHAPE_CLASSES)}], got {num_classes!r}")
        self.resolution = resolution
        self.num_classes = num_classes
        self.class_names = SHAPE_CLASSES[:num_classes]

    def sample(
        self,
        n: int,
        seed: int | None = None,
        labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw `n` images.

        Args:
            n: number of images.
            seed: seed for a fresh CPU generator (ignored when `generator` is given).
            labels: (n,) int64 class ids to draw; random uniform classes when None.
            generator: a CPU `torch.Generator` to draw from (advanced in place).
            device: where the returned tensors live (drawing happens on CPU for determinism).

        Returns:
            images: (n, 3, H, W) float32 in [0, 1]; labels: (n,) int64.
        """
        if generator is None:
            generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
        if labels is None:
            labels = torch.randint(self.num_classes, (n,), generator=generator)
        else:
            labels = torch.as_tensor(labels, dtype=torch.long).cpu()
            if labels.shape != (n,):
                raise InvalidArgument(f"labels must have shape ({n},), got {tuple(labels.shape)}")
            if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
                raise InvalidArgument(
                    f"labels must be in [0, {self.num_classes}), got range [{int(labels.min())}, {int(labels.max())}]"
                )
        return render_shapes(labels, self.draw_factors(labels, generator), self.class_names).to(device), labels.to(
            device
        )

    def draw_factors(self, labels: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """The generating factors of (B,) labels' images, all drawn from `generator` (advanced in place).

        Returns the dict `render_shapes` takes: ``size`` (B,) half-extent as a fraction of the side, ``centre``
        (B, 2) in [-0.5, 0.5], ``angle`` (B,) radians, ``fg`` (B, 3) shape RGB, ``bg_a`` / ``bg_b`` (B, 3) the
        background gradient's two ends, ``bg_dir`` (B,) its direction, ``grain`` (B, 1, R, R) additive noise.
        """
        b, res, g = labels.shape[0], self.resolution, generator
        u = lambda *shape: torch.rand(*shape, generator=g, device=g.device)  # noqa: E731
        size = 0.28 + 0.17 * u(b)
        centre = (u(b, 2) * 2 - 1) * (0.95 - size)[:, None] * 0.5
        angle = u(b) * 2 * math.pi
        hue = u(b)
        sat, val = 0.75 + 0.25 * u(b), 0.8 + 0.2 * u(b)
        bg_a, bg_b = 0.1 + 0.35 * u(b, 3), 0.1 + 0.35 * u(b, 3)
        bg_dir = u(b) * 2 * math.pi
        grain = torch.randn(b, 1, res, res, generator=g, device=g.device) * GRAIN_SIGMA
        fg = _hsv_to_rgb(hue, sat, val)
        return {
            "size": size,
            "centre": centre,
            "angle": angle,
            "fg": fg,
            "bg_a": bg_a,
            "bg_b": bg_b,
            "bg_dir": bg_dir,
            "grain": grain,
        }


GRAIN_SIGMA = 0.02
"""Standard deviation of the iid per-pixel grain added to every image (before clamping to [0, 1])."""


def render_shapes(
    labels: torch.Tensor,
    factors: dict[str, torch.Tensor],
    class_names: tuple[str, ...] = SHAPE_CLASSES,
    resolution: int | None = None,
) -> torch.Tensor:
    """Render (B,) labels with explicit factors (`ShapesDataset.draw_factors`' dict) into (B, 3, R, R) in [0, 1].

    Differentiable in every continuous factor. Without ``grain`` in `factors` the clean image is rendered at
    `resolution` (required then); with it, at the grain's resolution.
    """
    grain = factors.get("grain")
    res = grain.shape[-1] if grain is not None else resolution
    if res is None:
        raise InvalidArgument("render_shapes needs resolution= when factors carry no grain")
    size, centre, angle = factors["size"], factors["centre"], factors["angle"]
    b, dev = labels.shape[0], size.device

    # 1. Pixel grid in [-0.5, 0.5], then into each shape's own frame.
    coords = (torch.arange(res, dtype=torch.float32, device=dev) + 0.5) / res - 0.5
    gy, gx = torch.meshgrid(coords, coords, indexing="ij")  # (H, W)
    dx, dy = gx[None] - centre[:, 0, None, None], gy[None] - centre[:, 1, None, None]  # (B, H, W)
    cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    px = (cos * dx + sin * dy) / size[:, None, None]
    py = (-sin * dx + cos * dy) / size[:, None, None]

    # 2. Signed distance per class, evaluated only on the images of that class.
    sdf = torch.empty(b, res, res, device=dev)
    for k, name in enumerate(class_names):
        idx = (labels == k).nonzero(as_tuple=True)[0]
        if idx.numel():
            sdf[idx] = _sdf(name, px[idx], py[idx])
    # Anti-aliased coverage: distance in pixels, ramp over one pixel.
    pixel = 1.0 / (res * size[:, None, None])
    alpha = (0.5 - sdf / pixel).clamp(0, 1)[:, None]  # (B, 1, H, W)

    # 3. Colours: the shape's RGB, a linear gradient for the background.
    fg = factors["fg"][:, :, None, None]  # (B, 3, 1, 1)
    bg_dir = factors["bg_dir"]
    ramp = (torch.cos(bg_dir)[:, None, None] * gx + torch.sin(bg_dir)[:, None, None] * gy + 0.5)[:, None]
    bg = factors["bg_a"][:, :, None, None] * (1 - ramp) + factors["bg_b"][:, :, None, None] * ramp  # (B, 3, H, W)
    image = alpha * fg + (1 - alpha) * bg
    if grain is not None:
        image = image + grain
    return image.clamp(0, 1)


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(B,) hue, saturation, value in [0, 1] -> (B, 3) RGB."""
    k = (torch.tensor([5.0, 3.0, 1.0], device=h.device)[None] + h[:, None] * 6) % 6
    return v[:, None] - v[:, None] * s[:, None] * torch.clamp(torch.minimum(k, 4 - k), 0, 1)
