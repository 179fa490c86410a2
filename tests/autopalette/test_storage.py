"""Storage accounting (AutoPalette section 3.6)."""

import pytest

from repro.autopalette.palette import bits_per_pixel, images_per_class, storage_bits


@pytest.mark.parametrize("ipc,k,expected", [(1, 64, 4), (10, 64, 40), (50, 64, 200), (1, 256, 1), (10, 256, 10),
                                            (1, 32, 8), (1, 16, 16), (1, 2, 128), (1, 65, 2)])
def test_images_per_class_follows_the_paper(ipc, k, expected):
    assert images_per_class(ipc, k) == expected


def test_bits_per_pixel():
    assert [bits_per_pixel(k) for k in (2, 3, 4, 64, 65, 256)] == [1, 2, 2, 6, 7, 8]
    with pytest.raises(ValueError):
        bits_per_pixel(1)
    with pytest.raises(ValueError):
        bits_per_pixel(257)
    with pytest.raises(ValueError):
        images_per_class(0, 64)


def test_storage_bits_at_64_colours_matches_the_4x_budget_without_palettes():
    full = storage_bits(1, 256, 32, 32)                    # one 8-bit RGB image: 8 * CHW bits
    assert full == 8 * 3 * 32 * 32
    four = storage_bits(images_per_class(1, 64), 64, 32, 32, include_palette=False)
    assert four == full                                     # 4 images x 6-bit indices = 1 image x 24 bits per pixel
    with_palettes = storage_bits(4, 64, 32, 32, include_palette=True)
    assert with_palettes == four + 4 * 64 * 3 * 8           # the palettes the paper does not count


def test_paper_accounting_departs_from_bit_counting_below_64_colours():
    # K = 16: the paper stores 16 images per IPC, but 16 four-bit index maps take 16 * 4 / 24 = 2.67x the budget.
    budget = storage_bits(1, 256, 32, 32)
    assert storage_bits(images_per_class(1, 16), 16, 32, 32, include_palette=False) > 2 * budget
