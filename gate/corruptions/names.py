"""The names of the corruptions, without loading the code that applies them: what a policy
may ask for (``robustness`` rules validate against it) and what it may not, with why."""

from __future__ import annotations

#: Corruptions gate applies, by ImageNet-C group.
GROUPS: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "fog"),
    "digital": ("brightness", "contrast", "jpeg_compression", "pixelate"),
}
AVAILABLE: tuple[str, ...] = tuple(name for names in GROUPS.values() for name in names)
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)

#: ImageNet-C corruptions gate does not apply, and why (see docs/corruptions.md).
NOT_AVAILABLE: dict[str, str] = {
    "frost": "it overlays photographs of frost distributed with ImageNet-C under no stated licence",
    "glass_blur": "not implemented yet",
    "elastic_transform": "not implemented yet",
}
