"""SynthCity: procedural street scenes written in the layout of the 128x256 CityScapes release.

CityScapes needs an account to download, so every command can also run on this generator
(docs/design.md, "SynthCity"). A sample is a street seen by a pinhole
camera with the Cityscapes intrinsics (focal length 1.1 x image width, camera 1.2 m above
the ground), looking along the street:

- ground plane (road with markings, kerbside terrain, sidewalks) below a horizon whose row
  varies with the camera pitch; building facades along both sides, parks, cross streets,
  walls and fences, and a row of buildings closing the street; sky above;
- upright objects (cars, trucks, buses, trams, cyclists, motorcyclists, pedestrians, poles,
  street lamps, signs, traffic lights, trees, void clutter) stand at a ground position
  (x, z) in metres, face the camera, take their size and foot row from the projection and
  are painted far to near, so nearer ones occlude farther ones;
- depth is inverse depth DEPTH_SCALE / z: on the ground proportional to the row's distance
  below the horizon, constant over an upright object (its footprint's), constant down each
  column of a facade; 0 on sky, void and a few random holes;
- the image gets per-class colour families with per-instance variation, textures (windows,
  road markings, foliage), haze with distance, a global illumination change and noise;
  since version 3 it is computed with data/portable_float.py, so it is the same bytes on
  every CPU, and stored in 8-bit steps (k / 255);
- instance/ (version 2) holds the offsets of data/instances.py: every placed person,
  vehicle (car, truck, bus, tram, bicycle, motorcycle) and rider is one instance (a
  cyclist's rider and its two-wheeler two, as in Cityscapes), its mask the pixels it keeps
  in the label image after occlusion. Drawing it uses no random numbers: labels and depth
  are those of version 1.

Every random choice in world units is drawn from numpy.random.default_rng([seed, split,
index]) before any resolution-dependent noise, so a sample is a pure function of (seed,
split, index, height, width), and one scene keeps its layout across image sizes.

    python3 -m data.synthcity --out DIR [--n-train N] [--n-val M] [--height H] [--width W] [--seed S]
"""
import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from data import portable_float
from data.instances import FIRST_INSTANCE_ID, instance_target
from data.labels import TRAIN_ID_NAMES, TRAIN_ID_TO_CATEGORY, VOID
from data.layout import (
    DEPTH_DIR,
    IMAGE_DIR,
    INSTANCE_DIR,
    SIZE_MULTIPLE,
    SPLITS,
    SYNTHETIC_MARKER,
    label_dir,
    size_problem,
)
from runfolder import atomic
from runfolder.exit_codes import EXIT_INTERRUPTED

# 1: image, label_7, label_19, depth. 2: instance/ added; the other arrays unchanged.
# 3: the image made without CPU-dependent float operations (its bytes differed between CPUs
# under one version) and in 8-bit steps; label_7, label_19, depth and instance/ unchanged.
GENERATOR_VERSION = 3
DEFAULT_N_TRAIN = 512
DEFAULT_N_VAL = 128
DEFAULT_HEIGHT, DEFAULT_WIDTH = 128, 256
SPLIT_IDS = {split: i for i, split in enumerate(SPLITS)}

# The Cityscapes camera: focal length 2262 px at width 2048, stereo baseline 0.22 m, camera
# 1.22 m above the road. The release stores disparity * 256 / 65535 (docs/design.md, "Release layout"), which is
# baseline * focal * 256 / 65535 / z = DEPTH_SCALE / z with z in metres, at any image size.
FOCAL_PER_WIDTH = 2262.0 / 2048.0
DEPTH_SCALE = 0.22 * 2262.0 * 256.0 / 65535.0
CAMERA_HEIGHT = 1.22
NEAREST = 1.0  # metres: nothing is drawn nearer than this (keeps projections bounded)

