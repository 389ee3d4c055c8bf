"""The on-disk layout of the 128x256 .npy CityScapes release (METHODS §1).

<root>/{train,val}/image/<i>.npy     float32 (H, W, 3), RGB in [0, 1]
<root>/{train,val}/label_7/<i>.npy   float32 (H, W), classes 0..6, void = -1
<root>/{train,val}/label_19/<i>.npy  float32 (H, W), classes 0..18, void = -1
<root>/{train,val}/depth/<i>.npy     float32 (H, W, 1), inverse depth, 0 = invalid

A release built by data.prepare_cityscapes also holds, beside train/ and val/:
<root>/index.csv     the raw source files of every <i>.npy
<root>/prepare.json  the build settings; written before any data
<root>/SHA256SUMS    sha256sum lines of every other file
<root>/COMPLETE      written last, one sha256sum line of SHA256SUMS: the build finished
"""
SPLITS = ("train", "val")
IMAGE_DIR = "image"
DEPTH_DIR = "depth"
CLASS_COUNTS = (7, 19)
SUBDIRS = (IMAGE_DIR, "label_7", "label_19", DEPTH_DIR)
# Written beside the data by SynthCity; its presence marks a dataset as synthetic.
SYNTHETIC_MARKER = "synthcity.json"
BUILD_INDEX = "index.csv"
# Its presence marks a folder as the builder's: without BUILD_COMPLETE the build is unfinished.
BUILD_SETTINGS = "prepare.json"
BUILD_CHECKSUMS = "SHA256SUMS"
BUILD_COMPLETE = "COMPLETE"


def label_dir(num_classes):
    if num_classes not in CLASS_COUNTS:
        raise ValueError(f"--classes must be one of {CLASS_COUNTS}, got {num_classes}")
    return f"label_{num_classes}"
