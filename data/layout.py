"""The on-disk layout of the 128x256 .npy CityScapes release (docs/design.md, "Release layout").

<root>/{train,val}/image/<i>.npy     float32 (H, W, 3), RGB in [0, 1]
<root>/{train,val}/label_7/<i>.npy   float32 (H, W), classes 0..6, void = -1
<root>/{train,val}/label_19/<i>.npy  float32 (H, W), classes 0..18, void = -1
<root>/{train,val}/depth/<i>.npy     float32 (H, W, 1), inverse depth, 0 = invalid
<root>/{train,val}/instance/<i>.npy  float32 (H, W, 3), optional: offsets (dy, dx) in pixels to the
                                    centroid of the pixel's instance, 0 off instances; channel 2 the
                                    instance mask (1/0). Built from gtFine *_instanceIds.png (ids >= 1000)
                                    or written by SynthCity; not in the MTAN release (data/instances.py)

A release built by data.prepare_cityscapes also holds, beside train/ and val/:
<root>/index.csv     the raw source files of every <i>.npy
<root>/prepare.json  the build settings; written before any data
<root>/SHA256SUMS    sha256sum lines of every other file
<root>/COMPLETE      written last, one sha256sum line of SHA256SUMS: the build finished
"""
SPLITS = ("train", "val")
IMAGE_DIR = "image"
DEPTH_DIR = "depth"
INSTANCE_DIR = "instance"
CLASS_COUNTS = (7, 19)
# SegNet pools five times: every image's height and width must divide by 2**5.
SIZE_MULTIPLE = 32
# Every release holds these; instance/ only some (see above).
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


def size_problem(height, width):
    """What is wrong with an image size (H, W) for the network, or None."""
    if height > 0 and width > 0 and not height % SIZE_MULTIPLE and not width % SIZE_MULTIPLE:
        return None
    return f"height and width must be positive multiples of {SIZE_MULTIPLE} (SegNet pools five times)"