_ID = {name: i for i, name in enumerate(TRAIN_ID_NAMES)}
(ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY, PERSON,
 RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE) = (_ID[name] for name in (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle"))
VOID_CODE = 255  # void in the uint8 label canvas; written as labels.VOID
# The Cityscapes classes with instances ("things"): painted with their object's instance id.
THING_CODES = np.array([PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE], np.uint8)
# uint8 canvas code -> stored label value; the 7 classes come only from labels.TRAIN_ID_TO_CATEGORY.
_TO_TRAIN_ID = np.full(256, VOID, np.float32)
_TO_TRAIN_ID[:len(TRAIN_ID_NAMES)] = np.arange(len(TRAIN_ID_NAMES))
_TO_CATEGORY = np.full(256, VOID, np.float32)
_TO_CATEGORY[:len(TRAIN_ID_NAMES)] = TRAIN_ID_TO_CATEGORY

# Colour families (linear RGB). They overlap across classes (grey cars, grey walls, grey
# road; green fences and trams) so that colour alone does not give the class.
PALETTE = {
    ROAD: [(0.30, 0.30, 0.32), (0.36, 0.35, 0.34), (0.25, 0.26, 0.28), (0.42, 0.41, 0.40)],
    SIDEWALK: [(0.55, 0.53, 0.50), (0.60, 0.50, 0.45), (0.48, 0.48, 0.50), (0.66, 0.62, 0.55)],
    BUILDING: [(0.78, 0.72, 0.60), (0.60, 0.58, 0.56), (0.62, 0.38, 0.30), (0.85, 0.83, 0.78),
               (0.35, 0.35, 0.38), (0.80, 0.62, 0.40), (0.55, 0.60, 0.66)],
    WALL: [(0.62, 0.60, 0.56), (0.50, 0.48, 0.45), (0.66, 0.45, 0.36), (0.75, 0.73, 0.68)],
    FENCE: [(0.40, 0.40, 0.38), (0.30, 0.38, 0.30), (0.45, 0.36, 0.26), (0.70, 0.70, 0.68)],
    POLE: [(0.45, 0.45, 0.45), (0.30, 0.32, 0.30), (0.60, 0.60, 0.58), (0.22, 0.24, 0.22)],
    LIGHT: [(0.12, 0.12, 0.12), (0.65, 0.55, 0.15), (0.25, 0.28, 0.25)],
    VEGETATION: [(0.22, 0.36, 0.14), (0.30, 0.42, 0.18), (0.18, 0.30, 0.16), (0.42, 0.45, 0.20)],
    TERRAIN: [(0.45, 0.50, 0.25), (0.52, 0.46, 0.32), (0.40, 0.46, 0.28), (0.55, 0.55, 0.40)],
    SKY: [(0.35, 0.55, 0.85), (0.60, 0.72, 0.88), (0.72, 0.74, 0.76), (0.75, 0.62, 0.52)],
    "clothes": [(0.10, 0.10, 0.10), (0.20, 0.25, 0.40), (0.60, 0.12, 0.10), (0.80, 0.80, 0.80),
                (0.50, 0.40, 0.30), (0.20, 0.40, 0.22), (0.70, 0.60, 0.20), (0.35, 0.35, 0.38)],
    "skin": [(0.85, 0.65, 0.52), (0.60, 0.42, 0.30), (0.35, 0.24, 0.18)],
    "paint": [(0.90, 0.90, 0.90), (0.10, 0.10, 0.12), (0.50, 0.50, 0.52), (0.70, 0.70, 0.72),
              (0.60, 0.10, 0.10), (0.15, 0.20, 0.45), (0.15, 0.30, 0.20), (0.75, 0.60, 0.30)],
    "livery": [(0.85, 0.75, 0.15), (0.75, 0.15, 0.12), (0.88, 0.88, 0.86), (0.20, 0.35, 0.65),
               (0.25, 0.50, 0.30)],
    "glass": [(0.12, 0.15, 0.20), (0.25, 0.30, 0.38), (0.45, 0.55, 0.65), (0.08, 0.08, 0.10)],
    "dark": [(0.05, 0.05, 0.05), (0.12, 0.12, 0.13)],
}
# Texture strength per class (index: canvas code): multiplies a smooth noise field ...
_TEXTURE = np.full(256, 0.08, np.float32)
_TEXTURE[[VEGETATION, TERRAIN]] = (0.35, 0.22)
_TEXTURE[SKY] = 0.12
# ... and a per-pixel grain (asphalt, paving, gravel).
_GRAIN = np.full(256, 0.03, np.float32)
_GRAIN[[ROAD, SIDEWALK, TERRAIN, VEGETATION]] = (0.07, 0.06, 0.10, 0.10)


def _colour(rng, family, jitter=0.04):
    """One instance of a colour family: a base colour, brightness and hue varied."""
    base = np.asarray(PALETTE[family][rng.integers(len(PALETTE[family]))])
    return np.clip(base * rng.uniform(0.85, 1.15) + rng.normal(0, jitter, 3), 0, 1)


# --- camera and canvas -----------------------------------------------------------------


@dataclass(frozen=True)
class Camera:
    """Pinhole camera at height `height` looking along +z; x to the right, y up from the ground."""
    focal: float    # pixels
    cx: float       # column of the vanishing point
    horizon: float  # row of the horizon (continuous coordinates: pixel i covers [i, i + 1))
    height: float   # metres

    def col(self, x, z):
        return self.cx + self.focal * x / z

    def row(self, y, z):
        return self.horizon + self.focal * (self.height - y) / z


def _camera(rng, height, width):
    # Pitch moves the horizon; a small yaw moves the vanishing point sideways.
    return Camera(focal=FOCAL_PER_WIDTH * width, cx=width * rng.uniform(0.44, 0.56),
                  horizon=height * rng.uniform(0.34, 0.5), height=CAMERA_HEIGHT * rng.uniform(0.95, 1.05))


_SHIFT = 4  # cv2 fixed-point bits: sub-pixel placement of small, far objects


def _fixed(points):
    """Continuous pixel coordinates (array) -> cv2 fixed point (cv2 puts pixel centres at integers)."""
    return np.round((points - 0.5) * (1 << _SHIFT)).astype(np.int32)


def _fixed_point(x, y):
    """One point as a cv2 fixed-point tuple."""
    return int(round((x - 0.5) * (1 << _SHIFT))), int(round((y - 0.5) * (1 << _SHIFT)))


class Canvas:
    """Label (uint8 codes, VOID_CODE = void), inverse depth, colour and instance ids, painted far to near.

    `instance` follows the label: every label write also writes the instance id there, the
    id of the object being drawn (`object_id`, set by Thing.draw) on thing classes (a rider
    part: object_id + 1) and 0 elsewhere, so an occluded part of an object loses its id.
    """

    def __init__(self, height, width):
        self.label = np.full((height, width), SKY, np.uint8)
        self.inv = np.zeros((height, width), np.float32)
        self.rgb = np.zeros((height, width, 3), np.float32)
        self.instance = np.zeros((height, width), np.int32)
        self.object_id = 0  # 0: not drawing an object with instances
        self._mask = np.zeros((height, width), np.uint8)

    def _instance_id(self, cls):
        if not self.object_id or cls not in THING_CODES:
            return 0
        return self.object_id + (cls == RIDER)

    def _paint(self, draw, cls, colour, inv):
        """Apply one cv2 drawing call to the image and, unless cls is None (texture), to label, depth and instance."""
        draw(self.rgb, tuple(float(c) for c in colour))
        if cls is not None:
            draw(self.label, int(cls))
            draw(self.inv, 0.0 if cls == VOID_CODE else float(inv))
            draw(self.instance, int(self._instance_id(cls)))

    def instance_ids(self):
        """(H, W) int32: the instance id of every pixel whose label is a thing class, 0 elsewhere."""
        return np.where(np.isin(self.label, THING_CODES), self.instance, 0)

    def polygons(self, polys, cls, colour, inv):
        """Polygons given as one array (n, k, 2) of pixel coordinates."""
        fixed = list(_fixed(polys))
        self._paint(lambda img, v: cv2.fillPoly(img, fixed, v, cv2.LINE_8, _SHIFT), cls, colour, inv)

    def circle(self, centre, radius, thickness, cls, colour, inv):
        """A disc, or a ring `thickness` pixels wide."""
        c, r = _fixed_point(*centre), int(round(radius * (1 << _SHIFT)))
        t = -1 if thickness is None else max(1, int(round(thickness)))
        self._paint(lambda img, v: cv2.circle(img, c, r, v, t, cv2.LINE_8, _SHIFT), cls, colour, inv)

    def line(self, p0, p1, width, cls, colour, inv):
        a, b = _fixed_point(*p0), _fixed_point(*p1)
        t = max(1, int(round(width)))
        self._paint(lambda img, v: cv2.line(img, a, b, v, t, cv2.LINE_8, _SHIFT), cls, colour, inv)

    def plane(self, poly, cls, colour, inv):
        """A polygon whose inverse depth varies per pixel: `inv` broadcasts to (H, W)."""
        self._mask[:] = 0
        cv2.fillPoly(self._mask, [_fixed(np.asarray(poly))], 1, cv2.LINE_8, _SHIFT)
        inside = self._mask.view(bool)
        self.label[inside] = cls
        self.rgb[inside] = colour
        self.inv[inside] = np.broadcast_to(inv, self.inv.shape)[inside]
        self.instance[inside] = 0


# --- scene elements --------------------------------------------------------------------


@dataclass
class Thing:
    """An upright element facing the camera at ground position (x, z), at constant inverse depth.

    Parts are in metres on the plane at depth z: dx across from x, y up from the ground,
    drawn in order. cls None marks a texture part (windows, lamps) that changes the image
    but not label or depth.
    """
    x: float
    z: float
    parts: list = field(default_factory=list)

    def poly(self, points, cls, colour):
        self.parts.append(("polys", np.asarray(points, float)[None], cls, colour))

    def box(self, x0, x1, y0, y1, cls, colour):
        self.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], cls, colour)

    def boxes(self, rects, cls, colour):
        """Many boxes (x0, x1, y0, y1) in one drawing call: windows, bars."""
        r = np.asarray(rects, float).reshape(-1, 4)
        corners = np.stack([r[:, [0, 2]], r[:, [1, 2]], r[:, [1, 3]], r[:, [0, 3]]], 1)
        self.parts.append(("polys", corners, cls, colour))

    def disc(self, dx, y, radius, cls, colour, ring=None):
        self.parts.append(("circle", (dx, y, radius, ring), cls, colour))

    def line(self, p0, p1, width, cls, colour):
        self.parts.append(("line", (p0, p1, width), cls, colour))

    def draw(self, canvas, cam, object_id=0):
        """Paint the parts; object_id (>= 1000, even) marks its thing-class pixels in canvas.instance."""
        canvas.object_id = object_id
        scale, inv = cam.focal / self.z, DEPTH_SCALE / self.z
        u0, v0 = cam.col(self.x, self.z), cam.row(0.0, self.z)  # the foot's centre

        def px(dx, y):  # metres on the plane -> pixels (scalars or arrays)
            return u0 + dx * scale, v0 - y * scale

        for kind, geometry, cls, colour in self.parts:
            if kind == "polys":
                canvas.polygons(np.stack(px(geometry[..., 0], geometry[..., 1]), -1), cls, colour, inv)
            elif kind == "circle":
                dx, y, radius, ring = geometry
                canvas.circle(px(dx, y), radius * scale, None if ring is None else ring * scale, cls, colour, inv)
            else:
                p0, p1, width = geometry
                canvas.line(px(*p0), px(*p1), width * scale, cls, colour, inv)
        canvas.object_id = 0


