"""The embedded phantom: determinism, shapes, where the class signal lives, and its calibration."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from benchmark.data import phantom
from benchmark.data.cache import decoded_items
from benchmark.data.phantom import CLASSES, PhantomSource, generate, label_of
from benchmark.data.source import resize_image, resize_mask
from benchmark.errors import DataError

SMALL = 96  # native size for the fast tests: every code path, a fraction of the time


def first_index_of(label: int, seed: int = 0) -> int:
    return next(i for i in range(64) if label_of(i, seed) == label)


def test_generate_is_deterministic():
    first = generate(5, seed=3, size=SMALL)
    second = generate(5, seed=3, size=SMALL)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert first[2] == second[2]


@pytest.mark.parametrize("size", [64, SMALL, 256])
def test_image_and_mask_shapes_dtypes_and_mask_placement(size):
    for index in range(4):
        image, mask, label = generate(index, seed=0, size=size)
        assert image.shape == mask.shape == (size, size)
        assert image.dtype == mask.dtype == np.uint8
        assert set(np.unique(mask)) == {0, 1}
        assert 0.08 < mask.mean() < 0.45  # two lungs: a sizeable but partial share of the image
        margin = max(1, size // 50)  # the lungs never touch the image border
        frame = np.ones_like(mask, dtype=bool)
        frame[margin:-margin, margin:-margin] = False
        assert not mask[frame].any()
        assert 0 <= label < len(CLASSES)
        assert image.std() > 20  # a radiograph, not a flat field


def test_lungs_are_darker_than_the_mediastinum_and_abdomen():
    image, mask, _ = generate(0, seed=0, size=SMALL)
    lungs = image[mask > 0].mean()
    middle_column = image[SMALL // 4 :, SMALL // 2 - 2 : SMALL // 2 + 2].mean()
    assert lungs < middle_column - 30


def test_different_seeds_and_indices_differ():
    image, mask, _ = generate(0, seed=0, size=SMALL)
    other_seed = generate(0, seed=1, size=SMALL)
    other_index = generate(1, seed=0, size=SMALL)
    assert not np.array_equal(image, other_seed[0]) and not np.array_equal(mask, other_seed[1])
    assert not np.array_equal(image, other_index[0])


def test_labels_are_balanced_listed_without_rendering_and_match_generate():
    source = PhantomSource(count=400, seed=2, native_size=SMALL)
    labels = np.array([item.label for item in source.items])
    assert np.bincount(labels, minlength=len(CLASSES)).tolist() == [100] * len(CLASSES)
    assert labels[:40].tolist() != (np.arange(40) % 4).tolist()  # shuffled, not a fixed cycle
    for index in range(6):
        assert generate(index, seed=2, size=SMALL)[2] == labels[index]


@pytest.mark.parametrize("label", range(len(CLASSES)))
def test_class_signal_stays_inside_the_lung_mask(label):
    index = first_index_of(label)
    image, mask, _ = generate(index, seed=0, size=SMALL)
    healthy, healthy_mask, _ = generate(index, seed=0, size=SMALL, lesion_scale=0.0)
    np.testing.assert_array_equal(mask, healthy_mask)
    changed = image != healthy
    assert not changed[mask == 0].any()  # not a single pixel outside the lungs
    if CLASSES[label] == "Normal":
        assert not changed.any()
    else:
        # The lesion brightens the lungs: a visible signal, not rounding noise.
        assert (image.astype(int) - healthy)[mask > 0].mean() > 1


def test_shortcut_is_off_by_default_and_marks_only_outside_the_lungs():
    assert PhantomSource(count=4).shortcut is False
    default = generate(2, seed=0, size=SMALL)
    plain = generate(2, seed=0, size=SMALL, shortcut=False)
    marked = generate(2, seed=0, size=SMALL, shortcut=True)
    np.testing.assert_array_equal(default[0], plain[0])
    changed = marked[0] != plain[0]
    assert changed.any()
    assert not changed[plain[1] > 0].any()


def test_shortcut_mark_differs_between_classes():
    marks = []
    for label in range(len(CLASSES)):
        index = first_index_of(label)
        with_mark = generate(index, seed=0, size=SMALL, shortcut=True)[0].astype(int)
        without = generate(index, seed=0, size=SMALL)[0].astype(int)
        marks.append(with_mark != without)
    corners = [tuple(np.argwhere(mark).mean(axis=0) > SMALL / 2) for mark in marks]
    assert len(set(corners)) == len(CLASSES)  # each class puts its mark in its own corner


def test_source_items_and_identity():
    source = PhantomSource(count=10, seed=0, native_size=SMALL)
    assert source.name == "phantom"
    assert source.classes == CLASSES
    assert [item.key for item in source.items[:2]] == ["phantom/000000", "phantom/000001"]
    assert all(item.has_mask and item.official_split is None for item in source.items)
    assert len(source.items) == 10


def test_load_resizes_image_by_area_and_mask_by_nearest():
    source = PhantomSource(count=8, seed=0, native_size=SMALL)
    native_image, native_mask, _ = generate(3, seed=0, size=SMALL)

    image, mask = source.load(3, SMALL)
    np.testing.assert_array_equal(image, native_image)
    np.testing.assert_array_equal(mask, native_mask)

    for size in (32, 64, 224):
        image, mask = source.load(3, size)
        assert image.shape == mask.shape == (size, size)
        assert image.dtype == mask.dtype == np.uint8
        assert set(np.unique(mask)) == {0, 1}
        np.testing.assert_array_equal(image, resize_image(native_image, size))
        np.testing.assert_array_equal(mask, resize_mask(native_mask, size))

    # A 3x area reduction: each output pixel is the mean of its 3 x 3 block.
    blocks = native_image.astype(float).reshape(32, 3, 32, 3).mean(axis=(1, 3))
    assert np.abs(source.load(3, 32)[0] - blocks).max() <= 1


def test_load_rejects_indices_out_of_range():
    source = PhantomSource(count=8, native_size=SMALL)
    with pytest.raises(DataError, match="out of range"):
        source.load(8, 64)
    with pytest.raises(DataError, match="out of range"):
        source.load(-1, 64)


def test_bad_parameters_are_data_errors():
    with pytest.raises(DataError, match="count"):
        PhantomSource(count=0)
    with pytest.raises(DataError, match="native size"):
        PhantomSource(native_size=8)
    with pytest.raises(DataError, match="seed"):
        PhantomSource(seed=-1)


def test_fingerprint_is_stable_and_changes_with_every_parameter(monkeypatch):
    base = dict(count=100, seed=0, native_size=256, shortcut=False)
    reference = PhantomSource(**base).fingerprint()
    assert PhantomSource(**base).fingerprint() == reference
    for name, value in [("count", 101), ("seed", 1), ("native_size", 128), ("shortcut", True)]:
        assert PhantomSource(**{**base, name: value}).fingerprint() != reference, name
    monkeypatch.setattr(phantom, "GENERATOR_VERSION", phantom.GENERATOR_VERSION + "-next")
    assert PhantomSource(**base).fingerprint() != reference


# ----------------------------------------------------------------------------------------------
# Calibration: what the default pipeline produces (native 256 px, cached at 64 px) must carry the
# class signal inside the lungs only.


def lung_blanked(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Every lung pixel replaced by the image's mean lung intensity."""
    blanked = image.copy()
    lungs = mask > 0
    blanked[lungs] = np.uint8(round(float(image[lungs].mean())))
    return blanked


