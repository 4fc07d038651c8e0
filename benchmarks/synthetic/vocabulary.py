"""The one object vocabulary shared by every synthetic dataset.

Twenty classes, each with a class-dependent appearance: a shape family, a colour distribution (hue,
saturation, value of a primary and a secondary colour) and a texture. The same classes appear as the
ImageNet-like folders `n00000001..n00000020`, as the 20 real PASCAL VOC class names, as the matching 20
of the 80 real COCO categories, and (six of them) as Cityscapes instance classes, so features learnt on
the synthetic `imagenet/` or `coco/` transfer to the downstream sets like real pretraining does.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ObjectClass:
    """Appearance distribution of one class; instances jitter every value."""

    voc_name: str  # PASCAL VOC class name (detectron2.data.datasets.pascal_voc.CLASS_NAMES)
    coco_name: str  # the real COCO category it stands for (detectron2 builtin_meta.COCO_CATEGORIES)
    shape: str  # shape family (shapes.SHAPE_FAMILIES)
    shape_param: float  # family parameter: vertex count, arm width or arc opening (radians)
    aspect: float  # typical width/height ratio before rotation
    hue: float  # primary hue in [0, 1)
    sat: float  # primary saturation
    val: float  # primary value (brightness)
    hue2: float  # secondary hue, blended in by the texture
    sat2: float
    val2: float
    texture: str  # textures.TEXTURE_KINDS
    freq: float  # texture periods across the object
    tex_angle: float  # texture orientation (radians) relative to the object
    upright: bool  # True: small rotations only (vehicles, people, furniture)


_DEG = 3.141592653589793 / 180.0

# fmt: off
VOCABULARY: tuple[ObjectClass, ...] = (
    ObjectClass("aeroplane", "airplane", "cross", 0.22, 1.6, 0.58, 0.15, 0.85, 0.60, 0.40, 0.55,
                "stripes", 3.0, 0 * _DEG, False),
    ObjectClass("bicycle", "bicycle", "arc", 0.7, 1.0, 0.00, 0.85, 0.80, 0.00, 0.10, 0.20,
                "stripes", 6.0, 45 * _DEG, True),
    ObjectClass("bird", "bird", "triangle", 0.0, 1.0, 0.12, 0.80, 0.90, 0.60, 0.70, 0.50,
                "dots", 4.0, 0.0, False),
    ObjectClass("boat", "boat", "trapezoid", 0.0, 1.8, 0.62, 0.70, 0.60, 0.00, 0.00, 0.95,
                "stripes", 4.0, 90 * _DEG, True),
    ObjectClass("bottle", "bottle", "rectangle", 0.0, 0.4, 0.33, 0.75, 0.55, 0.33, 0.30, 0.90,
                "gradient", 1.0, 0.0, True),
    ObjectClass("bus", "bus", "rectangle", 0.0, 1.9, 0.15, 0.90, 0.95, 0.55, 0.40, 0.25,
                "checker", 5.0, 0.0, True),
    ObjectClass("car", "car", "ngon", 8, 1.8, 0.95, 0.80, 0.70, 0.00, 0.00, 0.15,
                "gradient", 1.0, 90 * _DEG, True),
    ObjectClass("cat", "cat", "ellipse", 0.0, 1.2, 0.08, 0.70, 0.85, 0.06, 0.60, 0.35,
                "stripes", 5.0, 30 * _DEG, False),
    ObjectClass("chair", "chair", "lshape", 0.0, 0.8, 0.07, 0.60, 0.45, 0.10, 0.40, 0.75,
                "checker", 7.0, 0.0, True),
    ObjectClass("cow", "cow", "ellipse", 0.0, 1.7, 0.00, 0.00, 0.95, 0.00, 0.00, 0.10,
                "blobs", 3.0, 0.0, True),
    ObjectClass("diningtable", "dining table", "rectangle", 0.0, 2.2, 0.09, 0.55, 0.65, 0.08, 0.65, 0.40,
                "stripes", 9.0, 0.0, True),
    ObjectClass("dog", "dog", "ngon", 5, 1.3, 0.10, 0.45, 0.80, 0.05, 0.70, 0.30,
                "blobs", 4.0, 0.0, False),
    ObjectClass("horse", "horse", "ngon", 6, 1.5, 0.05, 0.75, 0.45, 0.05, 0.50, 0.20,
                "speckle", 1.0, 0.0, True),
    ObjectClass("motorbike", "motorcycle", "diamond", 0.0, 1.5, 0.55, 0.05, 0.35, 0.55, 0.10, 0.85,
                "rings", 5.0, 0.0, True),
    ObjectClass("person", "person", "ellipse", 0.0, 0.4, 0.60, 0.70, 0.70, 0.95, 0.70, 0.80,
                "stripes", 5.0, 90 * _DEG, True),
    ObjectClass("pottedplant", "potted plant", "star", 7, 1.0, 0.30, 0.85, 0.65, 0.25, 0.90, 0.35,
                "dots", 6.0, 0.0, False),
    ObjectClass("sheep", "sheep", "ellipse", 0.0, 1.4, 0.12, 0.10, 0.95, 0.10, 0.20, 0.70,
                "speckle", 1.0, 0.0, True),
    ObjectClass("sofa", "couch", "lshape", 0.0, 1.8, 0.78, 0.60, 0.60, 0.78, 0.30, 0.85,
                "checker", 4.0, 0.0, True),
    ObjectClass("train", "train", "rectangle", 0.0, 3.0, 0.50, 0.80, 0.70, 0.50, 0.20, 0.95,
                "stripes", 8.0, 0.0, True),
    ObjectClass("tvmonitor", "tv", "rectangle", 0.0, 1.3, 0.66, 0.10, 0.15, 0.55, 0.60, 0.95,
                "rings", 4.0, 0.0, True),
)
# fmt: on

VOC_CLASS_NAMES: tuple[str, ...] = tuple(c.voc_name for c in VOCABULARY)
IMAGENET_WNIDS: tuple[str, ...] = tuple(f"n{i + 1:08d}" for i in range(len(VOCABULARY)))

# Cityscapes instance classes drawn with the appearance of a vocabulary class (by VOC name).
CITYSCAPES_THINGS: dict[str, str] = {
    "person": "person",
    "car": "car",
    "bus": "bus",
    "train": "train",
    "motorcycle": "motorbike",
    "bicycle": "bicycle",
}


def class_index(voc_name: str) -> int:
    """Index of a class in VOCABULARY (0-based) from its VOC name."""
    return VOC_CLASS_NAMES.index(voc_name)