@dataclass
class SidePlane:
    """A vertical plane along the street at lateral position x: facade, wall, fence or hedge.

    Its top edge passes through heights `tops` at depths `zs` (increasing). Inverse depth is
    constant down each column (that of the plane's footprint in the column) and changes
    across columns. `marks` are texture quads (z0, z1, y0, y1) in `mark_colour`.
    """
    x: float
    zs: np.ndarray
    tops: np.ndarray
    cls: int
    colour: np.ndarray
    marks: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    mark_colour: np.ndarray = None

    def draw(self, canvas, cam):
        zs = np.concatenate([self.zs, self.zs[::-1]])
        ys = np.concatenate([np.zeros(len(self.zs)), self.tops[::-1]])
        outline = np.stack([cam.col(self.x, zs), cam.row(ys, zs)], -1)
        # Column u sees the plane at z = focal * x / (u - cx); clip to the plane's own z range.
        u = np.arange(canvas.inv.shape[1]) + 0.5 - cam.cx
        with np.errstate(divide="ignore"):
            inv = np.clip(DEPTH_SCALE * u / (cam.focal * self.x), DEPTH_SCALE / self.zs[-1], DEPTH_SCALE / self.zs[0])
        canvas.plane(outline, self.cls, self.colour, inv[None, :].astype(np.float32))
        if len(self.marks):
            z0, z1, y0, y1 = self.marks.T
            corners = [(z0, y0), (z1, y0), (z1, y1), (z0, y1)]
            quads = np.stack([np.stack([cam.col(self.x, z), cam.row(y, z)], -1) for z, y in corners], 1)
            canvas.polygons(quads, None, self.mark_colour, 0.0)


def _grid(rng, u0, u1, y0, y1, spacing, floor, fill=(0.4, 0.7)):
    """Window rectangles (u0, u1, y0, y1) on a wall spanning [u0, u1] along it and [y0, y1] up."""
    fu, fy = rng.uniform(*fill), rng.uniform(0.4, 0.65)
    cols = np.arange(u0 + spacing * 0.5, u1 - spacing * 0.4, spacing)
    rows = np.arange(y0 + floor * 0.3, y1 - floor * 0.6, floor)
    if len(cols) == 0 or len(rows) == 0:
        return np.zeros((0, 4))
    c, r = np.meshgrid(cols, rows)
    c, r = c.ravel(), r.ravel()
    half = spacing * fu / 2
    return np.stack([c - half, c + half, r, r + floor * fy], 1)


def _building_front(rng, thing, x0, x1):
    """Buildings side by side between x0 and x1 (metres on the thing's plane), with windows."""
    lo, hi = min(x0, x1), max(x0, x1)
    while lo < hi:
        width = min(rng.uniform(8, 25), hi - lo)
        if rng.random() < 0.15:  # a gap: trees or open sky
            if rng.random() < 0.6:
                _foliage(rng, thing, lo, lo + width, rng.uniform(4, 12))
        else:
            top = rng.uniform(6, 30)
            thing.box(lo, lo + width, 0, top, BUILDING, _colour(rng, BUILDING))
            windows = _grid(rng, lo, lo + width, rng.uniform(0.5, 3), top, rng.uniform(1.8, 3.5), rng.uniform(2.8, 3.6))
            thing.boxes(windows, None, _colour(rng, "glass"))
        lo += width


def _foliage(rng, thing, x0, x1, height):
    """A tree line: overlapping crowns between x0 and x1."""
    colour = _colour(rng, VEGETATION)
    for x in np.arange(x0, x1, 2.5):
        r = rng.uniform(1.5, 3.5)
        thing.box(x - 0.15, x + 0.15, 0, height - r, VEGETATION, colour * 0.5)
        thing.disc(x, height - r * 0.6, r, VEGETATION, colour * rng.uniform(0.8, 1.2))


# --- the street layout -----------------------------------------------------------------


@dataclass
class Lot:
    z0: float
    z1: float
    kind: str  # "building", "park" or "cross" (a cross street)


@dataclass
class Side:
    sign: int          # -1 left of the camera, +1 right
    road_edge: float   # x of the road's edge (kerb)
    verge: float       # width of the terrain strip between road and sidewalk (0: none)
    sidewalk: float
    lots: list
    planes: list = field(default_factory=list)

    @property
    def facade(self):
        return self.road_edge + self.sign * (self.verge + self.sidewalk)

    def lot_at(self, z):
        """Index of the lot at each depth z (array)."""
        edges = np.array([lot.z1 for lot in self.lots])
        return np.minimum(np.searchsorted(edges, z), len(self.lots) - 1)


@dataclass
class Street:
    lanes: list        # (x of the lane centre, oncoming traffic?)
    lane_lines: list   # x of the dashed lines between lanes
    sides: tuple       # (left Side, right Side)
    z_end: float       # the buildings closing the street
    colours: dict      # ground colours by class; "marking"
    shadow: tuple      # (x, sign, factor): ground with sign * (x' - x) > 0 is in shadow; factor 1: none
    backdrop: list     # Things behind everything else: the street's end, the cross streets' far facades


