"""Image sources: the procedural shapes dataset (embedded default) and a folder-of-images loader."""

from adagen_env.data.folder import ImageFolderDataset
from adagen_env.data.shapes import SHAPE_CLASSES, ShapesDataset

__all__ = ["SHAPE_CLASSES", "ImageFolderDataset", "ShapesDataset"]
