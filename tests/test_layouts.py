"""Dataset layouts on the real sample files: detection, pairing, decoding quirks and bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from benchmark.data.layouts import QU_EX_PARTS, open_source, read_image, read_mask
from benchmark.errors import DataError
from conftest import QU_EX_SAMPLE, RADIOGRAPHY_SAMPLE, RGB_STORED

VIRAL = RADIOGRAPHY_SAMPLE / "Viral Pneumonia"


def test_radiography_is_found_from_the_release_folder_or_its_parent(radiography_root, data_config):
    from_parent = open_source(data_config(radiography_root))
    from_dataset = open_source(data_config(radiography_root / "COVID-19_Radiography_Dataset"))
    assert from_parent.name == "covid-radiography"
    assert from_parent.classes == ("COVID", "Lung_Opacity", "Normal", "Viral Pneumonia")
    assert [item.key for item in from_parent.items] == [item.key for item in from_dataset.items]
    assert from_parent.fingerprint() == from_dataset.fingerprint()
    assert "Viral Pneumonia/images/Viral Pneumonia-140.png" in [item.key for item in from_parent.items]
    assert all(item.has_mask and item.official_split is None for item in from_parent.items)


def test_rgb_stored_images_are_read_as_greyscale():
    for number in RGB_STORED:
        path = VIRAL / "images" / f"Viral Pneumonia-{number}.png"
        with Image.open(path) as stored:
            assert stored.mode == "RGB"
            red = np.asarray(stored)[..., 0]
        grey = read_image(path)
        assert grey.dtype == np.uint8 and grey.shape == (299, 299)
        np.testing.assert_array_equal(grey, red)  # R = G = B in these files, so luma is the channel


def test_masks_are_resized_to_the_working_size_with_nearest_neighbour(radiography_root, data_config):
    source = open_source(data_config(radiography_root))
    index = next(i for i, item in enumerate(source.items) if item.key.endswith("Viral Pneumonia-140.png"))
    native = read_mask(VIRAL / "masks" / "Viral Pneumonia-140.png")
    assert native.shape == (256, 256)  # images are 299 x 299
    for size in (64, 299):
        image, mask = source.load(index, size)
        assert image.shape == mask.shape == (size, size) and mask.dtype == np.uint8
        assert set(np.unique(mask)) == {0, 1}
        assert abs(mask.mean() - native.mean()) < 0.02  # same lung area after resizing


def test_sixteen_bit_and_jpeg_images_are_read(tmp_path):
    original = read_image(VIRAL / "images" / "Viral Pneumonia-1.png")
    twelve_bit = original.astype(np.uint16) * 16 + 300  # 12-bit data with an offset, as detectors write
    sixteen_bit_path = tmp_path / "deep.png"
    Image.fromarray(twelve_bit).save(sixteen_bit_path)
    with Image.open(sixteen_bit_path) as stored:
        assert stored.mode.startswith("I")
    stretched = read_image(sixteen_bit_path)
    expected = np.rint((original - original.min()) * 255.0 / (original.max() - original.min()))
    assert np.abs(stretched.astype(float) - expected).max() <= 1

    jpeg_path = tmp_path / "photo.jpg"
    Image.fromarray(original).convert("RGB").save(jpeg_path, quality=95)
    assert np.abs(read_image(jpeg_path).astype(float) - original).mean() < 3


def test_non_image_files_are_ignored(radiography_root, data_config):
    before = [item.key for item in open_source(data_config(radiography_root)).items]
    dataset = radiography_root / "COVID-19_Radiography_Dataset"
    (dataset / "README.md.txt").write_text("release notes")
    (dataset / "COVID.metadata.xlsx").write_bytes(b"PK\x03\x04 not really a spreadsheet")
    (dataset / "COVID" / "images" / ".DS_Store").write_bytes(b"\x00")
    (dataset / "COVID" / "images" / "Thumbs.db").write_bytes(b"\x00")
    (dataset / "COVID" / "masks" / "notes.csv").write_text("a,b\n")
    assert [item.key for item in open_source(data_config(radiography_root)).items] == before


def test_qu_ex_sample_uses_the_official_split_and_allows_test_images_without_masks(data_config):
    source = open_source(data_config(QU_EX_SAMPLE.parent))  # the parent holds exactly one part
    assert source.name == "covid-qu-ex"
    assert source.classes == ("COVID-19", "Non-COVID", "Normal")
    train = [item for item in source.items if item.official_split == "train"]
    test = [item for item in source.items if item.official_split == "test"]
    assert len(train) == 9 and len(test) == 6
    assert all(item.has_mask for item in train) and not any(item.has_mask for item in test)
    assert all("/lung masks/" in key for key in source.mask_keys if key is not None)  # not infection masks
    image, mask = source.load(0, 64)
    assert image.shape == (64, 64) and mask is not None and mask.max() == 1
    assert source.load(len(source.items) - 1, 64)[1] is None


def test_qu_ex_naming_quirks_are_paired(tmp_path, data_config):
    """Train spells Non_COVID (N).png, Val/Test non_COVID (N).png; a mask with the other spelling pairs."""
    part = tmp_path / QU_EX_PARTS[1]
    shutil.copytree(QU_EX_SAMPLE, part)
    val_non_covid = part / "Val" / "Non-COVID"
    for folder in ("images", "lung masks"):
        (part / "Train" / "Non-COVID" / folder).mkdir(parents=True)
        for path in sorted((val_non_covid / folder).iterdir()):
            renamed = path.name.replace("non_COVID", "Non_COVID") if folder == "images" else path.name
            shutil.copyfile(path, part / "Train" / "Non-COVID" / folder / renamed)
    for class_name in ("COVID-19", "Normal"):
        shutil.copytree(part / "Val" / class_name, part / "Train" / class_name)
    source = open_source(data_config(part))
    train_non_covid = [i for i, item in enumerate(source.items) if item.key.startswith("Train/Non-COVID/")]
    assert len(train_non_covid) == 3
    for index in train_non_covid:
        assert "Non_COVID (" in source.items[index].key
        assert source.items[index].has_mask and "/lung masks/non_COVID (" in source.mask_keys[index]


def test_folder_layout_sorts_classes_and_pairs_masks_by_stem(tmp_path, data_config):
    root = tmp_path / "mine"
    for class_name, number in (("pneumonia", 2), ("healthy", 3)):
        images, masks = root / class_name / "img", root / class_name / "lung"
        images.mkdir(parents=True)
        masks.mkdir()
        image = VIRAL / "images" / f"Viral Pneumonia-{number}.png"
        mask = VIRAL / "masks" / f"Viral Pneumonia-{number}.png"
        shutil.copyfile(image, images / "x 1.png")
        shutil.copyfile(image, images / "x 2.png")
        Image.open(mask).save(masks / "x 1.jpg")
        shutil.copyfile(mask, masks / "x 2.png")
    source = open_source(data_config(root, images_dir="img", masks_dir="lung"))
    assert source.name == "folder" and source.classes == ("healthy", "pneumonia")
    assert source.mask_keys[0] == "healthy/lung/x 1.jpg"  # another extension is tolerated
    assert source.load(0, 32)[1].max() == 1


# ---- bad input: each a DataError that names the path or value and says what was expected


def test_missing_empty_or_file_root(tmp_path, data_config):
    with pytest.raises(DataError, match="does not exist"):
        open_source(data_config(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".hidden").write_text("")
    with pytest.raises(DataError, match="empty"):
        open_source(data_config(tmp_path / "empty"))
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(DataError, match="is a file"):
        open_source(data_config(tmp_path / "file.png"))


def test_unknown_layout_lists_the_expected_ones(tmp_path, data_config):
    (tmp_path / "odd" / "scans").mkdir(parents=True)
    (tmp_path / "odd" / "scans" / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match="covid-radiography.*covid-qu-ex.*folder") as error:
        open_source(data_config(tmp_path / "odd"))
    assert str(tmp_path / "odd") in str(error.value)
    with pytest.raises(DataError, match="expected one of"):
        open_source(data_config(tmp_path / "odd", dataset="imagenet"))


def test_forced_layout_that_does_not_match(radiography_root, data_config):
    with pytest.raises(DataError, match="not a COVID-QU-Ex folder"):
        open_source(data_config(radiography_root, dataset="covid-qu-ex"))
    shutil.rmtree(radiography_root / "COVID-19_Radiography_Dataset" / "Normal")
    with pytest.raises(DataError, match="missing class folders Normal"):
        open_source(data_config(radiography_root))


def test_both_qu_ex_parts_ask_to_pick_one(tmp_path, data_config):
    for part in QU_EX_PARTS:
        shutil.copytree(QU_EX_SAMPLE, tmp_path / "covidqu" / part)
    with pytest.raises(DataError, match="point --data-root at the one"):
        open_source(data_config(tmp_path / "covidqu"))


def test_empty_class(radiography_root, data_config):
    for folder in ("images", "masks"):
        for path in (radiography_root / "COVID-19_Radiography_Dataset" / "Lung_Opacity" / folder).iterdir():
            path.unlink()
    with pytest.raises(DataError, match="class 'Lung_Opacity' has no images"):
        open_source(data_config(radiography_root))


def test_training_images_without_masks(radiography_root, data_config):
    masks = radiography_root / "COVID-19_Radiography_Dataset" / "COVID" / "masks"
    (masks / "COVID-1.png").unlink()
    (masks / "COVID-2.png").unlink()
    expected = r"2 training images have no lung mask \(first: COVID/images/COVID-1.png"
    with pytest.raises(DataError, match=expected):
        open_source(data_config(radiography_root))
    skipped = open_source(data_config(radiography_root, missing_masks="skip"))
    allowed = open_source(data_config(radiography_root, missing_masks="allow"))
    assert len(allowed.items) == len(skipped.items) + 2
    assert [item.key for item in allowed.items if not item.has_mask] == ["COVID/images/COVID-1.png", "COVID/images/COVID-2.png"]
    assert allowed.load(0, 32)[1] is None
    for path in masks.iterdir():
        path.unlink()
    with pytest.raises(DataError, match="class 'COVID' has no images left after dropping"):
        open_source(data_config(radiography_root, missing_masks="skip"))


def test_mask_with_another_aspect_ratio_names_both_files(radiography_root, data_config):
    mask_path = radiography_root / "COVID-19_Radiography_Dataset" / "COVID" / "masks" / "COVID-1.png"
    Image.open(mask_path).resize((256, 128)).save(mask_path)
    source = open_source(data_config(radiography_root))
    expected = r"masks/COVID-1\.png is 256x128 but image .*images/COVID-1\.png is 299x299"
    with pytest.raises(DataError, match=expected):
        source.load(0, 64)


def test_unreadable_image_names_the_file(tmp_path):
    broken = tmp_path / "Viral Pneumonia-1.png"
    broken.write_bytes((VIRAL / "images" / "Viral Pneumonia-1.png").read_bytes()[:5000])
    with pytest.raises(DataError, match="Viral Pneumonia-1.png: cannot decode image"):
        read_image(broken)
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("hello")
    with pytest.raises(DataError, match="notes.png: cannot decode image"):
        read_image(not_an_image)