def probe_features(source: PhantomSource, size: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flattened images and lung-blanked images at ``size``, from one render per item, rendered on every CPU
    as the cache renders them."""
    plain, blanked = [], []
    for image, mask in decoded_items(source, source.native_size):
        plain.append(resize_image(image, size).ravel())
        blanked.append(resize_image(lung_blanked(image, mask), size).ravel())
    labels = np.array([item.label for item in source.items])
    return np.array(plain, np.float32), np.array(blanked, np.float32), labels


def per_class_split(labels: np.ndarray, test_fraction: float = 0.2, seed: int = 0):
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        cut = round(len(members) * test_fraction)
        test.extend(members[:cut])
        train.extend(members[cut:])
    return np.array(train), np.array(test)


def linear_probe_accuracy(features: np.ndarray, labels: np.ndarray) -> float:
    train, test = per_class_split(labels)
    scaler = StandardScaler().fit(features[train])
    # Strong L2 (C) because 4096 pixels outnumber the 1600 training images; tol keeps the fit short.
    model = LogisticRegression(C=0.003, tol=1e-3, max_iter=300)
    # One BLAS thread: on a shared machine more threads made the fit 10x slower, and the score
    # then depends on the core count through summation order.
    with threadpool_limits(1):
        model.fit(scaler.transform(features[train]), labels[train])
        return model.score(scaler.transform(features[test]), labels[test])


@pytest.mark.slow
def test_calibration_signal_is_learnable_and_lives_in_the_lungs():
    plain, blanked, labels = probe_features(PhantomSource())  # the defaults: 2000 images, 256 px
    plain_accuracy = linear_probe_accuracy(plain, labels)
    blanked_accuracy = linear_probe_accuracy(blanked, labels)
    print(f"phantom linear probe: images {plain_accuracy:.3f}, lungs blanked {blanked_accuracy:.3f}")
    assert plain_accuracy >= 0.50  # chance is 0.25
    assert blanked_accuracy <= 0.32


@pytest.mark.slow
def test_calibration_shortcut_is_learnable_without_the_lungs():
    _, blanked, labels = probe_features(PhantomSource(count=800, shortcut=True))
    accuracy = linear_probe_accuracy(blanked, labels)
    print(f"phantom linear probe with shortcut, lungs blanked: {accuracy:.3f}")
    assert accuracy >= 0.45