def _street(rng):
    lane_width = rng.uniform(2.8, 3.6)
    n_lanes = int(rng.choice([1, 2, 2, 3, 4]))
    own = int(rng.integers(n_lanes))
    parking = [2.2 * (rng.random() < 0.55) for _ in range(2)]
    offset = rng.uniform(-0.4, 0.4)  # the camera within its lane
    left = -(own + 0.5) * lane_width - parking[0] - offset
    lanes_x = left + parking[0] + (np.arange(n_lanes) + 0.5) * lane_width
    two_way = n_lanes > 1 and rng.random() < 0.6
    centre = left + parking[0] + lane_width * (n_lanes // 2)
    lanes = [(float(x), bool(two_way and x < centre)) for x in lanes_x]
    lane_lines = list(left + parking[0] + np.arange(1, n_lanes) * lane_width)
    right = left + parking[0] + n_lanes * lane_width + parking[1]
    z_end = float(np.exp(rng.uniform(np.log(35), np.log(220))))
    sunny = rng.random() < 0.5
    shade_side = int(rng.choice([-1, 1]))
    factor = rng.uniform(0.5, 0.75) if sunny else 1.0
    sides = []
    for sign, edge in ((-1, left), (1, right)):
        verge = rng.uniform(0.8, 2.5) if rng.random() < 0.3 else 0.0
        side = Side(sign, edge, verge, rng.uniform(1.8, 5.0), _lots(rng, z_end))
        side.planes = _side_planes(rng, side, factor if sign == shade_side else 1.0)
        sides.append(side)
    colours = {ROAD: _colour(rng, ROAD, 0.02), SIDEWALK: _colour(rng, SIDEWALK, 0.03),
               TERRAIN: _colour(rng, TERRAIN), "marking": np.array([0.85, 0.85, 0.8]) * rng.uniform(0.7, 1.0)}
    shaded = sides[0] if shade_side < 0 else sides[1]
    shadow = (shaded.road_edge - shade_side * rng.uniform(0, 6), shade_side, factor)
    street = Street(lanes, lane_lines, tuple(sides), z_end, colours, shadow, [])
    street.backdrop = _backdrop(rng, street)
    return street


def _lots(rng, z_end):
    """The street frontage of one side, near to far: buildings, parks and cross streets."""
    lots, z = [], NEAREST
    while z < z_end:
        kind = rng.choice(["building", "park", "cross"], p=[0.66, 0.2, 0.14])
        if kind == "cross" and (z < 8 or (lots and lots[-1].kind == "cross")):
            kind = "building"
        length = rng.uniform(12, 22) if kind == "cross" else rng.uniform(8, 30)
        lots.append(Lot(z, min(z + length, z_end), str(kind)))
        z += length
    return lots


def _side_planes(rng, side, shade):
    """Facades, parks, walls and fences of one side, sorted far to near (larger |x| first)."""
    planes = []
    for lot in side.lots:
        if lot.kind == "building":
            planes.append(_facade(rng, side.facade, lot.z0, lot.z1, shade))
            if rng.random() < 0.15:
                planes.append(_barrier(rng, side.facade - side.sign * 0.3, lot))
        elif lot.kind == "park":
            if rng.random() < 0.7:
                planes.append(_facade(rng, side.facade + side.sign * rng.uniform(10, 30), lot.z0, lot.z1, shade))
            planes.append(_hedge(rng, side.facade + side.sign * rng.uniform(0.5, 3), lot.z0, lot.z1))
            if rng.random() < 0.6:
                planes.append(_barrier(rng, side.facade, lot))
    return sorted(planes, key=lambda p: -abs(p.x))


def _facade(rng, x, z0, z1, shade):
    height = rng.uniform(5, 20)
    colour = _colour(rng, BUILDING) * shade
    windows = np.zeros((0, 4))
    if rng.random() < 0.85:
        windows = _grid(rng, z0, z1, rng.uniform(0.5, 4), height, rng.uniform(1.8, 3.5), rng.uniform(2.8, 3.6))
    return SidePlane(x, np.array([z0, z1]), np.array([height, height]), BUILDING, colour,
                     windows, _colour(rng, "glass"))


def _barrier(rng, x, lot):
    """A wall, or a fence with bars, along part of a lot."""
    z0 = rng.uniform(lot.z0, (lot.z0 + lot.z1) / 2)
    z1 = rng.uniform((z0 + lot.z1) / 2, lot.z1)
    height = rng.uniform(0.8, 2.5)
    if rng.random() < 0.5:
        return SidePlane(x, np.array([z0, z1]), np.array([height, height]), WALL, _colour(rng, WALL))
    gap = rng.uniform(0.12, 0.3)
    starts = np.arange(z0, z1 - gap, gap * 2)
    bars = np.stack([starts, starts + gap, np.full_like(starts, 0.1), np.full_like(starts, height - 0.1)], 1)
    colour = _colour(rng, FENCE)
    return SidePlane(x, np.array([z0, z1]), np.array([height, height]), FENCE, colour, bars, colour * 0.55)


def _hedge(rng, x, z0, z1):
    """A park's tree line: a vegetation plane with a ragged top."""
    zs = np.linspace(z0, z1, max(2, int((z1 - z0) / 1.5)))
    tops = np.clip(rng.uniform(4, 12) + np.cumsum(rng.normal(0, 0.6, len(zs))), 1.5, 14)
    return SidePlane(x, zs, tops, VEGETATION, _colour(rng, VEGETATION))


def _backdrop(rng, street):
    """Frontal facades: the row of buildings closing the street and each cross street's far side."""
    far = Thing(0.0, street.z_end)
    half = 0.7 * street.z_end + 20  # wider than the field of view at z_end
    _building_front(rng, far, -half, half)
    things = [far]
    for side in street.sides:
        for lot in side.lots:
            if lot.kind == "cross":
                thing = Thing(0.0, lot.z1)
                _building_front(rng, thing, side.facade, side.facade + side.sign * 60)
                things.append(thing)
    return sorted(things, key=lambda t: -t.z)


# --- ground and sky --------------------------------------------------------------------


def _sky(canvas, cam, rng):
    """Sky gradient from zenith to a paler horizon; returns the horizon (haze) colour."""
    zenith = _colour(rng, SKY, 0.03)
    haze = zenith + (1 - zenith) * rng.uniform(0.3, 0.7)
    t = np.clip((np.arange(canvas.rgb.shape[0]) + 0.5) / max(cam.horizon, 1), 0, 1)[:, None, None]
    canvas.rgb[:] = zenith * (1 - t) + haze * t
    return haze


def _ground(canvas, cam, street):
    """Road, verges, sidewalks and park terrain, ray-cast row by row below the horizon."""
    distance = np.arange(canvas.label.shape[0]) + 0.5 - cam.horizon
    rows = np.nonzero(distance > 0)[0]
    if len(rows) == 0:
        return
    d = distance[rows][:, None]
    z = cam.focal * cam.height / d                                              # (n, 1)
    x = (np.arange(canvas.label.shape[1]) + 0.5 - cam.cx) * cam.height / d      # (n, W)
    cls = np.full(x.shape, ROAD, np.uint8)
    for side in street.sides:
        beyond = side.sign * (x - side.road_edge)  # metres past the kerb
        lots = side.lot_at(z)
        kinds = np.array([lot.kind for lot in side.lots])[lots]
        cls[beyond > 0] = TERRAIN
        cls[beyond > side.verge] = SIDEWALK
        cls[(beyond > side.verge + side.sidewalk) & (kinds == "park")] = TERRAIN
        # A cross street cuts through verge and sidewalk, leaving a sidewalk on its far side.
        z0 = np.array([lot.z0 for lot in side.lots])[lots]
        z1 = np.array([lot.z1 for lot in side.lots])[lots]
        crossing = (kinds == "cross") & (z > z0) & (z < z1 - side.sidewalk)
        cls[(beyond > 0) & crossing] = ROAD
    rgb = np.zeros(x.shape + (3,), np.float32)
    for c in (ROAD, SIDEWALK, TERRAIN):
        rgb[cls == c] = street.colours[c]
    rgb[_markings(x, z, cls, street)] = street.colours["marking"]
    line, sign, factor = street.shadow
    rgb[sign * (x - line) > 0] *= factor
    canvas.label[rows] = cls
    canvas.inv[rows] = DEPTH_SCALE / z  # = DEPTH_SCALE * d / (focal * height): linear in the row
    canvas.rgb[rows] = rgb
    canvas.instance[rows] = 0


def _markings(x, z, cls, street):
    """Dashed lane lines, solid edge lines and zebra crossings before cross streets (image only)."""
    road = cls == ROAD
    left, right = (side.road_edge for side in street.sides)
    main = road & (x > left) & (x < right)
    marks = np.zeros(x.shape, bool)
    for line in street.lane_lines:
        marks |= (np.abs(x - line) < 0.08) & ((z % 9) < 3)
    for side in street.sides:
        marks |= np.abs(x - (side.road_edge - side.sign * 0.3)) < 0.08
        for lot in side.lots:
            if lot.kind == "cross":
                marks |= (z > lot.z0 - 4) & (z < lot.z0 - 1) & ((x % 1.0) < 0.5)
    return marks & main


# --- upright objects -------------------------------------------------------------------


def _car(rng, x, z, oncoming):
    w, h = rng.uniform(1.65, 1.95), rng.uniform(1.35, 1.75)
    paint, dark = _colour(rng, "paint"), _colour(rng, "dark")
    t = Thing(x, z)
    for s in (-1, 1):  # wheels
        t.box(s * (w / 2 - 0.38), s * (w / 2 - 0.08), 0, 0.4, CAR, dark)
    t.box(-w / 2, w / 2, 0.2, 0.6 * h, CAR, paint)
    t.poly([(-0.47 * w, 0.6 * h), (0.47 * w, 0.6 * h), (0.36 * w, h), (-0.36 * w, h)], CAR, paint * 0.95)
    t.poly([(-0.42 * w, 0.63 * h), (0.42 * w, 0.63 * h), (0.33 * w, 0.95 * h), (-0.33 * w, 0.95 * h)],
           None, _colour(rng, "glass"))
    lamp = (0.95, 0.95, 0.85) if oncoming else (0.8, 0.1, 0.08)
    for s in (-1, 1):
        t.box(s * (w / 2 - 0.3), s * (w / 2 - 0.05), 0.45 * h, 0.55 * h, None, lamp)
    t.box(-0.25, 0.25, 0.28, 0.4, None, (0.9, 0.9, 0.88))  # number plate
    return t


def _truck(rng, x, z, oncoming):
    w, h = rng.uniform(2.3, 2.55), rng.uniform(2.8, 3.9)
    t = Thing(x, z)
    dark = _colour(rng, "dark")
    for s in (-1, 1):
        t.box(s * (w / 2 - 0.55), s * (w / 2 - 0.1), 0, 0.55, TRUCK, dark)
    t.box(-w / 2 + 0.2, w / 2 - 0.2, 0.4, 0.8, TRUCK, dark)
    t.box(-w / 2, w / 2, 0.8, h, TRUCK, _colour(rng, "livery" if rng.random() < 0.5 else "paint"))
    if oncoming:  # the cab's windscreen
        t.box(-w / 2 + 0.15, w / 2 - 0.15, 0.6 * h, 0.85 * h, None, _colour(rng, "glass"))
    else:  # the cargo doors
        t.line((0, 0.85), (0, h - 0.05), 0.04, None, dark)
    for s in (-1, 1):
        t.box(s * (w / 2 - 0.3), s * (w / 2 - 0.05), 0.85, 1.0, None, (0.8, 0.15, 0.1))
    return t


def _bus(rng, x, z, oncoming):
    w, h = 2.55, rng.uniform(3.0, 3.4)
    t = Thing(x, z)
    dark = _colour(rng, "dark")
    for s in (-1, 1):
        t.box(s * (w / 2 - 0.5), s * (w / 2 - 0.1), 0, 0.55, BUS, dark)
    t.box(-w / 2, w / 2, 0.3, h, BUS, _colour(rng, "livery"))
    t.box(-w / 2 + 0.15, w / 2 - 0.15, (0.35 if oncoming else 0.55) * h, 0.9 * h, None, _colour(rng, "glass"))
    t.box(-0.6, 0.6, 0.92 * h, 0.98 * h, None, (0.9, 0.6, 0.1))  # route display
    return t


def _tram(rng, x, z):
    w, h = 2.65, rng.uniform(3.3, 3.6)
    t = Thing(x, z)
    t.box(-w / 2, w / 2, 0.35, h, TRAIN, _colour(rng, "livery"))
    t.box(-w / 2 + 0.2, w / 2 - 0.2, 0.45 * h, 0.85 * h, None, _colour(rng, "glass"))
    t.box(-w / 2, w / 2, 0.2 * h, 0.28 * h, None, _colour(rng, "livery"))
    t.line((-0.5, h), (0.3, h + 1.0), 0.06, TRAIN, _colour(rng, "dark"))  # pantograph
    t.line((0.3, h + 1.0), (-0.6, h + 1.0), 0.06, TRAIN, _colour(rng, "dark"))
    return t


def _figure(rng, t, dx, y, height, cls, legs=True):
    """A human figure (legs, torso, arms, head) standing at y or, legs=False, seated at hip height y."""
    top, bottom, skin = _colour(rng, "clothes"), _colour(rng, "clothes"), _colour(rng, "skin")
    w, hip, shoulder = 0.27 * height, y + 0.47 * height, y + 0.8 * height
    if legs:
        stride = rng.uniform(0, 0.12) * height
        for s in (-1, 1):
            t.poly([(dx + s * 0.02, hip), (dx + s * 0.4 * w, hip), (dx + s * (stride + 0.3 * w), y),
                    (dx + s * stride, y)], cls, bottom)
    t.poly([(dx - 0.48 * w, shoulder), (dx + 0.48 * w, shoulder), (dx + 0.4 * w, hip - 0.05),
            (dx - 0.4 * w, hip - 0.05)], cls, top)
    for s in (-1, 1):
        t.line((dx + s * 0.5 * w, shoulder - 0.05), (dx + s * 0.6 * w, hip + 0.05), 0.09, cls, top * 0.9)
    head = 0.065 * height
    t.disc(dx, shoulder + head * 1.3, head, cls, skin)
    hair = _colour(rng, "dark") if legs else _colour(rng, "paint")  # a rider wears a helmet
    t.disc(dx, shoulder + head * 1.7, head * 0.85, None, hair)


def _person(rng, x, z):
    t = Thing(x, z)
    _figure(rng, t, 0.0, 0.0, rng.uniform(1.5, 1.95), PERSON)
    return t


def _cyclist(rng, x, z, motor):
    """A bicycle or motorcycle with its rider, seen from behind."""
    cls = MOTORCYCLE if motor else BICYCLE
    t = Thing(x, z)
    dark = _colour(rng, "dark")
    t.box(-(0.09 if motor else 0.03), 0.09 if motor else 0.03, 0, 0.66, cls, dark)  # rear wheel
    if motor:
        t.box(-0.3, 0.3, 0.45, 0.95, cls, _colour(rng, "paint"))
        t.box(-0.1, 0.1, 0.75, 0.85, None, (0.8, 0.1, 0.08))
    else:
        t.line((0, 0.66), (0, 0.95), 0.05, cls, _colour(rng, "paint"))
    t.line((-0.35, 1.05 if motor else 1.0), (0.35, 1.05 if motor else 1.0), 0.05, cls, dark)  # handlebar
    height = rng.uniform(1.55, 1.9)
    _figure(rng, t, 0.0, 0.95 - 0.47 * height, height, RIDER, legs=False)
    for s in (-1, 1):  # legs down to the pedals / footrests
        t.line((s * 0.1, 0.95), (s * 0.16, 0.3), 0.13, RIDER, _colour(rng, "clothes"))
    return t


def _parked_two_wheeler(rng, x, z, motor):
    """A parked bicycle or motorcycle seen from the side."""
    cls = MOTORCYCLE if motor else BICYCLE
    t = Thing(x, z)
    dark, frame = _colour(rng, "dark"), _colour(rng, "paint")
    r = 0.32 if motor else 0.34
    for s in (-1, 1):
        t.disc(s * 0.55, r, r, cls, dark, ring=None if motor else 0.05)
    if motor:
        t.poly([(-0.55, r), (0.45, r + 0.1), (0.55, 0.95), (-0.3, 0.85)], cls, frame)
        t.box(-0.45, 0.05, 0.85, 0.95, cls, dark)  # seat
    else:
        for p0, p1 in (((-0.55, r), (0, r)), ((0, r), (-0.1, 0.9)), ((-0.55, r), (-0.1, 0.9)),
                       ((-0.1, 0.9), (0.45, 0.9)), ((0, r), (0.45, 0.9)), ((0.45, 0.9), (0.55, r))):
            t.line(p0, p1, 0.04, cls, frame)
    return t


def _pole(t, height, colour, width=0.16):
    t.box(-width / 2, width / 2, 0, height, POLE, colour)


def _lamp_post(rng, x, z, toward_road):
    t = Thing(x, z)
    height, colour = rng.uniform(5, 9), _colour(rng, POLE)
    _pole(t, height, colour, rng.uniform(0.12, 0.2))
    reach = toward_road * rng.uniform(1, 3)
    t.line((0, height), (reach, height + 0.3), 0.08, POLE, colour)
    t.box(reach - 0.3, reach + 0.3, height + 0.1, height + 0.35, POLE, colour)
    if rng.random() < 0.15:  # a traffic light hung from the arm
        _light_box(rng, t, reach * 0.6, height - 1.1)
    return t


def _light_box(rng, t, dx, y):
    """A traffic light housing at (dx, y) with three lamps, one lit."""
    housing = _colour(rng, LIGHT)
    t.box(dx - 0.17, dx + 0.17, y, y + 0.9, LIGHT, housing)
    lit = rng.integers(3)
    for i, colour in enumerate(((0.1, 0.8, 0.3), (0.95, 0.7, 0.1), (0.95, 0.15, 0.1))):
        t.disc(dx, y + 0.15 + 0.3 * i, 0.1, None, colour if i == lit else housing * 1.5)


def _traffic_light(rng, x, z):
    t = Thing(x, z)
    y = rng.uniform(2.3, 3.5)
    _pole(t, y + 0.2, _colour(rng, POLE), 0.14)
    _light_box(rng, t, 0.0, y)
    if rng.random() < 0.3:
        _light_box(rng, t, 0.0, y - 1.0)
    return t


def _sign_post(rng, x, z):
    t = Thing(x, z)
    y = rng.uniform(2.0, 3.2)
    _pole(t, y, _colour(rng, POLE), 0.08)
    r = rng.uniform(0.35, 0.55)
    if rng.random() < 0.25:  # seen from the back: grey
        t.disc(0, y + r, r, SIGN, np.array([0.55, 0.55, 0.56]) * rng.uniform(0.8, 1.1))
        return t
    shape = rng.integers(4)
    if shape == 0:  # prohibition: red ring, white centre
        t.disc(0, y + r, r, SIGN, (0.8, 0.1, 0.1))
        t.disc(0, y + r, r * 0.7, None, (0.92, 0.92, 0.9))
    elif shape == 1:  # mandatory: blue disc, white arrow
        t.disc(0, y + r, r, SIGN, (0.1, 0.25, 0.7))
        t.line((0, y + 0.5 * r), (0, y + 1.5 * r), 0.08, None, (0.92, 0.92, 0.9))
    elif shape == 2:  # warning: red-bordered triangle
        t.poly([(-r, y), (r, y), (0, y + 1.8 * r)], SIGN, (0.8, 0.1, 0.1))
        t.poly([(-0.7 * r, y + 0.15 * r), (0.7 * r, y + 0.15 * r), (0, y + 1.4 * r)], None, (0.92, 0.92, 0.9))
    else:  # information: blue or yellow panel
        t.box(-r, r, y, y + 1.4 * r, SIGN, (0.1, 0.25, 0.7) if rng.random() < 0.5 else (0.9, 0.75, 0.1))
        t.box(-0.7 * r, 0.7 * r, y + 0.5 * r, y + 0.8 * r, None, (0.92, 0.92, 0.9))
    return t


def _tree(rng, x, z, room):
    """A trunk and a crown of overlapping discs no wider than `room` each side."""
    t = Thing(x, z)
    trunk = rng.uniform(2.0, 3.5)
    radius = min(rng.uniform(1.5, 3.5), room)
    green = _colour(rng, VEGETATION)
    t.box(-0.15, 0.15, 0, trunk + radius, VEGETATION, _colour(rng, "dark") + 0.2)
    for _ in range(5):
        r = radius * rng.uniform(0.45, 0.65)
        dx = rng.uniform(-1, 1) * (radius - r)
        t.disc(dx, trunk + radius + rng.uniform(-0.5, 0.6) * radius, r, VEGETATION, green * rng.uniform(0.75, 1.2))
    return t


def _clutter(rng, x, z):
    """A bin, box or bollard: Cityscapes' void classes ('static'); label void, depth invalid."""
    t = Thing(x, z)
    w, h = rng.uniform(0.3, 1.2), rng.uniform(0.4, 1.3)
    t.box(-w / 2, w / 2, 0, h, VOID_CODE, _colour(rng, "paint"))
    return t


# --- placing objects -------------------------------------------------------------------


def _traffic(rng, street):
    """Vehicles and motorcyclists in the lanes, one car length apart at least; rarely a tram."""
    things = []
    far = min(street.z_end - 3, 100)
    for x, oncoming in street.lanes:
        last = -np.inf
        for z in np.sort(rng.uniform(8, far, rng.poisson(1.3))):
            kind = rng.choice(["car", "truck", "bus", "motorcycle"], p=[0.915, 0.015, 0.02, 0.05])
            if z - last < 7:
                continue
            last = z
            x_here = x + rng.uniform(-0.3, 0.3)
            if kind == "motorcycle":
                things.append(_cyclist(rng, x_here, z, motor=True))
            else:
                things.append({"car": _car, "truck": _truck, "bus": _bus}[kind](rng, x_here, z, oncoming))
    if rng.random() < 0.04:
        x = min((x for x, _ in street.lanes), key=lambda v: abs(v - np.mean([v for v, _ in street.lanes])))
        things.append(_tram(rng, x, rng.uniform(8, max(far, 9))))
    return things


def _kerbside(rng, street):
    """Parked cars along the road edges and cyclists riding along them."""
    things = []
    far = min(street.z_end - 3, 70)
    for side in street.sides:
        if rng.random() < 0.55:
            z = rng.uniform(5, 10)
            while z < far:
                if rng.random() < 0.6:
                    kind = _truck if rng.random() < 0.01 else _car
                    things.append(kind(rng, side.road_edge - side.sign * 1.1, z, rng.random() < 0.5))
                z += rng.uniform(4.8, 7.5)
        if rng.random() < 0.2:
            things.append(_cyclist(rng, side.road_edge - side.sign * 0.8, rng.uniform(5, 50), motor=False))
    return things


def _sidewalk_x(rng, side, margin=0.3):
    """A lateral position on the sidewalk of one side."""
    inner = side.road_edge + side.sign * (side.verge + margin)
    return inner + side.sign * rng.uniform(0, max(side.sidewalk - 2 * margin, 0.01))


def _parked_two_wheelers(rng, side, far):
    """Bicycles and motorcycles parked on a sidewalk, alone or in a rack of several."""
    things = []
    for _ in range(rng.poisson(0.6)):
        x, z, motor = _sidewalk_x(rng, side), rng.uniform(4, far), rng.random() < 0.25
        for i in range(rng.integers(3, 8) if rng.random() < 0.2 else 1):
            things.append(_parked_two_wheeler(rng, x, z + 0.7 * i, motor))
    return things


def _pedestrians(rng, street):
    """People on the sidewalks (sometimes a group) and crossing the road; parked two-wheelers."""
    things = []
    far = min(street.z_end - 2, 60)
    for side in street.sides:
        n = rng.poisson(2.5)
        if rng.random() < 0.15:
            n += rng.poisson(5)
        centre = rng.uniform(5, far)
        for _ in range(n):
            z = rng.uniform(4, far) if rng.random() < 0.6 else centre + rng.normal(0, 3)
            things.append(_person(rng, _sidewalk_x(rng, side), z))
        things += _parked_two_wheelers(rng, side, far)
    if rng.random() < 0.1:
        left, right = (side.road_edge for side in street.sides)
        z = rng.uniform(8, max(far, 9))
        for _ in range(rng.integers(1, 4)):
            things.append(_person(rng, rng.uniform(left, right), z + rng.uniform(-1, 1)))
    return things


def _furniture(rng, street):
    """Street lamps and poles along the kerb, sign posts, traffic lights at cross streets, clutter."""
    things = []
    far = street.z_end - 2
    for side in street.sides:
        kerb = side.road_edge + side.sign * (side.verge + 0.4)
        if rng.random() < 0.75:
            z = rng.uniform(3, 25)
            spacing = rng.uniform(12, 30)
            while z < far:
                if rng.random() < 0.75:
                    things.append(_lamp_post(rng, kerb, z, -side.sign))
                else:
                    t = Thing(kerb, z)
                    _pole(t, rng.uniform(3, 6), _colour(rng, POLE), rng.uniform(0.1, 0.2))
                    things.append(t)
                z += spacing
        for _ in range(rng.poisson(2.0)):
            things.append(_sign_post(rng, kerb, rng.uniform(4, max(far, 5))))
        for lot in side.lots:
            if lot.kind == "cross" and rng.random() < 0.8:
                things.append(_traffic_light(rng, kerb, lot.z0 - 1))
        if rng.random() < 0.25:
            things.append(_traffic_light(rng, kerb, rng.uniform(8, max(far, 9))))
        for _ in range(rng.poisson(0.5)):
            things.append(_clutter(rng, _sidewalk_x(rng, side), rng.uniform(4, max(far, 5))))
    return things


def _trees(rng, street):
    """Rows of trees on the verge or the sidewalk, on some sides."""
    things = []
    for side in street.sides:
        if rng.random() > 0.8 or side.verge + side.sidewalk < 2.2:
            continue
        x = side.road_edge + side.sign * (side.verge / 2 if side.verge else 0.8)
        room = abs(side.facade - x) - 0.2
        z = rng.uniform(3, 12)
        spacing = rng.uniform(6, 14)
        while z < street.z_end - 3:
            if rng.random() < 0.85:
                things.append(_tree(rng, x, z, room))
            z += spacing
    return things


def _things(rng, street):
    """Every upright object, far to near (the painter's order)."""
    things = (_traffic(rng, street) + _kerbside(rng, street) + _pedestrians(rng, street)
              + _furniture(rng, street) + _trees(rng, street))
    things = [t for t in things if 3.5 < t.z < street.z_end]
    return sorted(things, key=lambda t: -t.z)


def _ego_vehicle(canvas, rng):
    """The bonnet of the recording car: a band of void along the bottom, curved at the top."""
    h, w = canvas.label.shape
    band = h * rng.uniform(0.03, 0.09)
    bulge = rng.uniform(0, 0.6) * band
    u = np.linspace(0, w, 17)
    edge = np.stack([u, h - band - bulge * (1 - ((u - w / 2) / (w / 2)) ** 2)], 1)
    bonnet = np.concatenate([edge, [(w, h + 1), (0, h + 1)]])
    canvas.polygons(bonnet[None], VOID_CODE, _colour(rng, "paint") * 0.6, 0.0)
    highlight = np.concatenate([edge, edge[::-1] + (0, 0.15 * band)])  # the sky reflected along its edge
    canvas.polygons(highlight[None], None, (0.7, 0.7, 0.72), 0.0)


# --- appearance ------------------------------------------------------------------------

_LOG_EXPOSURE = tuple(portable_float.log(np.array([0.55, 1.4])))  # exposure gain drawn log-uniform in [0.55, 1.4]


def _smooth_noise(rng, shape, cells):
    """Unit-variance noise smooth over about shape / cells pixels (float64)."""
    grid = rng.standard_normal((cells[0] + 1, cells[1] + 1), dtype=np.float32)
    return portable_float.resize_cubic(grid, *shape)


def _uniform_noise(rng, shape):
    """Zero-mean, unit-variance pixel noise (uniform: a third of the cost of Gaussian noise).
    float32: the draws, and so every random number after them, are those of version 1."""
    return (rng.random(shape, dtype=np.float32) - np.float32(0.5)) * np.float32(12 ** 0.5)


def _appearance(canvas, haze, rng):
    """Texture, haze with distance, global illumination, blur and noise: the final image.

    Computed in float64 with data/portable_float.py only, so the same bytes on every CPU, and
    stored in 8-bit steps (k / 255) as a camera image, and the CityScapes release, are.
    """
    h, w = canvas.label.shape
    rgb = canvas.rgb.astype(np.float64)
    texture = _smooth_noise(rng, (h, w), (max(h // 4, 2), max(w // 4, 2)))
    grain = _uniform_noise(rng, (h, w))
    rgb *= (1 + _TEXTURE[canvas.label] * texture + _GRAIN[canvas.label] * grain)[..., None]
    # Haze: far surfaces fade toward the horizon colour (sky and void have inverse depth 0).
    visibility = rng.uniform(250, 1200)
    seen = canvas.inv > 0
    fade = np.zeros((h, w))
    fade[seen] = 1 - portable_float.exp(-DEPTH_SCALE / (canvas.inv[seen].astype(np.float64) * visibility))
    rgb += (haze - rgb) * fade[..., None]
    # Global illumination: exposure, white balance, contrast (gamma) and a soft light field.
    light = _smooth_noise(rng, (h, w), (2, 4)) * 0.08 + 1
    gain = portable_float.exp(rng.uniform(*_LOG_EXPOSURE)) * (1 + rng.normal(0, 0.06, 3))
    rgb *= light[..., None] * gain
    np.clip(rgb, 0, 1, out=rgb)
    rgb = portable_float.power(rgb, rng.uniform(0.8, 1.25))
    rgb = portable_float.gaussian_blur_3x3(rgb, rng.uniform(0.3, 0.8))
    rgb += _uniform_noise(rng, rgb.shape) * rng.uniform(0.005, 0.03)
    return _eight_bit(rgb)


def _eight_bit(rgb):
    """Clipped to [0, 1] in steps of 1 / 255, float32, as data/prepare_cityscapes.py stores a camera image."""
    levels = np.rint(np.clip(rgb, 0, 1) * 255).astype(np.uint8)
    return levels.astype(np.float32) / np.float32(255)


def _invalidate(canvas, rng):
    """Depth holes (as in stereo disparity) and rare void pixels."""
    h, w = canvas.inv.shape
    for _ in range(rng.poisson(1.5)):
        centre = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        axes = (max(1, int(w * rng.uniform(0.01, 0.06))), max(1, int(h * rng.uniform(0.01, 0.06))))
        cv2.ellipse(canvas.inv, centre, axes, rng.uniform(0, 180), 0, 360, 0.0, -1)
    specks = rng.random((h, w)) < 2e-4
    canvas.label[specks] = VOID_CODE
    canvas.inv[specks] = 0
    canvas.instance[specks] = 0


# --- samples ---------------------------------------------------------------------------


def render_sample(seed, split, index, height, width):
    """One sample: {"image" (H,W,3), "label_19" (H,W), "label_7" (H,W), "depth" (H,W,1),
    "instance" (H,W,3)}, float32."""
    if split not in SPLIT_IDS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    rng = np.random.default_rng([seed, SPLIT_IDS[split], index])
    cam = _camera(rng, height, width)
    street = _street(rng)
    canvas = Canvas(height, width)
    haze = _sky(canvas, cam, rng)
    _ground(canvas, cam, street)
    for thing in street.backdrop:
        thing.draw(canvas, cam)
    for side in street.sides:
        for plane in side.planes:
            plane.draw(canvas, cam)
    for k, thing in enumerate(_things(rng, street)):
        thing.draw(canvas, cam, object_id=FIRST_INSTANCE_ID + 2 * k)  # + 1: its rider
    _ego_vehicle(canvas, rng)
    image = _appearance(canvas, haze, rng)
    _invalidate(canvas, rng)
    return {"image": image, "label_19": _TO_TRAIN_ID[canvas.label], "label_7": _TO_CATEGORY[canvas.label],
            "depth": canvas.inv[..., None].copy(), "instance": instance_target(canvas.instance_ids())}


# --- writing data sets -----------------------------------------------------------------


def _metadata(n_train, n_val, height, width, seed):
    return {"generator": "synthcity", "version": GENERATOR_VERSION, "n_train": n_train, "n_val": n_val,
            "height": height, "width": width, "seed": seed}


def check_arguments(n_train, n_val, height, width, seed):
    """Raise ValueError naming the first bad argument."""
    for name, value in (("n_train", n_train), ("n_val", n_val), ("height", height), ("width", width)):
        if not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if size_problem(height, width):
        raise ValueError(f"image size {height}x{width}: {size_problem(height, width)}")


def read_metadata(root):
    """SynthCity's description of the data set at root, or None when root is not SynthCity output."""
    path = Path(root) / SYNTHETIC_MARKER
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: unreadable SynthCity metadata ({e})") from e


SUBFOLDERS = (IMAGE_DIR, label_dir(7), label_dir(19), DEPTH_DIR, INSTANCE_DIR)


def content_digest(root, n_train, n_val):
    """SHA-256 of every array file of the data set, split by split, folder by folder, sample by
    sample: what was generated, recorded in synthcity.json as "sha256" and so in the data identity
    (docs/design.md, "SynthCity")."""
    digest = hashlib.sha256()
    for split, n in (("train", n_train), ("val", n_val)):
        for sub in SUBFOLDERS:
            for i in range(n):
                digest.update((Path(root) / split / sub / f"{i}.npy").read_bytes())
    return digest.hexdigest()


def _holds(root, metadata):
    """Whether root holds the data set of these parameters (synthcity.json says so, every file
    is there), whatever its bytes."""
    recorded = read_metadata(root)
    if recorded is None or {k: v for k, v in recorded.items() if k != "sha256"} != metadata:
        return False
    counts = {"train": metadata["n_train"], "val": metadata["n_val"]}
    for split, n in counts.items():
        for sub in SUBFOLDERS:
            folder = Path(root) / split / sub
            if not folder.is_dir() or len(os.listdir(folder)) != n:
                return False
    return True


def _is_complete(root, metadata):
    """root holds the data set of these parameters, with the bytes its synthcity.json records."""
    if not _holds(root, metadata):
        return False
    recorded = read_metadata(root).get("sha256")
    return recorded == content_digest(root, metadata["n_train"], metadata["n_val"])


def _write_split(folder, seed, split, n, height, width, bar):
    subdirs = {"image": IMAGE_DIR, "label_7": label_dir(7), "label_19": label_dir(19), "depth": DEPTH_DIR,
               "instance": INSTANCE_DIR}
    for sub in subdirs.values():
        (folder / split / sub).mkdir(parents=True)
    for i in range(n):
        sample = render_sample(seed, split, i, height, width)
        for key, sub in subdirs.items():
            np.save(folder / split / sub / f"{i}.npy", sample[key])
        bar.update()


def generate(out_dir, n_train, n_val, height=DEFAULT_HEIGHT, width=DEFAULT_WIDTH, seed=0, progress=True,
             repair=False):
    """Write a SynthCity data set to out_dir (both splits and synthcity.json); returns its path.

    The data are written to a hidden sibling folder that is renamed to out_dir when complete
    (runfolder/atomic.py, atomic_folder), so an interrupted run never leaves a complete-looking
    out_dir. An out_dir that already
    holds this data set is left as it is; one holding anything else is an error. Processes
    that ask for the same out_dir at once (runs of a sweep, the demo's two runs) take turns
    through a lock beside it: one generates, the others wait and then find it complete. With
    `repair` (the cache), a copy whose bytes no longer match its recorded SHA-256 is generated
    again; otherwise it is an error.
    """
    check_arguments(n_train, n_val, height, width, seed)
    out = Path(out_dir)
    metadata = _metadata(n_train, n_val, height, width, seed)
    if _is_complete(out, metadata):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with _generation_lock(out):
        if _is_complete(out, metadata):  # another process generated it while this one waited
            return out
        if repair and _holds(out, metadata):  # a cache changed after it was made: made again
            print(f"warning: {out}: its bytes differ from the SHA-256 its {SYNTHETIC_MARKER} records (or it "
                  f"records none); generating it again", file=sys.stderr, flush=True)
            shutil.rmtree(out)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            there = read_metadata(out) if out.is_dir() else None
            same = there is not None and {k: v for k, v in there.items() if k != "sha256"} == metadata
            held = ("other content" if there is None else
                    "an incomplete copy of this data set, or one whose bytes changed since" if same
                    else f"a SynthCity data set with other parameters ({there})")
            raise FileExistsError(f"{out} already holds {held}, not the one asked for ({metadata}); "
                                  "choose another folder or remove it")
        # Under the lock no other process writes a copy of out: what is there is left over.
        _remove_partial_copies(out)
        try:
            _write_dataset(out, metadata, progress)
        except BaseException:  # a Ctrl-C can land before atomic_folder may clean up its own
            _remove_partial_copies(out)
            raise
    return out


def _remove_partial_copies(out):
    for partial in atomic.temporaries_of(out):
        shutil.rmtree(partial, ignore_errors=True)


@contextlib.contextmanager
def _generation_lock(out):
    with open(out.parent / f".{out.name}.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another process that is generating {out} ...", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _write_dataset(out, metadata, progress):
    n_train, n_val, seed = metadata["n_train"], metadata["n_val"], metadata["seed"]
    height, width = metadata["height"], metadata["width"]
    # A bar only on a terminal: in a log file every refresh would be a line of its own.
    interactive = progress and sys.stderr.isatty()
    if progress and not interactive:
        print(f"generating SynthCity {out.name} ({n_train + n_val} samples) ...", flush=True)
    # out is absent or empty (checked by the caller, under the lock)
    with atomic.atomic_folder(out) as partial, tqdm(total=n_train + n_val, desc=f"SynthCity {out.name}",
                                                    unit="sample", disable=not interactive, leave=False) as bar:
        _write_split(partial, seed, "train", n_train, height, width, bar)
        _write_split(partial, seed, "val", n_val, height, width, bar)
        written = {**metadata, "sha256": content_digest(partial, n_train, n_val)}
        (partial / SYNTHETIC_MARKER).write_text(json.dumps(written, indent=2) + "\n")


def cache_name(n_train, n_val, height, width, seed):
    return f"v{GENERATOR_VERSION}-{height}x{width}-train{n_train}-val{n_val}-seed{seed}"


def cached(root="dataset/synthcity", n_train=DEFAULT_N_TRAIN, n_val=DEFAULT_N_VAL,
           height=DEFAULT_HEIGHT, width=DEFAULT_WIDTH, seed=0, progress=True):
    """The data set for these parameters under root, generated only when missing."""
    return generate(Path(root) / cache_name(n_train, n_val, height, width, seed), n_train, n_val,
                    height, width, seed, progress, repair=True)


# --- command line ----------------------------------------------------------------------


def _int_at_least(low, what):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {text!r}")
        return value
    return parse


_positive_int = _int_at_least(1, "positive")


def _image_side(text):
    value = _positive_int(text)
    if value % SIZE_MULTIPLE:
        raise argparse.ArgumentTypeError(f"{value}: {size_problem(value, SIZE_MULTIPLE)}")
    return value


def main(argv=None):
    p = argparse.ArgumentParser(allow_abbrev=False,
                                prog="python3 -m data.synthcity", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder to create; it must not exist, be empty or already hold this data set")
    p.add_argument("--n-train", type=_positive_int, default=DEFAULT_N_TRAIN, metavar="N",
                   help=f"training samples (default {DEFAULT_N_TRAIN})")
    p.add_argument("--n-val", type=_positive_int, default=DEFAULT_N_VAL, metavar="M",
                   help=f"validation samples (default {DEFAULT_N_VAL})")
    p.add_argument("--height", type=_image_side, default=DEFAULT_HEIGHT, metavar="H",
                   help=f"image height, a multiple of {SIZE_MULTIPLE} (default {DEFAULT_HEIGHT})")
    p.add_argument("--width", type=_image_side, default=DEFAULT_WIDTH, metavar="W",
                   help=f"image width, a multiple of {SIZE_MULTIPLE} (default {DEFAULT_WIDTH})")
    p.add_argument("--seed", type=_int_at_least(0, "non-negative"), default=0, metavar="S", help="default 0")
    args = p.parse_args(argv)
    start = time.perf_counter()
    try:
        out = generate(args.out, args.n_train, args.n_val, args.height, args.width, args.seed)
    except FileExistsError as e:
        p.error(f"--out: {e}")
    except KeyboardInterrupt:  # Ctrl-C: atomic_folder has removed the partial copy
        print(f"stopped by SIGINT; {args.out} was not written", file=sys.stderr)
        return EXIT_INTERRUPTED
    seconds = time.perf_counter() - start
    print(f"SynthCity v{GENERATOR_VERSION}: {args.n_train} train + {args.n_val} val samples "
          f"({args.height}x{args.width}) in {out} ({seconds:.1f} s)")


if __name__ == "__main__":
    sys.exit(main())
