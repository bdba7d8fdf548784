from __future__ import annotations

import torch

from ablate_plugins.augmentations import color_jitter, crop_flip, none


def batch(n: int = 64) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_none_is_identity() -> None:
    images = batch()
    assert torch.equal(none()(images, torch.Generator()), images)


def test_crop_is_a_shifted_window_of_the_zero_padded_image() -> None:
    images = batch(32)
    out = crop_flip(padding=4, flip=False)(images, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    for i in range(len(images)):
        matches = [
            (dy, dx)
            for dy in range(9)
            for dx in range(9)
            if torch.equal(out[i], padded[i, :, dy : dy + 32, dx : dx + 32])
        ]
        assert matches, f"image {i} is not a crop of its padded source"


def test_crop_and_flip_together_give_a_window_or_its_mirror_image() -> None:
    images = batch(64)
    out = crop_flip(padding=4, flip=True)(images, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    mirrored = 0
    for i in range(len(images)):
        windows = [padded[i, :, dy : dy + 32, dx : dx + 32] for dy in range(9) for dx in range(9)]
        plain = any(torch.equal(out[i], w) for w in windows)
        flipped = any(torch.equal(out[i], w.flip(2)) for w in windows)
        assert plain or flipped, f"image {i} is neither a crop nor a mirrored crop"
        mirrored += flipped and not plain
    assert 16 < mirrored < 48


def test_images_in_one_batch_get_independent_draws_and_seeds_repeat() -> None:
    images = batch(1).expand(64, -1, -1, -1).contiguous()  # 64 copies of one image
    augment = crop_flip()
    out = augment(images, torch.Generator().manual_seed(3))
    distinct = {tuple(o.flatten()[:200].tolist()) for o in out}
    assert len(distinct) > 30
    again = augment(images, torch.Generator().manual_seed(3))
    assert torch.equal(out, again)
    assert not torch.equal(out, augment(images, torch.Generator().manual_seed(4)))


def test_flip_alone_flips_about_half() -> None:
    images = batch(2000)
    out = crop_flip(padding=0, flip=True)(images, torch.Generator().manual_seed(0))
    flipped = (out == images.flip(3)).flatten(1).all(1)
    kept = (out == images).flatten(1).all(1)
    assert bool((flipped | kept).all())
    assert 0.45 < flipped.float().mean().item() < 0.55


def test_color_jitter_stays_in_range_and_scales_brightness_within_strength() -> None:
    images = batch(256)
    out = color_jitter(strength=0.4)(images, torch.Generator().manual_seed(0))
    assert out.min() >= 0 and out.max() <= 1
    gray = torch.full((512, 3, 8, 8), 0.5)
    jittered = color_jitter(strength=0.4)(gray, torch.Generator().manual_seed(0))
    factors = jittered.mean((1, 2, 3)) / 0.5  # contrast and saturation leave a flat gray alone
    assert factors.min() >= 0.6 - 1e-6 and factors.max() <= 1.4 + 1e-6
    assert factors.min() < 0.7 and factors.max() > 1.3  # the whole range is used
